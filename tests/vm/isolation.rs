//! Issue 4's acceptance on a real kernel: limits (memory, tasks, CPU) enforced per tenant, bind
//! and connect closed between tenants, the firewall reloaded by its unit, and `ocusers audit`.
//! Workloads run as the tenant's user inside the tenant's unit cgroup, where its gateway and the
//! agent's tools run (root writes the PID to the unit's `cgroup.procs`, then drops to the user).
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::support::assert::{R, ensure};
use crate::support::trials::{self, Figures as _};
use crate::support::vm::guest::{GuestOutput, Vm};
use crate::support::vm::image;
use crate::support::{deb, stub_runtime};

pub const TENANTS: [&str; 3] = ["alice", "bob", "carol"];
const STUB_VERSION: &str = "9.9.9-stub";
/// A small tier so the workloads reach its limits quickly under TCG.
const VM_TIER: &str = "description = \"VM tier: small limits the workloads reach quickly\"
memory_high = \"300M\"
memory_max = \"320M\"
cpu_quota = \"20%\"
tasks_max = 48
v8_heap_mb = 256
";

/// Shell helpers prepended to every script.
const PRELUDE: &str = r#"set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cg() { echo "/sys/fs/cgroup/openclaw.slice/openclaw@$1.service"; }
# As the tenant's user, inside its unit's cgroup: where its gateway and its agent's tools run.
in_unit() { local t=$1 u=$2; shift 2; bash -c 'echo $$ > "$0/cgroup.procs" && exec setpriv --reuid "$1" --regid "$1" --clear-groups -- "${@:2}"' "$(cg "$t")" "$u" "$@"; }
as_user() { local u=$1; shift; setpriv --reuid "$u" --regid "$u" --clear-groups -- "$@"; }
port() { sed -n 's/^port = //p' "/var/lib/ocusers/tenants/$1.toml"; }
prop() { systemctl show -P "$2" "openclaw@$1.service"; }
wait_ready() {
    for _ in $(seq 900); do
        if [ "$(systemctl is-active "openclaw@$1")" = active ] && curl -fsS -m 2 "http://127.0.0.1:$(port "$1")/readyz" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "openclaw@$1 did not become active and ready" >&2; systemctl status --no-pager "openclaw@$1" >&2; return 1
}
bind_probe() { # PORT [4|6]: bind (no listen) and say what happened
    perl -MSocket=:all -e 'my ($p, $v) = @ARGV; if ($v == 6) { socket(S, AF_INET6, SOCK_STREAM, 0) or die "socket: $!"; bind(S, pack_sockaddr_in6($p, inet_pton(AF_INET6, "::1"))) or do { print "bind: $!\n"; exit 13 } } else { socket(S, PF_INET, SOCK_STREAM, 0) or die "socket: $!"; bind(S, sockaddr_in($p, INADDR_LOOPBACK)) or do { print "bind: $!\n"; exit 13 } } print "bound\n"' "$1" "${2:-4}"
}
"#;

pub struct Fixture {
    pub vm: Vm,
    pub figures: Mutex<BTreeMap<String, String>>,
    _stub_dir: tempfile::TempDir,
}

impl trials::Figures for Fixture {
    fn figures(&self) -> &Mutex<BTreeMap<String, String>> {
        &self.figures
    }
}

impl Fixture {
    pub fn boot() -> Result<Fixture, String> {
        let image = image::ensure_guest_image()?;
        let deb = deb::build()?;
        let stub = stub_runtime::build_stub_gateway()?;
        let stub_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        stub_runtime::install_stub_runtime(stub_dir.path(), &stub, STUB_VERSION, true)?;
        let vm = Vm::boot(
            &image,
            &[
                (deb, "ocusers.deb"),
                (stub_dir.path().to_path_buf(), "stubroot"),
            ],
        )?;
        let fx = Fixture {
            vm,
            figures: Default::default(),
            _stub_dir: stub_dir,
        };
        fx.figure(
            "guest boot",
            format!("{:.1} s", fx.vm.boot_time.as_secs_f64()),
        );
        Ok(fx)
    }

    fn run(&self, script: &str) -> GuestOutput {
        self.vm.sh(&format!("{PRELUDE}\n{script}"))
    }

    fn ok(&self, script: &str) -> Result<String, String> {
        self.run(script).stdout_of(script)
    }

    fn json(&self, script: &str) -> Result<Value, String> {
        let text = self.ok(script)?;
        serde_json::from_str(&text).map_err(|e| format!("{script}: not JSON ({e}): {text}"))
    }

    fn port(&self, tenant: &str) -> Result<u16, String> {
        self.ok(&format!("port {tenant}"))?
            .trim()
            .parse()
            .map_err(|e| format!("port of {tenant}: {e}"))
    }
}

/// `key=value` lines of a script's output.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn num(map: &BTreeMap<String, String>, key: &str) -> Result<f64, String> {
    map.get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no number {key} in {map:?}"))
}

// ---------------------------------------------------------------------------------------------
// Trials.

/// The .deb installs on the guest (its own dependencies only: the guest has no network), the
/// stub runtime is laid out, and three tenants are added on a small tier.
pub fn install_and_add_tenants(fx: &Fixture) -> R {
    let t = Instant::now();
    fx.ok(&format!(
        "# The man-db trigger costs most of dpkg's time under TCG.
         echo 'man-db man-db/auto-update boolean false' | debconf-set-selections
         dpkg -i /mnt/host/ocusers.deb >/dev/null
         cp -a /mnt/host/stubroot/var/lib/ocusers/runtimes/. /var/lib/ocusers/runtimes/
         chown -R root:root /var/lib/ocusers/runtimes
         cat > /etc/ocusers/tiers/vmtest.toml <<'EOF'\n{VM_TIER}EOF"
    ))?;
    fx.figure(
        "dpkg -i in the guest",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    for name in TENANTS {
        let t = Instant::now();
        let out = fx.ok(&format!("ocusers add {name} --tier vmtest"))?;
        ensure(out.contains(&format!("tenant {name} is ready")), || {
            out.clone()
        })?;
        fx.figure(
            format!("add {name} (stub gateway, TCG)"),
            format!("{:.1} s", t.elapsed().as_secs_f64()),
        );
    }
    let list = fx.json("ocusers list --json")?;
    ensure(list["tenants"].as_array().map(Vec::len) == Some(3), || {
        format!("{list}")
    })?;
    // What `add` set on alice's unit, as systemd reports it.
    let show = fx.ok(
        "systemctl show -p MemoryMax -p TasksMax -p CPUQuotaPerSecUSec -p SocketBindAllow -p SocketBindDeny openclaw@alice",
    )?;
    let alice = fx.port("alice")?;
    for want in [
        "MemoryMax=335544320".to_string(),
        "TasksMax=48".to_string(),
        "CPUQuotaPerSecUSec=200ms".to_string(),
        format!("SocketBindAllow={alice}-{}", alice + 127),
        "SocketBindDeny=6176-32767".to_string(),
    ] {
        ensure(show.lines().any(|l| l == want), || {
            format!("systemctl show openclaw@alice lacks {want}:\n{show}")
        })?;
    }
    // Nothing for the operator to daemon-reload after add: on systemd 257
    // enabling flags every unit until a reload, which add then does.
    let reload = fx.ok(&format!(
        "for t in {}; do echo \"$t $(prop $t NeedDaemonReload)\"; done",
        TENANTS.join(" ")
    ))?;
    ensure(
        reload.lines().count() == TENANTS.len() && reload.lines().all(|l| l.ends_with(" no")),
        || format!("NeedDaemonReload after add:\n{reload}"),
    )?;
    Ok(())
}

/// `apply` on systemd 257: enabling a new tenant flags every unit until a daemon-reload, and
/// apply reloads once, after all its tenants, not per unit. The file is the host's own export
/// plus one tenant, who is removed again so later trials see the three.
pub fn apply_reloads_once(fx: &Fixture) -> R {
    let out = fx.ok(
        "ocusers export > /tmp/apply.toml
         printf '\n[tenants.dave]\ntier = \"vmtest\"\n' >> /tmp/apply.toml
         OCUSERS_LOG=ocusers=debug ocusers apply /tmp/apply.toml --no-start >/tmp/apply.out 2>/tmp/apply.err \
             || { cat /tmp/apply.out /tmp/apply.err; exit 1; }
         echo reloads=$(grep -c 'reloading once' /tmp/apply.err)
         echo per_unit=$(grep -c 'asks for a daemon-reload; reloading' /tmp/apply.err)
         echo dave=$(prop dave NeedDaemonReload)
         echo alice=$(prop alice NeedDaemonReload)
         echo enabled=$(systemctl is-enabled openclaw@dave.service)
         ocusers remove dave --purge >/dev/null",
    )?;
    let f = fields(&out);
    let get = |k: &str| f.get(k).map(String::as_str);
    ensure(
        get("reloads") == Some("1")
            && get("per_unit") == Some("0")
            && get("dave") == Some("no")
            && get("alice") == Some("no")
            && get("enabled") == Some("enabled"),
        || format!("apply on systemd 257:\n{out}"),
    )
}

/// The guest is the configuration where every layer is enforced, and ocusers says so.
pub fn layers_enforced_here(fx: &Fixture) -> R {
    let out = fx.ok(
        "systemctl --version | head -2; echo; cat /sys/fs/cgroup/cgroup.controllers; uname -r",
    )?;
    ensure(out.contains("+BPF_FRAMEWORK"), || out.clone())?;
    ensure(
        out.contains("memory") && out.contains("pids") && out.contains("cpu"),
        || out.clone(),
    )?;
    fx.figure(
        "guest",
        out.lines().next().unwrap_or_default().to_string()
            + ", kernel "
            + out.lines().last().unwrap_or_default(),
    );
    let audit = fx.json("ocusers audit --no-openclaw --json; true")?;
    for layer in audit["layers"].as_array().into_iter().flatten() {
        ensure(layer["active"] == true, || {
            format!("layer not active in the guest: {layer}")
        })?;
    }
    ensure(audit["layers"].as_array().map(Vec::len) == Some(2), || {
        format!("{audit}")
    })
}

/// On cgroup v2, `status`, `list` and `metrics` read a running unit's memory, CPU and tasks from
/// its cgroup files instead of 9 D-Bus reads a unit (issue 6: status at 200 tenants). They must
/// say what systemd says: limits exactly, the moving figures between a `systemctl show` just
/// before and one just after.
pub fn status_reads_cgroup_like_systemd(fx: &Fixture) -> R {
    const MOVING: [&str; 3] = ["MemoryCurrent", "TasksCurrent", "CPUUsageNSec"];
    const FIXED: [&str; 6] = [
        "MemoryHigh",
        "MemoryMax",
        "TasksMax",
        "MainPID",
        "NRestarts",
        "UnitFileState",
    ];
    let show = |when: &str, props: &[&str]| {
        format!(
            "for t in {}; do for p in {}; do echo \"$t.{when}.$p=$(prop $t $p)\"; done; done",
            TENANTS.join(" "),
            props.join(" ")
        )
    };
    let out = fx.ok(&format!(
        "{}
         OCUSERS_LOG=ocusers=debug ocusers status --json >/tmp/status.json 2>/tmp/status.err || {{ cat /tmp/status.err; exit 1; }}
         {}
         {}
         echo \"log=$(grep 'read from their cgroup' /tmp/status.err)\"
         echo \"json=$(tr -d '\\n' </tmp/status.json)\"",
        show("before", &MOVING),
        show("after", &MOVING),
        show("fixed", &FIXED),
    ))?;
    let f = fields(&out);
    let log = f.get("log").cloned().unwrap_or_default();
    ensure(log.contains("3 of 3 units read from their cgroup"), || {
        format!("status did not take the cgroup path on cgroup v2: {out}")
    })?;
    let status: Value = serde_json::from_str(f.get("json").map_or("", String::as_str))
        .map_err(|e| format!("status --json: {e}: {out}"))?;
    for t in TENANTS {
        let s = status["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == t)
            .ok_or_else(|| format!("{t} not in {status}"))?;
        let got = |path: &[&str]| path.iter().fold(s, |v, k| &v[*k]).as_u64();
        let shown = |key: String| {
            f.get(&key)
                .cloned()
                .ok_or_else(|| format!("no {key} in {out}"))
        };
        // Limits, main PID, restarts and enablement: exactly what systemd says.
        for (prop, path) in FIXED.iter().zip([
            &["memory", "high"][..],
            &["memory", "max"],
            &["tasks", "max"],
            &["main_pid"],
            &["restarts"],
        ]) {
            let want = shown(format!("{t}.fixed.{prop}"))?;
            ensure(
                got(path).map(|v| v.to_string()) == Some(want.clone()),
                || {
                    format!(
                        "{t}: status {path:?} = {:?}, systemctl show -P {prop}: {want}",
                        got(path)
                    )
                },
            )?;
        }
        let enabled = shown(format!("{t}.fixed.UnitFileState"))?;
        ensure(s["enabled"] == enabled.as_str(), || {
            format!("{t}: enabled {} vs UnitFileState {enabled}", s["enabled"])
        })?;
        ensure(got(&["cpu_quota_per_sec_usec"]) == Some(200_000), || {
            format!(
                "{t}: CPU quota {:?}; the tier's 20 % is 200000 µs/s",
                got(&["cpu_quota_per_sec_usec"])
            )
        })?;
        // Memory and tasks may move a little either way; CPU time only grows.
        for (prop, path, slack) in MOVING
            .iter()
            .zip([
                (&["memory", "current"][..], 4u64 << 20),
                (&["tasks", "current"], 2),
                (&["cpu_usage_nsec"], 0),
            ])
            .map(|(p, (path, slack))| (p, path, slack))
        {
            let v = got(path).ok_or_else(|| format!("{t}: no {path:?} in {s}"))?;
            let [before, after] = ["before", "after"].map(|w| {
                shown(format!("{t}.{w}.{prop}")).and_then(|x| {
                    x.parse::<u64>()
                        .map_err(|e| format!("{t} {w} {prop} {x:?}: {e}"))
                })
            });
            let (before, after) = (before?, after?);
            let (lo, hi) = (before.min(after), before.max(after));
            ensure(v + slack >= lo && v <= hi + slack, || {
                format!(
                    "{t}: status {path:?} = {v}; systemctl show -P {prop}: {before} before, {after} after"
                )
            })?;
        }
    }
    fx.figure("status from cgroup v2", log.trim().to_string());
    Ok(())
}

/// Acceptance 1: a memory hog in alice's unit is killed at alice's MemoryMax; bob's unit and
/// process are untouched; alice's gateway is restarted by systemd.
pub fn memory_hog_killed_at_limit(fx: &Fixture) -> R {
    let before = fields(&fx.ok(
        "echo bob_pid=$(prop bob MainPID); echo bob_enter=$(prop bob ActiveEnterTimestampMonotonic)
         echo alice_pid=$(prop alice MainPID); echo alice_restarts=$(prop alice NRestarts)
         echo alice_max=$(prop alice MemoryMax)",
    )?);
    let t = Instant::now();
    let out = fx.ok(
        "in_unit alice oc-alice perl -e 'my @a; while (1) { push @a, \"x\" x (4 << 20) }'; echo hog_exit=$?
         wait_ready alice
         echo alice_pid=$(prop alice MainPID); echo alice_restarts=$(prop alice NRestarts)
         echo bob_pid=$(prop bob MainPID); echo bob_enter=$(prop bob ActiveEnterTimestampMonotonic)
         echo bob_state=$(systemctl is-active openclaw@bob)
         kill -0 $(prop bob MainPID) && echo bob_alive=yes
         echo oom_logged=$(journalctl -u openclaw@alice --no-pager -o cat | grep -c 'killed by the OOM killer')
         echo kernel_oom=$(journalctl -k --no-pager -o cat | grep -c 'Memory cgroup out of memory')",
    )?;
    let after = fields(&out);
    fx.figure(
        "memory hog to alice ready again",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    ensure(
        after.get("hog_exit").map(String::as_str) == Some("137"),
        || format!("the hog was not SIGKILLed (exit 137):\n{out}"),
    )?;
    ensure(num(&after, "kernel_oom")? >= 1.0, || {
        format!("no cgroup OOM kill in the kernel log:\n{out}")
    })?;
    ensure(num(&after, "oom_logged")? >= 1.0, || {
        format!("systemd did not log alice's OOM kill:\n{out}")
    })?;
    ensure(
        num(&after, "alice_restarts")? >= num(&before, "alice_restarts")? + 1.0
            && after["alice_pid"] != before["alice_pid"],
        || format!("alice's gateway was not restarted:\nbefore {before:?}\nafter {after:?}"),
    )?;
    ensure(
        after["bob_pid"] == before["bob_pid"]
            && after["bob_enter"] == before["bob_enter"]
            && after.get("bob_state").map(String::as_str) == Some("active")
            && after.get("bob_alive").map(String::as_str) == Some("yes"),
        || format!("bob was touched:\nbefore {before:?}\nafter {after:?}"),
    )
}

/// Acceptance 2: a fork loop in alice's unit stops at TasksMax; bob can still start processes.
pub fn fork_bomb_stops_at_tasks_max(fx: &Fixture) -> R {
    let out = fx.ok(
        "echo tasks_max=$(prop alice TasksMax)
         in_unit alice oc-alice perl -e '
            my $n = 0;
            while (1) {
                my $p = fork();
                if (!defined $p) {
                    my $err = \"$!\";
                    open(my $f, \"<\", \"/sys/fs/cgroup/openclaw.slice/openclaw\\@alice.service/pids.current\");
                    my $cur = <$f>; chomp $cur;
                    print \"forks=$n\\nerror=$err\\npids_current=$cur\\n\";
                    exit 0;
                }
                if ($p == 0) { sleep 120; exit 0 }
                $n++;
            }'
         echo bob_ok=$(in_unit bob oc-bob bash -c 'n=0; for i in $(seq 20); do /bin/true && n=$((n+1)); done; echo $n')
         echo bob_tasks=$(prop bob TasksCurrent)
         systemctl restart openclaw@alice && wait_ready alice && echo alice_back=yes",
    )?;
    let f = fields(&out);
    fx.figure(
        "fork loop in alice",
        format!(
            "{} forks, then {:?} at pids.current {} = TasksMax {}",
            f.get("forks").cloned().unwrap_or_default(),
            f.get("error").cloned().unwrap_or_default(),
            f.get("pids_current").cloned().unwrap_or_default(),
            f.get("tasks_max").cloned().unwrap_or_default()
        ),
    );
    ensure(
        f.get("error")
            .is_some_and(|e| e.contains("Resource temporarily unavailable")),
        || format!("fork did not fail with EAGAIN:\n{out}"),
    )?;
    ensure(f.get("pids_current") == f.get("tasks_max"), || {
        format!("the fork loop did not stop at TasksMax:\n{out}")
    })?;
    ensure(num(&f, "forks")? >= 10.0, || {
        format!("too few forks:\n{out}")
    })?;
    ensure(f.get("bob_ok").map(String::as_str) == Some("20"), || {
        format!("bob could not start processes:\n{out}")
    })?;
    ensure(f.contains_key("alice_back"), || out.clone())
}

/// Acceptance 3: a busy loop in alice's unit gets its CPUQuota (20 % in the VM tier), measured
/// from `CPUUsageNSec` over a fixed window, within 15 %.
pub fn busy_loop_held_to_cpu_quota(fx: &Fixture) -> R {
    let out = fx.ok("echo quota=$(prop alice CPUQuotaPerSecUSec)
         in_unit alice oc-alice bash -c 'while :; do :; done' &
         sleep 2
         u0=$(prop alice CPUUsageNSec); t0=$(date +%s%N)
         sleep 10
         u1=$(prop alice CPUUsageNSec); t1=$(date +%s%N)
         systemctl restart openclaw@alice && wait_ready alice
         echo ratio=$(( (u1 - u0) * 10000 / (t1 - t0) ))
         # For comparison: the same loop outside any tenant (how much CPU the guest can give).
         bash -c 'while :; do :; done' & free=$!
         s0=$(awk '{print $14+$15}' /proc/$free/stat); f0=$(date +%s%N); sleep 3
         s1=$(awk '{print $14+$15}' /proc/$free/stat); f1=$(date +%s%N); kill $free
         echo free_ratio=$(( (s1 - s0) * 10000000000000 / $(getconf CLK_TCK) / (f1 - f0) ))")?;
    let f = fields(&out);
    let ratio = num(&f, "ratio")? / 10000.0;
    let free = num(&f, "free_ratio")? / 10000.0;
    // systemd prints the quota per second as "200ms".
    let quota = f
        .get("quota")
        .and_then(|q| q.strip_suffix("ms"))
        .and_then(|ms| ms.parse::<f64>().ok())
        .map(|ms| ms / 1000.0)
        .ok_or_else(|| format!("no quota in {out}"))?;
    fx.figure(
        "busy loop in alice",
        format!(
            "{:.1} % of a CPU over 10 s against CPUQuota {:.0} % (unlimited loop: {:.0} %)",
            ratio * 100.0,
            quota * 100.0,
            free * 100.0
        ),
    );
    ensure((ratio - quota).abs() <= 0.15 * quota, || {
        format!(
            "alice's busy loop got {:.1} % of a CPU, quota {:.0} % (+-15 %); unlimited loop {:.0} %:\n{out}",
            ratio * 100.0,
            quota * 100.0,
            free * 100.0
        )
    })
}

/// Acceptance 4 (bind): as alice's user in alice's unit, binding bob's ports fails while bob is
/// stopped (IPv4 and IPv6, gateway and derived ports); alice's own ports bind.
pub fn bind_only_own_ports(fx: &Fixture) -> R {
    let (alice, bob) = (fx.port("alice")?, fx.port("bob")?);
    let out = fx.ok(&format!(
        "systemctl stop openclaw@bob
         echo bob_state=$(systemctl is-active openclaw@bob)
         echo bob_gw=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe {bob}\")
         echo bob_gw6=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe {bob} 6\")
         echo bob_cdp=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe {}\")
         echo own_browser=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe {}\")
         echo own_browser6=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe {} 6\")
         echo outside_pool=$(in_unit alice oc-alice bash -c \"$(declare -f bind_probe); bind_probe 40123\")
         systemctl start openclaw@bob && wait_ready bob && echo bob_back=yes",
        bob + 20,
        alice + 2,
        alice + 2
    ))?;
    let f = fields(&out);
    for key in ["bob_gw", "bob_gw6", "bob_cdp"] {
        ensure(
            f.get(key).map(String::as_str) == Some("bind: Operation not permitted"),
            || format!("{key}: binding bob's port as alice was not denied:\n{out}"),
        )?;
    }
    for key in ["own_browser", "own_browser6", "outside_pool"] {
        ensure(f.get(key).map(String::as_str) == Some("bound"), || {
            format!("{key}: alice could not bind:\n{out}")
        })?;
    }
    ensure(
        f.get("bob_state").map(String::as_str) == Some("inactive") && f.contains_key("bob_back"),
        || out.clone(),
    )
}

/// Acceptance 4 (connect): alice cannot connect to bob's gateway port (nor carol's); alice's
/// own port works; root reaches bob; the proxy user (www-data) does not any more (the proxy goes
/// through systemd-socket-proxyd, which connects as the tenant), nor does `nobody`.
pub fn connect_only_own_ports(fx: &Fixture) -> R {
    let (alice, bob, carol) = (fx.port("alice")?, fx.port("bob")?, fx.port("carol")?);
    let curl = |port: u16| {
        format!(
            "curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/readyz 2>&1"
        )
    };
    let out = fx.ok(&format!(
        "echo alice_to_bob=$(in_unit alice oc-alice {})
         echo alice_to_bob6=$(in_unit alice oc-alice curl -sS -m 5 -o /dev/null -w '%{{http_code}}' 'http://[::1]:{bob}/readyz' 2>&1)
         echo alice_to_carol=$(in_unit alice oc-alice {})
         echo alice_to_alice=$(in_unit alice oc-alice {})
         echo bob_to_bob=$(in_unit bob oc-bob {})
         echo root_to_bob=$({})
         echo proxy_to_bob=$(as_user www-data {})
         echo nobody_to_bob=$(setpriv --reuid nobody --regid nogroup --clear-groups -- {})",
        curl(bob),
        curl(carol),
        curl(alice),
        curl(bob),
        curl(bob),
        curl(bob),
        curl(bob)
    ))?;
    let f = fields(&out);
    for key in [
        "alice_to_bob",
        "alice_to_bob6",
        "alice_to_carol",
        "proxy_to_bob",
        "nobody_to_bob",
    ] {
        ensure(
            // curl: (7) could not connect (the firewall's TCP reset).
            f.get(key).is_some_and(|v| v.contains("(7)")),
            || format!("{key}: the connection was not refused:\n{out}"),
        )?;
    }
    for key in ["alice_to_alice", "bob_to_bob", "root_to_bob"] {
        ensure(f.get(key).map(String::as_str) == Some("200"), || {
            format!("{key}: expected HTTP 200:\n{out}")
        })?;
    }
    Ok(())
}

/// A TCP/UDP client for the trials: `perl /tmp/ocprobe.pl tcp|udp HOST PORT` prints
/// `connected|answered|refused|error:... MS` (refusals must come at once).
const PROBE_PL: &str = r#"use strict; use IO::Socket::IP; use Time::HiRes qw(time);
sub probe { my ($proto, $host, $port) = @_; my $t = time;
    my $r = eval { local $SIG{ALRM} = sub { die "timeout\n" }; alarm 3;
        my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Proto => $proto)
            or return ($! =~ /refused/i ? "refused" : "error:$!");
        return "connected" if $proto eq "tcp";
        defined $s->send("ping") or return ($! =~ /not permitted|refused/i ? "refused" : "error:$!");
        my $buf; defined $s->recv($buf, 100) or return ($! =~ /refused/i ? "refused" : "error:$!");
        $buf eq "ping" ? "answered" : "error:odd answer" };
    alarm 0; $r //= $@ eq "timeout\n" ? "timeout" : "error:$@";
    printf "%s %d\n", $r, (time - $t) * 1000 }
probe(splice(@ARGV, 0, 3)) while @ARGV >= 3;
"#;

/// A listener for the trials: `perl /tmp/oclisten.pl tcp|udp HOST PORT TAG` accepts (TCP) or
/// echoes (UDP) until killed, after writing /tmp/oclisten.TAG.
const LISTEN_PL: &str = r#"use strict; use IO::Socket::IP;
my ($proto, $host, $port, $tag) = @ARGV;
my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => $port, Proto => $proto, ReuseAddr => 1,
    ($proto eq "tcp" ? (Listen => 16) : ())) or die "listen $host $port: $!\n";
open(my $f, ">", "/tmp/oclisten.$tag"); close $f;
if ($proto eq "tcp") { while (my $c = $s->accept) { close $c } }
else { while (1) { my $buf; my $peer = $s->recv($buf, 100); $s->send($buf, 0, $peer) if defined $peer } }
"#;

/// Issue 15, acceptance 1: default deny on the host's own addresses. As alice's user in her
/// unit, connecting is refused at once (TCP reset: ECONNREFUSED within a second; UDP: the send
/// fails) to bob's gateway port, to a listener bob's unit runs outside his block, to root
/// listeners on 127.0.0.1, ::1 and the guest's own non-loopback addresses (a dummy interface), to
/// a stand-in for the proxy's admin API (127.0.0.1:2019), to the metadata service at
/// 169.254.169.254 and fd00:ec2::254 (in the second namespace, routed like a cloud's) and at
/// 169.254.170.2 on the guest's own dummy interface, and by UDP to a root UDP socket; alice reaches her own block, the
/// allow-listed host port and a listener in a second network namespace standing in for the
/// internet (a veth pair, documentation addresses), even on a port number in bob's block. Root
/// reaches every listener (the controls). Also measured, not asserted: what still crosses
/// (an abstract unix socket of bob's unit, /proc/net and unit properties from alice's sandbox).
pub fn loopback_default_deny(fx: &Fixture) -> R {
    let (alice, bob) = (fx.port("alice")?, fx.port("bob")?);
    let setup = format!(
        "cat > /tmp/ocprobe.pl <<'EOF'\n{PROBE_PL}EOF
cat > /tmp/oclisten.pl <<'EOF'\n{LISTEN_PL}EOF
chmod 644 /tmp/ocprobe.pl /tmp/oclisten.pl
rm -f /tmp/oclisten.*[!l]
# The allow-list, and the rules regenerated from it (add repairs an existing tenant).
mkdir -p /etc/ocusers
printf '[isolation]\\nallow_local = [\"127.0.0.1:11434\", \"tcp/[::1]:11434\"]\\n' > /etc/ocusers/ocusers.toml
ocusers add alice --tier vmtest >/dev/null
# The guest's own non-loopback and metadata addresses, on a dummy interface.
modprobe dummy 2>/dev/null; ip link add ocd0 type dummy && ip link set ocd0 up
ip addr add 192.0.2.1/24 dev ocd0; ip addr add 169.254.170.2/32 dev ocd0
ip -6 addr add 2001:db8::1/64 dev ocd0 nodad
# The internet: a second network namespace behind a veth pair.
ip netns add ocnet; ip link add ocv0 type veth peer name ocv1; ip link set ocv1 netns ocnet
ip addr add 198.51.100.2/24 dev ocv0; ip -6 addr add 2001:db8:1::2/64 dev ocv0 nodad; ip link set ocv0 up
ip netns exec ocnet sh -c 'ip link set lo up; ip addr add 198.51.100.1/24 dev ocv1; ip -6 addr add 2001:db8:1::1/64 dev ocv1 nodad; ip link set ocv1 up
    ip addr add 169.254.169.254/32 dev lo; ip -6 addr add fd00:ec2::254/128 dev lo nodad'
# The metadata service is another host, as on a cloud VPS: routed through the veth.
ip route add 169.254.169.254/32 via 198.51.100.1; ip -6 route add fd00:ec2::254/128 via 2001:db8:1::1
L() {{ perl /tmp/oclisten.pl \"$@\" 2>>/tmp/oclisten.err & }}
for h in 127.0.0.1 ::1 192.0.2.1 2001:db8::1; do L tcp $h 5000 root-$h; done
for h in 127.0.0.1 ::1; do L tcp $h 2019 admin-$h; L tcp $h 11434 allow-$h; L udp $h 5353 udp-$h; done
L udp 127.0.0.1 11434 allowudp; L udp ::1 11435 allowudp6
L tcp 169.254.170.2 80 metalocal
(ip netns exec ocnet perl /tmp/oclisten.pl tcp 169.254.169.254 80 meta4 &)
(ip netns exec ocnet perl /tmp/oclisten.pl tcp fd00:ec2::254 80 meta6 &)
(ip netns exec ocnet perl /tmp/oclisten.pl tcp 198.51.100.1 8080 net4 &)
(ip netns exec ocnet perl /tmp/oclisten.pl tcp 2001:db8:1::1 8080 net6 &)
(ip netns exec ocnet perl /tmp/oclisten.pl tcp 198.51.100.1 {bob} netbob &)
(ip netns exec ocnet perl /tmp/oclisten.pl udp 198.51.100.1 5353 netudp &)
(in_unit bob oc-bob perl /tmp/oclisten.pl tcp :: 3000 bob3000 2>>/tmp/oclisten.err &)
(in_unit alice oc-alice perl /tmp/oclisten.pl tcp :: {own} own-tcp 2>>/tmp/oclisten.err &)
(in_unit alice oc-alice perl /tmp/oclisten.pl udp 127.0.0.1 {ownu} own-udp 2>>/tmp/oclisten.err &)
for _ in $(seq 100); do [ $(ls /tmp/oclisten.* | grep -vc -e '\\.pl$' -e '\\.err$') -ge 22 ] && break; sleep 0.1; done
echo listeners=$(ls /tmp/oclisten.* | grep -vc -e '\\.pl$' -e '\\.err$')
cat /tmp/oclisten.err >&2",
        own = alice + 5,
        ownu = alice + 6,
    );
    let up = fx.run(&setup);
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        // (case, proto, host, port, want for alice)
        ("bob_gateway", "tcp", "127.0.0.1".into(), bob, "refused"),
        ("bob_gateway6", "tcp", "::1".into(), bob, "refused"),
        (
            "bob_outside_block",
            "tcp",
            "127.0.0.1".into(),
            3000,
            "refused",
        ),
        ("bob_outside_block6", "tcp", "::1".into(), 3000, "refused"),
        ("root_loopback", "tcp", "127.0.0.1".into(), 5000, "refused"),
        ("root_loopback6", "tcp", "::1".into(), 5000, "refused"),
        (
            "root_host_address",
            "tcp",
            "192.0.2.1".into(),
            5000,
            "refused",
        ),
        (
            "root_host_address6",
            "tcp",
            "2001:db8::1".into(),
            5000,
            "refused",
        ),
        ("proxy_admin", "tcp", "127.0.0.1".into(), 2019, "refused"),
        ("proxy_admin6", "tcp", "::1".into(), 2019, "refused"),
        ("metadata", "tcp", "169.254.169.254".into(), 80, "refused"),
        ("metadata6", "tcp", "fd00:ec2::254".into(), 80, "refused"),
        (
            "metadata_on_this_host",
            "tcp",
            "169.254.170.2".into(),
            80,
            "refused",
        ),
        ("root_udp", "udp", "127.0.0.1".into(), 5353, "refused"),
        ("root_udp6", "udp", "::1".into(), 5353, "refused"),
        // tcp/[::1]:11434 opens TCP only; 11435 is not listed.
        (
            "allow_udp6_not_listed",
            "udp",
            "::1".into(),
            11435,
            "refused",
        ),
        (
            "own_block",
            "tcp",
            "127.0.0.1".into(),
            alice + 5,
            "connected",
        ),
        ("own_block6", "tcp", "::1".into(), alice + 5, "connected"),
        (
            "own_block_host_address",
            "tcp",
            "192.0.2.1".into(),
            alice + 5,
            "connected",
        ),
        (
            "own_block_udp",
            "udp",
            "127.0.0.1".into(),
            alice + 6,
            "answered",
        ),
        (
            "allow_listed",
            "tcp",
            "127.0.0.1".into(),
            11434,
            "connected",
        ),
        ("allow_listed6", "tcp", "::1".into(), 11434, "connected"),
        (
            "allow_listed_udp",
            "udp",
            "127.0.0.1".into(),
            11434,
            "answered",
        ),
        ("internet", "tcp", "198.51.100.1".into(), 8080, "connected"),
        (
            "internet6",
            "tcp",
            "2001:db8:1::1".into(),
            8080,
            "connected",
        ),
        (
            "internet_on_bobs_port_number",
            "tcp",
            "198.51.100.1".into(),
            bob,
            "connected",
        ),
        (
            "internet_udp",
            "udp",
            "198.51.100.1".into(),
            5353,
            "answered",
        ),
    ];
    // One probe process per vantage runs every case in turn (each its own socket, timed
    // alone): a perl start under TCG costs about a second, 2 instead of 56.
    let probe_args: Vec<String> = cases
        .iter()
        .map(|(_, proto, host, port, _)| format!("{proto} {host} {port}"))
        .collect();
    let probe_args = probe_args.join(" ");
    let mut script = format!(
        "echo alice.probes=$(in_unit alice oc-alice perl /tmp/ocprobe.pl {probe_args} | tr '\\n' ,)\n\
         echo root.probes=$(perl /tmp/ocprobe.pl {probe_args} | tr '\\n' ,)\n"
    );
    // What still crosses (measured): an abstract unix socket bob's unit opens; /proc/net and
    // bob's unit properties from alice's sandbox.
    script.push_str(
        "(in_unit bob oc-bob perl -MSocket -e 'socket(S, AF_UNIX, SOCK_STREAM, 0) or die; bind(S, pack_sockaddr_un(\"\\0ocusers-bob-abstract\")) or die; listen(S, 5); open(my $f, \">\", \"/tmp/oclisten.abstract\"); close $f; while (accept(C, S)) { print C \"bob\\n\"; close C }' &)
         for _ in $(seq 50); do [ -e /tmp/oclisten.abstract ] && break; sleep 0.1; done
         echo cross.abstract_unix=$(in_unit alice oc-alice perl -MSocket -e 'socket(S, AF_UNIX, SOCK_STREAM, 0) or die; if (connect(S, pack_sockaddr_un(\"\\0ocusers-bob-abstract\"))) { my $l = <S>; chomp $l; print \"connected, read $l\" } else { print \"refused: $!\" }')
         echo cross.proc_net_tcp_lines=$(ocusers exec alice -- sh -c 'cat /proc/self/net/tcp /proc/self/net/tcp6 2>&1 | wc -l' 2>&1 | tail -1)
         echo cross.proc_net_visible=$(ocusers exec alice -- sh -c 'ls /proc/net >/dev/null 2>&1 && echo yes || echo no' 2>&1 | tail -1)
         echo cross.bob_listener_seen=$(ocusers exec alice -- sh -c 'grep -ci \":$(printf %04X 3000) \" /proc/self/net/tcp6' 2>&1 | tail -1)
         echo cross.unit_property=$(ocusers exec alice -- systemctl show -P SocketBindAllow openclaw@bob.service 2>&1 | tail -1)
         echo cross.unit_environment_file=$(ocusers exec alice -- systemctl show -P EnvironmentFiles openclaw@bob.service 2>&1 | tail -1)
         echo rules=$(nft list table inet ocusers | grep -c -e '^\\s*\\(meta\\|ip\\|ip6\\|fib\\|tcp\\|udp\\|counter\\|goto\\)' )
         nft list table inet ocusers > /tmp/ocusers-table.txt
         echo nonroot.list=$(setpriv --reuid nobody --regid nogroup --clear-groups -- ocusers list --json 2>&1 | tr -d '\n')
         echo nonroot.status=$(setpriv --reuid nobody --regid nogroup --clear-groups -- ocusers status alice 2>&1 | grep 'ready:')
         echo root.list=$(ocusers list --json 2>&1 | tr -d '\n')
         echo counters=$(nft list table inet ocusers | grep -o 'packets [0-9]* .*comment \"[^\"]*\"' | sed 's/ bytes [0-9]*//' | tr '\\n' ';')
",
    );
    let out = fx.run(&script);
    let table = fx.ok("cat /tmp/ocusers-table.txt").unwrap_or_default();
    // Clean up whatever happened above, so later trials see the host they expect.
    let _ = fx.run(
        "pkill -f /tmp/oclisten.pl; pkill -f ocusers-bob-abstract
         ip link del ocd0; ip link del ocv0; ip netns del ocnet
         rm -f /etc/ocusers/ocusers.toml /tmp/oclisten.*[!l]
         ocusers add alice --tier vmtest >/dev/null",
    );
    ensure(up.ok(), || format!("setup failed: {}", up.describe()))?;
    ensure(out.ok(), || format!("probes failed: {}", out.describe()))?;
    eprintln!("[vm] nft list table inet ocusers, 3 tenants and an allow-list:\n{table}");
    let mut f = fields(&out.stdout);
    for who in ["alice", "root"] {
        let results: Vec<String> = f
            .get(&format!("{who}.probes"))
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        for ((case, ..), got) in cases.iter().zip(results) {
            f.insert(format!("{who}.{case}"), got);
        }
    }
    fx.figure(
        "firewall rules (3 tenants, allow-list)",
        f.get("rules").cloned().unwrap_or_default(),
    );
    fx.figure(
        "firewall counters",
        f.get("counters").cloned().unwrap_or_default(),
    );
    for (k, v) in f.iter().filter(|(k, _)| k.starts_with("cross.")) {
        fx.figure(format!("still crossing: {}", &k[6..]), v.clone());
    }
    let mut bad = Vec::new();
    for (case, proto, _, _, want) in &cases {
        let got = f.get(&format!("alice.{case}")).cloned().unwrap_or_default();
        let mut words = got.split_whitespace();
        let (what, ms) = (
            words.next().unwrap_or(""),
            words
                .next()
                .and_then(|m| m.parse::<u64>().ok())
                .unwrap_or(u64::MAX),
        );
        if what != *want || (*want == "refused" && ms > 1000) {
            bad.push(format!(
                "alice {case} ({proto}): {got:?}, want {want} within 1 s"
            ));
        }
        // Control: root reaches every listener (bob's block and his port 3000 included).
        let root = f.get(&format!("root.{case}")).cloned().unwrap_or_default();
        let reachable = if *proto == "tcp" {
            "connected"
        } else {
            "answered"
        };
        if !root.starts_with(reachable) {
            bad.push(format!("control: root {case}: {root:?}, want {reachable}"));
        }
    }
    // Read commands without root: readiness unknown, never "not ready"; root sees it.
    for (who, want_state, want_ready) in [
        ("nonroot", "unknown", Value::Null),
        ("root", "ready", Value::Bool(true)),
    ] {
        let text = f.get(&format!("{who}.list")).cloned().unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                let tenants = v["tenants"].as_array().cloned().unwrap_or_default();
                if tenants.len() != 3
                    || tenants
                        .iter()
                        .any(|t| t["readiness"]["state"] != want_state || t["ready"] != want_ready)
                {
                    bad.push(format!(
                        "{who}: list --json should say readiness {want_state}: {text}"
                    ));
                }
            }
            Err(e) => bad.push(format!("{who}: list --json: {e}: {text}")),
        }
    }
    let status = f.get("nonroot.status").cloned().unwrap_or_default();
    if !status.contains("unknown (readiness is probed only as root") {
        bad.push(format!("status as a normal user: {status:?}"));
    }
    ensure(bad.is_empty(), || {
        format!("{}\n--- output ---\n{}", bad.join("\n"), out.stdout)
    })
}

/// Where the sockets' probes live: readable in a tenant's sandbox (`/usr` is visible there,
/// read-only), so `ocusers exec` runs the same script as the cgroup probes; not passed in argv,
/// where systemd would expand its `$`.
const PROBE_AT: &str = "/usr/local/lib/ocusers-vmtest/ocprobe.pl";

/// Threat model rule 3 for ocusers' own listeners: `ocusers-invite.socket` (127.0.0.1:9124)
/// and `ocusers-ask.socket` (127.0.0.1:9123) are socket-activated with `Accept=yes`, and the
/// invite answer runs as root, so a tenant connecting would start a root service per
/// connection. With both sockets enabled and listening (root connects and gets each
/// endpoint's answer, and the socket counts the connection: the controls), alice's user, from
/// her gateway's unit cgroup, from her `ocusers exec` sandbox and outside any unit, and bob
/// from his unit, are refused (or get nothing) on both ports, and neither socket accepts a
/// connection while they try (`NAccepted` unchanged).
pub fn invite_and_ask_sockets_closed(fx: &Fixture) -> R {
    const SOCKETS: [(&str, u16); 2] = [
        ("ocusers-invite.socket", 9124),
        ("ocusers-ask.socket", 9123),
    ];
    let accepted = |tag: &str| {
        SOCKETS
            .iter()
            .map(|(unit, port)| {
                format!("echo accepted.{tag}.{port}=$(systemctl show -P NAccepted {unit})\n")
            })
            .collect::<String>()
    };
    let vantages = [
        (
            "alice_unit",
            format!("in_unit alice oc-alice perl {PROBE_AT}"),
        ),
        (
            "alice_exec",
            format!("ocusers exec alice -- perl {PROBE_AT}"),
        ),
        ("alice_user", format!("as_user oc-alice perl {PROBE_AT}")),
        ("bob_unit", format!("in_unit bob oc-bob perl {PROBE_AT}")),
    ];
    let mut script = format!(
        "mkdir -p {dir}
cat > {PROBE_AT} <<'EOF'\n{PROBE_PL}EOF
chmod 755 {dir}; chmod 644 {PROBE_AT}
systemctl enable --now {units} >/dev/null 2>&1 || systemctl status --no-pager {units} >&2
for u in {units}; do echo \"active.$u=$(systemctl is-active $u)\"; done
echo listening=$(ss -Hltn 'sport = :9123 or sport = :9124' | awk '{{print $4}}' | sort | tr '\\n' ' ')
{before}",
        dir = PROBE_AT.rsplit_once('/').map_or("", |(d, _)| d),
        units = SOCKETS.map(|(u, _)| u).join(" "),
        before = accepted("before"),
    );
    for (who, probe) in &vantages {
        for (_, port) in SOCKETS {
            script.push_str(&format!(
                "echo {who}.{port}=$({probe} tcp 127.0.0.1 {port} 2>&1 | tail -1)\n"
            ));
        }
    }
    script.push_str(&accepted("tenants"));
    // The controls: root connects, and each endpoint answers (404: no tenant at that address,
    // no route for that name), so a refusal above is the firewall's, not a dead socket's.
    script.push_str(&format!(
        "echo root_probe.9124=$(perl {PROBE_AT} tcp 127.0.0.1 9124)
echo root_probe.9123=$(perl {PROBE_AT} tcp 127.0.0.1 9123)
echo root_http.9124=$(curl -sS -m 60 -o /dev/null -w '%{{http_code}}' -H 'Host: nobody.example' http://127.0.0.1:9124/ 2>&1)
echo root_http.9123=$(curl -sS -m 60 -o /dev/null -w '%{{http_code}}' 'http://127.0.0.1:9123/check?domain=nobody.example' 2>&1)
{after}",
        after = accepted("root"),
    ));
    let t = Instant::now();
    let out = fx.run(&script);
    let took = t.elapsed();
    // Back to the host the later trials expect, whatever happened.
    let _ = fx.run(&format!(
        "systemctl disable --now {} >/dev/null 2>&1; rm -rf {}",
        SOCKETS.map(|(u, _)| u).join(" "),
        PROBE_AT.rsplit_once('/').map_or("", |(d, _)| d)
    ));
    ensure(out.ok(), || {
        format!("the probes failed: {}", out.describe())
    })?;
    let f = fields(&out.stdout);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut bad = Vec::new();
    for (unit, port) in SOCKETS {
        if get(&format!("active.{unit}")) != "active" {
            bad.push(format!(
                "{unit} is not active (this trial needs it listening)"
            ));
        }
        if !get("listening").contains(&format!("127.0.0.1:{port}")) {
            bad.push(format!("nothing listens on 127.0.0.1:{port}"));
        }
        for (who, _) in &vantages {
            let got = get(&format!("{who}.{port}"));
            let what = got.split_whitespace().next().unwrap_or("");
            if what != "refused" && what != "timeout" {
                bad.push(format!(
                    "{who} to {unit} (127.0.0.1:{port}): {got:?}, want refused"
                ));
            }
            fx.figure(format!("{who} to 127.0.0.1:{port}"), got);
        }
        let n = |tag: &str| get(&format!("accepted.{tag}.{port}")).parse::<u64>().ok();
        match (n("before"), n("tenants"), n("root")) {
            (Some(b), Some(t), Some(r)) => {
                if t != b {
                    bad.push(format!(
                        "{unit} accepted {} connection(s) while only tenants connected",
                        t - b
                    ));
                }
                // Control: root's probe and its request are two connections.
                if r < t + 2 {
                    bad.push(format!(
                        "control: {unit} counted {} of root's 2 connections",
                        r - t
                    ));
                }
            }
            other => bad.push(format!("{unit}: NAccepted not read: {other:?}")),
        }
        if !get(&format!("root_probe.{port}")).starts_with("connected") {
            bad.push(format!(
                "control: root cannot connect to 127.0.0.1:{port}: {:?}",
                get(&format!("root_probe.{port}"))
            ));
        }
        if get(&format!("root_http.{port}")) != "404" {
            bad.push(format!(
                "control: {unit} did not answer root (want 404 for a name nobody routes): {:?}",
                get(&format!("root_http.{port}"))
            ));
        }
    }
    fx.figure(
        "invite and ask sockets: probes and controls (TCG)",
        format!("{:.1} s", took.as_secs_f64()),
    );
    ensure(bad.is_empty(), || {
        format!("{}\n--- output ---\n{}", bad.join("\n"), out.describe())
    })
}

/// The firewall's second rule on its own (what protects a Debian 12 host, whose systemd does
/// not enforce the bind filter): a process of alice's user outside her unit binds bob's port
/// while bob is stopped, and a client (root, as ocusers or the proxy would) gets nothing from it.
pub fn squatter_never_answers(fx: &Fixture) -> R {
    let bob = fx.port("bob")?;
    let out = fx.ok(&format!(
        "systemctl stop openclaw@bob
         as_user oc-alice perl -MSocket -e '
            socket(S, PF_INET, SOCK_STREAM, 0) or die; setsockopt(S, SOL_SOCKET, SO_REUSEADDR, 1);
            bind(S, sockaddr_in({bob}, INADDR_LOOPBACK)) or die \"bind: $!\"; listen(S, 5) or die;
            print STDERR \"listening\\n\";
            while (accept(C, S)) {{ open(my $f, \">>\", \"/tmp/squatter.log\"); print $f \"accepted\\n\"; close $f; print C \"HTTP/1.0 200 OK\\r\\n\\r\\nsquatter\"; close C }}' 2>/tmp/squatter.err &
         sq=$!
         for _ in $(seq 50); do grep -q listening /tmp/squatter.err 2>/dev/null && break; sleep 0.1; done
         echo squatter_listening=$(grep -c listening /tmp/squatter.err)
         echo root_gets=$(curl -sS -m 4 http://127.0.0.1:{bob}/readyz 2>&1 | head -c 200)
         echo accepted=$(cat /tmp/squatter.log 2>/dev/null | wc -l)
         echo drops=$(nft list table inet ocusers | grep 'comment \"answer:' | sed -n 's/.*packets \\([0-9]*\\).*/\\1/p')
         pkill -KILL -u oc-alice -x perl; wait $sq 2>/dev/null
         systemctl start openclaw@bob && wait_ready bob && echo bob_back=yes
         echo root_after=$(curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{bob}/readyz)"
    ))?;
    let f = fields(&out);
    ensure(
        f.get("squatter_listening").map(String::as_str) == Some("1"),
        || format!("the squatter could not even listen (this trial needs it to):\n{out}"),
    )?;
    ensure(
        f.get("root_gets")
            // curl: (28) timed out: the handshake never completes.
            .is_some_and(|v| !v.contains("squatter") && v.contains("(28)")),
        || format!("a client reached the squatter on bob's port:\n{out}"),
    )?;
    ensure(f.get("accepted").map(String::as_str) == Some("0"), || {
        format!("the squatter accepted a connection:\n{out}")
    })?;
    ensure(num(&f, "drops")? >= 1.0, || {
        format!("the answer rule counted no drop:\n{out}")
    })?;
    ensure(
        f.get("root_after").map(String::as_str) == Some("200"),
        || format!("bob does not answer after the squatter left:\n{out}"),
    )
}

/// The rules come back from their file through the shipped unit (as at boot), and the unit is
/// enabled by the package.
pub fn firewall_reloaded_by_unit(fx: &Fixture) -> R {
    let bob = fx.port("bob")?;
    let out = fx.ok(&format!(
        "echo enabled=$(systemctl is-enabled ocusers-firewall.service)
         nft delete table inet ocusers
         echo open=$(in_unit alice oc-alice curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{bob}/readyz 2>&1)
         systemctl restart ocusers-firewall.service
         echo rules=$(nft list table inet ocusers | grep -o ' own [0-9]*-[0-9]* uid [0-9]*' | wc -l)
         echo closed=$(in_unit alice oc-alice curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{bob}/readyz 2>&1)"
    ))?;
    let f = fields(&out);
    ensure(
        f.get("enabled").map(String::as_str) == Some("enabled"),
        || out.clone(),
    )?;
    // Without the table, loopback is open between tenants: the rules are what closes it.
    ensure(f.get("open").map(String::as_str) == Some("200"), || {
        format!("without the table alice should reach bob (control):\n{out}")
    })?;
    ensure(f.get("rules").map(String::as_str) == Some("3"), || {
        format!("expected the own-block elements of 3 tenants:\n{out}")
    })?;
    ensure(f.get("closed").is_some_and(|v| v.contains("(7)")), || {
        format!("after the unit reloaded the rules alice still reaches bob:\n{out}")
    })
}

/// Acceptance 5 (clean): `ocusers audit` passes with three tenants: every check holds and
/// every probe of each tenant against the others is denied by the OS. (The VM's tenants run
/// the stub gateway, which has no OpenClaw CLI: `--no-openclaw` here; the nspawn tier runs
/// `openclaw security audit` in the real gateways' sandboxes.)
pub fn audit_passes_clean(fx: &Fixture) -> R {
    let t = Instant::now();
    let report = fx.json("ocusers audit --no-openclaw --json")?;
    fx.figure(
        "ocusers audit, 3 tenants (TCG)",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    );
    ensure(report["ok"] == true, || {
        format!("audit failed on a clean host: {report:#}")
    })?;
    let tenants = report["tenants"].as_array().cloned().unwrap_or_default();
    ensure(tenants.len() == 3, || format!("{report:#}"))?;
    for t in &tenants {
        for c in t["checks"].as_array().into_iter().flatten() {
            ensure(c["ok"] == true, || format!("{}: {c}", t["name"]))?;
        }
    }
    let probes = report["probes"].as_array().cloned().unwrap_or_default();
    // 3 tenants x 2 others x 6 probes, all denied (the bind filter is enforced here), and each
    // tenant against the host: root listeners on 127.0.0.1 and ::1, root UDP sockets, the
    // metadata addresses (no route in this guest: refused before the firewall, still denied).
    let pairs = probes.iter().filter(|p| p["to"] != "the host").count();
    ensure(pairs == 36, || format!("{pairs} pair probes: {report:#}"))?;
    for t in TENANTS {
        let host: Vec<&str> = probes
            .iter()
            .filter(|p| p["from"] == t && p["to"] == "the host")
            .filter_map(|p| p["probe"].as_str())
            .collect();
        for want in [
            "local-tcp",
            "local-tcp6",
            "local-udp",
            "local-udp6",
            "metadata",
            "metadata6",
        ] {
            ensure(host.contains(&want), || {
                format!("{t}: no {want} probe of the host: {report:#}")
            })?;
        }
    }
    for p in &probes {
        ensure(p["result"] == "denied", || format!("probe not denied: {p}"))?;
    }
    // The human form of a clean audit is checked by audit_names_each_fault,
    // whose last audit (after the faults are undone) is that one: each
    // audit takes about a minute under TCG.
    ensure(
        report["warnings"].as_array().is_some_and(Vec::is_empty),
        || format!("{report:#}"),
    )
}

/// Acceptance 5 (faults): each injected fault makes `ocusers audit` exit non-zero with a
/// failure naming the tenant and the cause; the host is restored after each.
pub fn audit_names_each_fault(fx: &Fixture) -> R {
    let bob = fx.port("bob")?;
    let faults: [(&str, &str, &str, &[&str]); 5] = [
        (
            "secrets file made 0644",
            "chmod 644 /etc/ocusers/tenants/alice.env",
            "chmod 600 /etc/ocusers/tenants/alice.env",
            &["alice: secrets_file:", "mode 0644", "readable by every user"],
        ),
        (
            "state dir made 0755",
            "chmod 755 /var/lib/openclaw/bob",
            "chmod 700 /var/lib/openclaw/bob",
            &["bob: state_dir:", "mode 0755", "could read /var/lib/openclaw/bob of bob"],
        ),
        (
            "token copied from another tenant",
            "cp -p /etc/ocusers/tenants/carol.env /root/carol.env.orig
             tok=$(sed -n 's/^OPENCLAW_GATEWAY_TOKEN=//p' /etc/ocusers/tenants/alice.env)
             sed -i \"s/^OPENCLAW_GATEWAY_TOKEN=.*/OPENCLAW_GATEWAY_TOKEN=$tok/\" /etc/ocusers/tenants/carol.env",
            "cp -p /root/carol.env.orig /etc/ocusers/tenants/carol.env",
            &["carol: token: OPENCLAW_GATEWAY_TOKEN is the same as alice's", "alice: token:"],
        ),
        (
            "a channel credential set for two tenants",
            "cp -p /etc/ocusers/tenants/alice.env /root/alice.env.orig; cp -p /etc/ocusers/tenants/bob.env /root/bob.env.orig
             echo TELEGRAM_BOT_TOKEN=123456:same-bot >> /etc/ocusers/tenants/alice.env
             echo TELEGRAM_BOT_TOKEN=123456:same-bot >> /etc/ocusers/tenants/bob.env",
            "cp -p /root/alice.env.orig /etc/ocusers/tenants/alice.env; cp -p /root/bob.env.orig /etc/ocusers/tenants/bob.env",
            &["alice: credentials:", "TELEGRAM_BOT_TOKEN (bob)"],
        ),
        (
            "a foreign process listening on a tenant's port",
            &format!(
                "setpriv --reuid nobody --regid nogroup --clear-groups -- perl -MSocket -e 'socket(S, PF_INET, SOCK_STREAM, 0) or die; bind(S, sockaddr_in({}, INADDR_LOOPBACK)) or die \"bind: $!\"; listen(S, 5) or die; sleep 300' >/dev/null 2>&1 &
                 echo $! > /root/squatter.pid
                 for _ in $(seq 50); do grep -qi ':{:04X} 00000000:0000 0A' /proc/net/tcp && break; sleep 0.1; done",
                bob + 5,
                bob + 5
            ),
            "kill $(cat /root/squatter.pid)",
            &["bob: listeners:", "outside openclaw@bob.service"],
        ),
    ];
    // All five at once and one audit (each audit takes about a minute under
    // TCG): every fault must still be named by its own failure lines. The
    // faults are undone in reverse order (two of them save and put back
    // files another one changed).
    for (_, inject, _, _) in &faults {
        fx.ok(inject)?;
    }
    let out = fx.run("ocusers audit --no-openclaw --json");
    for (_, _, restore, _) in faults.iter().rev() {
        fx.ok(restore)?;
    }
    ensure(out.rc == 1, || {
        format!("audit with the faults did not fail: {}", out.describe())
    })?;
    let report: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("audit --json: {e}: {}", out.describe()))?;
    let failures: Vec<String> = report["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    ensure(out.stderr.contains("audit found"), || {
        format!("no one-line error on stderr: {}", out.describe())
    })?;
    for (what, _, _, needles) in &faults {
        for needle in needles.iter() {
            ensure(failures.iter().any(|f| f.contains(needle)), || {
                format!("{what}: no failure says {needle:?}: {failures:#?}")
            })?;
        }
        fx.figure(
            format!("audit names: {what}"),
            failures
                .iter()
                .find(|f| f.contains(needles[0]))
                .cloned()
                .unwrap_or_default(),
        );
    }
    // Clean again, in the human form (audit_passes_clean reads the JSON).
    let after = fx.run("ocusers audit --no-openclaw");
    ensure(
        after.ok() && after.stdout.contains("audit: 0 failure(s), 0 warning(s)"),
        || {
            format!(
                "the host is not clean again after the faults: {}",
                after.describe()
            )
        },
    )
}

/// Exposure of the tenant unit on Debian 13's systemd 257 (the system tier checks Debian 12's).
pub fn exposure_score(fx: &Fixture) -> R {
    let out = fx.ok("systemd-analyze security --no-pager openclaw@alice.service | tail -1")?;
    let score: f64 = out
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .ok_or_else(|| format!("no score in {out}"))?;
    fx.figure("exposure on systemd 257", out.trim().to_string());
    ensure(score <= 2.0, || format!("exposure above 2.0: {out}"))
}

/// `remove` takes the tenant's rules out of the file and the kernel.
pub fn remove_drops_rules(fx: &Fixture) -> R {
    let out = fx.ok("ocusers remove carol --purge >/dev/null
         echo file=$(grep -c 'carol' /var/lib/ocusers/firewall.nft)
         echo loaded=$(nft list table inet ocusers | grep -c 'carol')
         echo others=$(nft list table inet ocusers | grep -o ' own [0-9]*-[0-9]* uid [0-9]*' | wc -l)
         # disable, like enable, leaves no daemon-reload pending (systemd 257)
         echo reload=$(prop alice NeedDaemonReload)")?;
    let f = fields(&out);
    ensure(
        f.get("file").map(String::as_str) == Some("0")
            && f.get("loaded").map(String::as_str) == Some("0")
            && f.get("others").map(String::as_str) == Some("2"),
        || format!("carol's rules are still there, or others went:\n{out}"),
    )?;
    ensure(f.get("reload").map(String::as_str) == Some("no"), || {
        format!("NeedDaemonReload after remove:\n{out}")
    })
}

//! The process boundary, attacked as the tenant (issue 15): the inspector
//! signal, the gateway's own restart, /dev/shm and the change trail. Each
//! attack runs as alice inside her sandbox (`ocusers exec alice -- ...`),
//! against a root-owned sentinel and a second tenant (bob-smith), which
//! must be unchanged afterwards.
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::assert::{R, ensure, wait_for};
use crate::support::process::{describe, stdout};
use crate::support::trials::Figures as _;
use crate::tenants::Fixture;

const SENTINEL: &str = "/srv/ocusers-sentinel";

/// Mode, owner and SHA-256 of the sentinel file and directory, created on
/// first use.
fn sentinel(fx: &Fixture) -> Result<String, String> {
    fx.sh(&format!(
        "[ -d {SENTINEL} ] || {{ install -d -o root -g root -m 0755 {SENTINEL} && \
           echo 'root sentinel' > {SENTINEL}/file && chmod 0644 {SENTINEL}/file; }}; \
         stat -c '%n %a %U %G' {SENTINEL} {SENTINEL}/file; sha256sum {SENTINEL}/file; ls -A {SENTINEL}"
    ))
}

/// The second tenant, bob-smith: its gateway's pid and readiness.
fn bystander(fx: &Fixture) -> Result<(u32, String), String> {
    Ok((fx.main_pid("bob-smith")?, fx.readyz(fx.port("bob-smith")?)?))
}

/// The sentinel and bob-smith as they were.
fn unchanged(fx: &Fixture, sent: &str, bob: &(u32, String)) -> R {
    let now = sentinel(fx)?;
    ensure(now == sent, || {
        format!("the sentinel changed:\n{sent}\n---\n{now}")
    })?;
    let b = bystander(fx)?;
    ensure(&b == bob && b.1 == "200", || {
        format!("bob-smith was disturbed: {bob:?} -> {b:?}")
    })
}

/// Listening TCP sockets (local address:port), sorted.
fn listeners(fx: &Fixture) -> Result<Vec<String>, String> {
    // Only sockets of the container's processes (`ss -p` names no owner
    // for the host's, which share this network namespace).
    let out = fx.sh("ss -Hltnp | grep 'users:(' | awk '{print $4}' | sort -u")?;
    Ok(out.lines().map(str::to_string).collect())
}

fn wait_ready(fx: &Fixture, name: &str, timeout: Duration) -> R {
    let port = fx.port(name)?;
    wait_for(&format!("{name} ready"), timeout, || {
        Ok(fx.readyz(port)? == "200")
    })
}

/// SIGUSR1 from the tenant to its own gateway opens no inspector: no new
/// listener at all, nothing on 9229, nothing a local user can read there.
pub fn sigusr1_opens_no_inspector(fx: &Fixture) -> R {
    let sent = sentinel(fx)?;
    let bob = bystander(fx)?;
    let env = fx.sh("grep ^NODE_OPTIONS= /etc/ocusers/tenants/alice.env")?;
    ensure(env.contains("--disable-sigusr1"), || {
        format!("alice's env file: {env}")
    })?;
    let pid = fx.main_pid("alice")?;
    let environ = fx.sh(&format!(
        "tr '\\0' '\\n' < /proc/{pid}/environ | grep ^NODE_OPTIONS="
    ))?;
    ensure(environ.contains("--disable-sigusr1"), || {
        format!("alice's running gateway: {environ}")
    })?;
    let before = listeners(fx)?;
    // As the tenant, in its sandbox (its own user namespace; the gateway is
    // the same uid, so the kernel lets the signal through).
    let out = fx.ocusers(&format!(
        "exec alice -- sh -c 'kill -USR1 {pid} && echo sent'"
    ));
    ensure(stdout(&out).contains("sent"), || {
        format!(
            "the tenant could not signal its gateway: {}",
            describe(&out)
        )
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let after = listeners(fx)?;
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    ensure(new.is_empty(), || {
        format!("SIGUSR1 opened listeners: {new:?}")
    })?;
    ensure(!after.iter().any(|l| l.ends_with(":9229")), || {
        format!("something listens on 9229: {after:?}")
    })?;
    let out = fx.c.sh_as(
        "nobody",
        "curl -s --max-time 3 http://127.0.0.1:9229/json/list",
    );
    ensure(!out.status.success() && out.stdout.is_empty(), || {
        format!("nobody read the inspector: {}", describe(&out))
    })?;
    // What the signal did to the gateway (without the inspector, Node's
    // default action ends the process; systemd brings it back).
    let now = fx.show("openclaw@alice.service", "MainPID")?;
    fx.figure(
        "SIGUSR1 to alice's gateway (inspector off)",
        if now == pid.to_string() {
            "ignored, same process".into()
        } else {
            format!("gateway ended, restarted by systemd (pid {pid} -> {now})")
        },
    );
    wait_ready(fx, "alice", Duration::from_secs(180))?;
    ensure(
        fx.sh("ss -Hltn | grep -c ':9229 ' || true")?.trim() == "0",
        || "9229 listens after the restart".into(),
    )?;
    // The audit may fail on other layers in this container (cgroup v1):
    // only its inspector check is read.
    let out = fx.ocusers("audit alice --json --no-openclaw");
    let audit: Value = serde_json::from_str(&stdout(&out))
        .map_err(|e| format!("audit --json: {e}: {}", describe(&out)))?;
    let check = audit["tenants"][0]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "inspector"))
        .cloned()
        .unwrap_or(Value::Null);
    ensure(check["ok"] == true, || {
        format!("audit's inspector check: {check}")
    })?;
    unchanged(fx, &sent, &bob)
}

/// The restart contract: a config change that makes the gateway exit 0 for
/// a supervisor restart brings it back (a new process, ready within twice
/// its restart-to-ready time); `ocusers stop` keeps it stopped.
pub fn config_restart_comes_back(fx: &Fixture) -> R {
    let sent = sentinel(fx)?;
    let bob = bystander(fx)?;
    let unit = "openclaw@alice.service";
    // Restart-to-ready of this gateway, measured the way
    // gateway_start_to_ready measures it.
    let t = Instant::now();
    fx.sh(&format!("systemctl restart {unit}"))?;
    wait_ready(fx, "alice", Duration::from_secs(300))?;
    let baseline = t.elapsed();
    let pid = fx.main_pid("alice")?;
    let restarts: u32 = fx.show(unit, "NRestarts")?.parse().unwrap_or(0);
    let cursor =
        fx.sh("journalctl -n 1 --show-cursor --no-pager -o cat | sed -n 's/^-- cursor: //p'")?;
    let out = fx.ocusers("exec alice -- openclaw config set gateway.tailscale.mode off");
    ensure(out.status.success(), || {
        format!("config set as the tenant: {}", describe(&out))
    })?;
    let t = Instant::now();
    let port = fx.port("alice")?;
    let mut new_pid = 0;
    let waited = wait_for(
        "alice to come back after its supervisor restart",
        baseline * 3,
        || {
            new_pid = fx.show(unit, "MainPID")?.parse().unwrap_or(0);
            Ok(new_pid != 0 && new_pid != pid && fx.readyz(port)? == "200")
        },
    );
    let back = t.elapsed();
    let log = fx.sh(&format!(
        "journalctl -u {unit} --no-pager -o cat --after-cursor='{}' | tail -40",
        cursor.trim()
    ))?;
    waited.map_err(|e| format!("{e}; the unit's log:\n{log}"))?;
    fx.figure(
        "supervisor restart (config set as the tenant) to ready, alice",
        format!(
            "{:.1} s (systemctl restart to ready: {:.1} s)",
            back.as_secs_f64(),
            baseline.as_secs_f64()
        ),
    );
    ensure(back <= baseline * 2, || {
        format!(
            "ready again after {:.1} s, more than twice the restart-to-ready time {:.1} s",
            back.as_secs_f64(),
            baseline.as_secs_f64()
        )
    })?;
    // It was the gateway's exit and systemd's automatic restart.
    let now: u32 = fx.show(unit, "NRestarts")?.parse().unwrap_or(0);
    ensure(now > restarts, || {
        format!("NRestarts {restarts} -> {now}: not an automatic restart; log:\n{log}")
    })?;
    // How the old process ended, as the unit's journal tells it (the
    // gateway's own line, systemd's exit status line).
    let why: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("supervisor restart")
                || l.contains("Deactivated successfully")
                || l.contains("status=")
                || l.contains("Scheduled restart job")
        })
        .collect();
    fx.figure(
        "how alice's gateway ended after the config change",
        why.join(" | ").chars().take(400).collect(),
    );

    // The operator's stop is for good.
    // Twice the unit's RestartSec=3s: a restart would have begun.
    fx.ocusers_ok("stop alice")?;
    std::thread::sleep(Duration::from_secs(6));
    let state = fx.sh(&format!(
        "systemctl is-active {unit} || true; systemctl show -P MainPID {unit}"
    ))?;
    ensure(state == "inactive\n0\n", || {
        format!("after `ocusers stop` and 6 s: {state:?}")
    })?;
    fx.ocusers_ok("start alice")?;
    wait_ready(fx, "alice", Duration::from_secs(180))?;

    // How the gateway's own restart signal (SIGUSR2) comes back, under the
    // template and in-process, is measured by bench/restart_modes.sh (a
    // figure, not a check).
    unchanged(fx, &sent, &bob)
}

/// Each gateway has a /dev/shm of its own, not the host's.
pub fn dev_shm_private(fx: &Fixture) -> R {
    let sent = sentinel(fx)?;
    let bob = bystander(fx)?;
    let probe = "/dev/shm/ocusers-shm-probe";
    let pid = fx.main_pid("alice")?;
    let bob_pid = fx.main_pid("bob-smith")?;
    let uid = fx.sh("id -u oc-alice")?.trim().to_string();
    let gid = fx.sh("id -g oc-alice")?.trim().to_string();
    // The gateway's own /dev/shm: a tmpfs with the unit's size, not the
    // host's file system.
    let mnt = fx.sh(&format!(
        "nsenter -t {pid} -m findmnt -n -o FSTYPE,OPTIONS /dev/shm"
    ))?;
    ensure(
        mnt.contains("tmpfs") && mnt.contains("size=262144k"),
        || format!("alice's /dev/shm: {mnt}"),
    )?;
    let devs = fx.sh(&format!(
        "stat -c %d /dev/shm; nsenter -t {pid} -m stat -c %d /dev/shm; nsenter -t {bob_pid} -m stat -c %d /dev/shm"
    ))?;
    let d: Vec<&str> = devs.lines().collect();
    ensure(
        d.len() == 3 && d[0] != d[1] && d[1] != d[2] && d[0] != d[2],
        || format!("/dev/shm devices host, alice, bob-smith: {d:?}"),
    )?;
    // Written as the tenant, in the gateway's namespace and through exec.
    fx.sh(&format!(
        "nsenter -t {pid} -m -S {uid} -G {gid} sh -c 'echo alice > {probe}'"
    ))?;
    let exec = fx.ocusers_ok(&format!(
        "exec alice -- sh -c 'echo alice > {probe}-exec && cat {probe}-exec && ls -A /dev/shm'"
    ))?;
    ensure(exec.starts_with("alice\n"), || {
        format!("exec alice wrote nothing to /dev/shm: {exec}")
    })?;
    ensure(
        fx.sh(&format!("nsenter -t {pid} -m cat {probe}"))?.trim() == "alice",
        || "the file is not in alice's /dev/shm".into(),
    )?;
    let host = fx.sh("ls -A /dev/shm")?;
    ensure(!host.contains("ocusers-shm-probe"), || {
        format!("alice's file is in the container's /dev/shm: {host}")
    })?;
    let other = fx.sh(&format!("nsenter -t {bob_pid} -m ls -A /dev/shm"))?;
    ensure(!other.contains("ocusers-shm-probe"), || {
        format!("alice's file is in bob-smith's /dev/shm: {other}")
    })?;
    let out = fx.ocusers("exec bob-smith -- ls -A /dev/shm");
    ensure(
        out.status.success() && !stdout(&out).contains("ocusers-shm-probe"),
        || format!("bob-smith's exec: {}", describe(&out)),
    )?;
    fx.sh(&format!("nsenter -t {pid} -m rm -f {probe}"))?;
    ensure(fx.readyz(fx.port("alice")?)? == "200", || {
        "alice is not ready with a private /dev/shm".into()
    })?;
    unchanged(fx, &sent, &bob)
}

/// A tenant can write journal entries that look like ocusers' own; `ocusers
/// history` shows only root's.
pub fn forged_history_entries_ignored(fx: &Fixture) -> R {
    let sent = sentinel(fx)?;
    let bob = bystander(fx)?;
    let mark = format!("forged-{}", std::process::id());
    let out = fx.ocusers(&format!(
        "exec alice -- sh -c 'echo {mark}-cat | systemd-cat -t ocusers && \
         printf \"SYSLOG_IDENTIFIER=ocusers\\nOCUSERS_TENANT=alice\\nOCUSERS_ACTION=remove\\nOCUSERS_STEP={mark}-fields\\nOCUSERS_BY=root\\nMESSAGE={mark}-fields\\n\" | logger --journald && echo written'"
    ));
    ensure(stdout(&out).contains("written"), || {
        format!(
            "the tenant could not write to the journal: {}",
            describe(&out)
        )
    })?;
    // A real change, made by root.
    fx.ocusers_ok("token rotate alice")?;
    // The plain query (README's before this change) shows the forgeries.
    let plain = wait_plain(fx, &mark)?;
    ensure(
        plain.contains(&format!("{mark}-cat")) && plain.contains(&format!("{mark}-fields")),
        || format!("the forged entries are not in the journal: {plain}"),
    )?;
    for args in ["history --json", "history alice --json"] {
        let v = fx.json(args)?;
        let text = v.to_string();
        ensure(!text.contains(&mark), || {
            format!("`ocusers {args}` shows a tenant's forged entry: {text}")
        })?;
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        ensure(
            entries.iter().any(|e| {
                e["tenant"] == "alice"
                    && e["action"] == "token-rotate"
                    // `root`, or the admin behind sudo if this test runs under sudo.
                    && e["by"].as_str().is_some_and(|b| !b.is_empty() && b != "uid 0")
                    && e["time"].as_str().is_some_and(|t| t.ends_with('Z'))
            }),
            || format!("`ocusers {args}` lacks the token rotation: {text}"),
        )?;
        // Never a secret.
        let token = fx.token("alice")?;
        ensure(!text.contains(&token), || {
            format!("`ocusers {args}` shows alice's token")
        })?;
    }
    let table = fx.ocusers_ok("history alice")?;
    ensure(
        table.starts_with("TIME (UTC)") && table.contains("token-rotate") && !table.contains(&mark),
        || table.clone(),
    )?;
    let readme_query = fx.sh("journalctl -o cat --no-pager SYSLOG_IDENTIFIER=ocusers _UID=0")?;
    ensure(!readme_query.contains(&mark), || {
        "README's query with _UID=0 shows the forged entry".into()
    })?;
    wait_ready(fx, "alice", Duration::from_secs(180))?;
    unchanged(fx, &sent, &bob)
}

fn wait_plain(fx: &Fixture, mark: &str) -> Result<String, String> {
    let mut plain = String::new();
    let _ = wait_for(
        "the forged entries in the journal",
        Duration::from_secs(10),
        || {
            plain = fx.sh("journalctl -o cat --no-pager SYSLOG_IDENTIFIER=ocusers")?;
            Ok(plain.contains(&format!("{mark}-cat")) && plain.contains(&format!("{mark}-fields")))
        },
    );
    Ok(plain)
}

/// The start gate (issue 18) is not the tenant's to hold: alice's gateway,
/// stopped by alice herself (SIGSTOP from her sandbox) in the middle of a
/// start, is running, not ready and idle; bob-smith's restart then goes
/// through the gate within a few seconds (its CPU-use window), not after
/// `ready_timeout` (180 s), as it did while every started tenant counted
/// until ready. alice comes back when she lets her gateway go on.
pub fn start_gate_not_held(fx: &Fixture) -> R {
    let sent = sentinel(fx)?;
    let old = fx.main_pid("alice")?;
    let since = fx.sh("date '+%Y-%m-%d %H:%M:%S'")?.trim().to_string();
    fx.sh("systemctl restart --no-block openclaw@alice")?;
    let mut pid = 0;
    wait_for(
        "alice's new gateway process",
        Duration::from_secs(60),
        || {
            pid = fx
                .show("openclaw@alice.service", "MainPID")?
                .parse()
                .unwrap_or(0);
            Ok(pid != 0 && pid != old)
        },
    )?;
    let out = fx.ocusers(&format!(
        "exec alice -- sh -c 'kill -STOP {pid} && echo stopped'"
    ));
    ensure(stdout(&out).contains("stopped"), || {
        format!("alice could not stop her gateway: {}", describe(&out))
    })?;
    let state = fx.sh(&format!(
        "systemctl is-active openclaw@alice; awk '{{print $3}}' /proc/{pid}/stat"
    ))?;
    let alice_port = fx.port("alice")?;
    ensure(
        state == "active\nT\n" && fx.readyz(alice_port)? != "200",
        || format!("alice's gateway is not stopped mid-start: {state:?}"),
    )?;

    let t = Instant::now();
    let restart = fx.sh("systemctl restart openclaw@bob-smith");
    let gate = t.elapsed();
    let said = fx.sh(&format!(
        "journalctl --since '{since}' -o cat -u openclaw@bob-smith | grep '^start gate: bob-smith' || true"
    ))?;
    // alice lets her gateway go on, whatever happened above.
    let cont = fx.ocusers(&format!("exec alice -- kill -CONT {pid}"));
    restart?;
    ensure(cont.status.success(), || {
        format!("alice could not continue her gateway: {}", describe(&cont))
    })?;
    fx.figure(
        "restart of bob-smith while alice's start is held (SIGSTOP) by alice",
        format!(
            "{:.1} s through the gate and exec; gate: {}",
            gate.as_secs_f64(),
            if said.trim().is_empty() {
                "went at once"
            } else {
                said.trim()
            }
        ),
    );
    ensure(gate < Duration::from_secs(15), || {
        format!(
            "bob-smith's restart took {:.1} s while alice held her start: {said}",
            gate.as_secs_f64()
        )
    })?;
    wait_ready(fx, "bob-smith", Duration::from_secs(300))?;
    wait_ready(fx, "alice", Duration::from_secs(300))?;
    let now = sentinel(fx)?;
    ensure(now == sent, || {
        format!("the sentinel changed:\n{sent}\n---\n{now}")
    })
}

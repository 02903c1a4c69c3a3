//! `bench/run vm`: `status --json` at 200 tenants on cgroup v2, the one
//! place these machines have it: the VM tier's qemu guest (Debian 13,
//! systemd 257, kernel 6.12; tests/vm/guest.rs). The nspawn containers of
//! the main bench have no cgroup v2 controllers, so there `status` can only
//! read every figure over D-Bus.
//!
//! The guest runs under TCG (no hardware virtualisation here), so its
//! absolute times are an emulator's. What it does measure is the ratio
//! between the two ways `status` reads the same 200 running units on the
//! same guest, call after call in turn:
//! - from their cgroup v2 files, as it does on such a host;
//! - over D-Bus only, forced by an empty tmpfs over
//!   /sys/fs/cgroup/openclaw.slice in a mount namespace of its own (what
//!   `status` does on a host without cgroup v2).
//!
//! Both calls go through `nsenter` into a mount namespace (the D-Bus one
//! into its own, the cgroup one into PID 1's), so both pay the same exec.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::guest::{self, Vm};
use crate::{BENCH_BIN, REPS, fmt, median, stub_runtime};

const TENANTS: usize = 200;
const STUB_VERSION: &str = "0.0.0-stub";
/// Limits the stub gateways (a few MB each) never reach; 200 of them fit
/// under the capacity guard's raised ratio.
const TIER: &str = "description = \"bench: stub gateways\"
memory_high = \"300M\"
memory_max = \"320M\"
cpu_quota = \"20%\"
tasks_max = 64
v8_heap_mb = 256
";

pub fn run(deb: PathBuf) -> Result<(), String> {
    let image = guest::ensure_guest_image()?;
    let stub = stub_runtime::build_stub_gateway()?;
    let stub_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    stub_runtime::install_stub_runtime(stub_dir.path(), &stub, STUB_VERSION, true)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let vm = Vm::boot(
        &image,
        &[
            (deb, "ocusers.deb"),
            (stub_dir.path().to_path_buf(), "stubroot"),
            (me, "ocusers-bench"),
        ],
    )?;
    let sh = |script: &str, secs: u64| {
        vm.sh_timeout(
            &format!("set -eu\nexport PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n{script}"),
            Duration::from_secs(secs),
        )
        .stdout_of(script)
    };
    sh(
        &format!(
            "echo 'man-db man-db/auto-update boolean false' | debconf-set-selections
             dpkg -i /mnt/host/ocusers.deb >/dev/null
             cp -a /mnt/host/stubroot/var/lib/ocusers/runtimes/. /var/lib/ocusers/runtimes/
             chown -R root:root /var/lib/ocusers/runtimes
             install -m 0755 /mnt/host/ocusers-bench {BENCH_BIN}
             cat > /etc/ocusers/tiers/bench.toml <<'EOF'\n{TIER}EOF
             cat > /etc/ocusers/ocusers.toml <<'EOF'
[ports]
start = 10000
end = 60999

[tenants]
default_tier = \"bench\"

[capacity]
overcommit = 100
EOF"
        ),
        300,
    )?;
    // Filled by `ocusers apply --no-wait` in chunks (the same add plan per
    // tenant as `ocusers add`, in one process: under TCG a process start
    // costs seconds), timed at each checkpoint, so a slow emulator still
    // leaves figures for the smaller counts.
    let mut have = 0;
    let mut lines = vec![
        "ocusers many-tenants bench, VM part: status on cgroup v2".to_string(),
        "gateway: STUB (examples/stub_gateway.rs, a loopback /readyz listener), not OpenClaw"
            .into(),
        "host: qemu guest under TCG (emulated CPU, 2 vCPUs, 2 GB; no hardware virtualisation here)"
            .into(),
        "      times are an emulator's: compare the two ways, not with the nspawn figures".into(),
    ];
    for n in CHECKPOINTS {
        while have < n {
            let next = (have + CHUNK).min(n);
            let t = Instant::now();
            sh(
                &format!(
                    "for i in $(seq 1 {next}); do printf '[tenants.t%04d]\\n' $i; done > /tmp/tenants.toml
                     ocusers apply /tmp/tenants.toml --no-wait >/tmp/apply.log 2>&1 || {{ tail -20 /tmp/apply.log; exit 1; }}
                     # apply leaves no daemon-reload pending (one reload at its end on systemd 257)
                     r=$(systemctl show -P NeedDaemonReload openclaw@t0001.service)
                     [ \"$r\" = no ] || {{ echo \"NeedDaemonReload=$r after apply\"; exit 1; }}"
                ),
                1800,
            )?;
            eprintln!(
                "[bench] guest: {have} -> {next} tenants by one apply in {:.0} s",
                t.elapsed().as_secs_f64()
            );
            have = next;
        }
        sh(
            &format!(
                "for _ in $(seq 900); do
                     n=$(systemctl list-units --no-legend --state=running 'openclaw@*' | wc -l)
                     [ \"$n\" -ge {n} ] && exit 0
                     sleep 1
                 done
                 echo \"only $n of {n} gateways running\"; exit 1"
            ),
            1000,
        )?;
        let last = n == CHECKPOINTS[CHECKPOINTS.len() - 1];
        let out = sh(
            &measure_script(if last { REPS * 2 } else { 10 }, last),
            3600,
        )?;
        let figures = report(n, &out, last)?;
        eprintln!("{}", figures.join("\n"));
        lines.extend(figures);
    }
    println!("\n{}", lines.join("\n"));
    Ok(())
}

/// Tenant counts at which `status` is timed.
const CHECKPOINTS: [usize; 3] = [50, 100, TENANTS];
/// Tenants one `apply` adds.
const CHUNK: usize = 25;

/// The guest script that times `status` both ways in turn, `runs` times
/// each (and `list` and `metrics` from the cgroup files when `all`). The
/// D-Bus-only mount namespace is held by a sleeper.
fn measure_script(runs: usize, all: bool) -> String {
    let extra = if all {
        format!(
            "for i in $(seq {REPS}); do one list-cgroup cg list; one metrics-cgroup cg metrics; done"
        )
    } else {
        String::new()
    };
    format!(
        "unshare -m --propagation private bash -c 'mount -t tmpfs none /sys/fs/cgroup/openclaw.slice && exec sleep infinity' &
         sleeper=$!
         trap 'kill $sleeper' EXIT
         sleep 2
         cg() {{ nsenter -t 1 -m \"$@\"; }}
         bus() {{ nsenter -t $sleeper -m \"$@\"; }}
         way() {{ OCUSERS_LOG=ocusers=debug \"$1\" ocusers status --json 2>&1 >/dev/null | grep -o '[0-9]* of [0-9]* units read from their cgroup'; }}
         echo \"path cgroup $(way cg)\"
         echo \"path dbus $(way bus)\"
         t() {{ awk '{{print $14+$15}}' /proc/$1/stat; }}
         d=$(pgrep -xo dbus-daemon || pgrep -xo dbus-broker)
         one() {{
             local s1 d1 s2 d2 m
             s1=$(t 1); d1=$(t $d)
             m=$(\"$2\" {BENCH_BIN} measure -- ocusers $3) || exit 1
             s2=$(t 1); d2=$(t $d)
             echo \"$1 $m $(( (s2-s1)*10 )) $(( (d2-d1)*10 ))\"
         }}
         cg ocusers status --json >/dev/null; bus ocusers status --json >/dev/null
         for i in $(seq {runs}); do
             one status-cgroup cg 'status --json'
             one status-dbus bus 'status --json'
         done
         {extra}
         echo \"load $(cut -d' ' -f1-3 /proc/loadavg)\"
         echo \"systemd $(systemctl --version | head -1)\"
         echo \"kernel $(uname -r)\"
         echo \"gateways $(ps -eo rss=,comm= | awk '$2 == \"node\" {{n++; kb+=$1}} END {{printf \"%d %d\", n, kb}}')\""
    )
}

/// One checkpoint's lines of the report from the guest's output: per label
/// the wall times, and the median CPU of ocusers, systemd (PID 1) and the bus.
fn report(n: usize, out: &str, all: bool) -> Result<Vec<String>, String> {
    let mut rows: std::collections::BTreeMap<&str, Vec<[f64; 4]>> = Default::default();
    let mut info: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for line in out.lines() {
        let mut w = line.split_whitespace();
        let Some(key) = w.next() else { continue };
        let rest: Vec<&str> = w.collect();
        if key.contains('-') {
            // label wall_ms rss_kb cpu_ms systemd_ms bus_ms
            let v: Vec<f64> = rest
                .iter()
                .map(|x| x.parse().map_err(|_| format!("bad line {line:?}")))
                .collect::<Result<_, _>>()?;
            if v.len() != 5 {
                return Err(format!("bad line {line:?}"));
            }
            rows.entry(key).or_default().push([v[0], v[2], v[3], v[4]]);
        } else {
            info.entry(key).or_default().push(rest.join(" "));
        }
    }
    let get = |k: &str, i: usize| {
        info.get(k)
            .and_then(|v| v.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let figure = |label: &str| -> Result<(String, f64), String> {
        let r = rows
            .get(label)
            .ok_or_else(|| format!("no {label} rows in:\n{out}"))?;
        let col = |i: usize| median(&r.iter().map(|x| x[i]).collect::<Vec<_>>());
        let wall: Vec<f64> = r.iter().map(|x| x[0]).collect();
        Ok((
            format!(
                "{}\n      CPU per call (median): ocusers {:.0} ms, systemd {:.0} ms, bus {:.0} ms",
                fmt(&wall),
                col(1),
                col(2),
                col(3)
            ),
            median(&wall),
        ))
    };
    let (cg, cg_ms) = figure("status-cgroup")?;
    let (bus, bus_ms) = figure("status-dbus")?;
    let gw = get("gateways", 0);
    let mut gw = gw.split_whitespace();
    let mut lines = vec![
        format!(
            "(e) status --json, {n} tenants ({}, kernel {}; {} gateways, {} KiB RSS), the two ways in turn",
            get("systemd", 0),
            get("kernel", 0),
            gw.next().unwrap_or_default(),
            gw.next().unwrap_or_default()
        ),
        format!("  from cgroup v2 files  : {cg}"),
        format!("      read: {}", get("path", 0)),
        format!("  over D-Bus only       : {bus}"),
        format!(
            "      read: {} (empty tmpfs over /sys/fs/cgroup/openclaw.slice)",
            get("path", 1)
        ),
        format!(
            "  cgroup way / D-Bus way: {:.2} (wall, medians); 1/5/15-min load in the guest after: {}",
            cg_ms / bus_ms,
            get("load", 0)
        ),
    ];
    if all {
        lines.push(format!(
            "  list,    from cgroup  : {}",
            figure("list-cgroup")?.0
        ));
        lines.push(format!(
            "  metrics, from cgroup  : {}",
            figure("metrics-cgroup")?.0
        ));
    }
    Ok(lines)
}

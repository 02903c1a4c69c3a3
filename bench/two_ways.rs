//! `status` timed two ways in turn on the same host and the same running
//! units: from the units' cgroup v2 files and over D-Bus only. One way runs
//! in PID 1's mount namespace, the other in a private one (held by a
//! sleeper) whose `/sys/fs/cgroup` was changed by a setup script; both go
//! through `nsenter`, so both pay the same exec. Used by the VM part (e),
//! where the private namespace hides the cgroup files, and by the nspawn
//! part (f), where it lays them out.
use crate::{BENCH_BIN, REPS, fmt, median};

/// Shell that defines `measured CMD...`: runs CMD (the bench binary's
/// `measure`, which prints `wall_ms rss_kb cpu_ms`) and adds the CPU that
/// systemd (PID 1) and the bus daemon spent meanwhile, in ms from /proc (10 ms
/// ticks). Exits the shell if CMD fails.
pub const MEASURED_SH: &str = r#"t() { awk '{print $14+$15}' /proc/$1/stat; }
d=$(pgrep -xo dbus-daemon || pgrep -xo dbus-broker)
measured() {
    local s1 d1 s2 d2 m
    s1=$(t 1); d1=$(t $d)
    m=$("$@") || exit 1
    s2=$(t 1); d2=$(t $d)
    echo "$m $(( (s2-s1)*10 )) $(( (d2-d1)*10 ))"
}"#;

/// How the two ways are set up on one host.
pub struct Ways {
    /// "(e)" or "(f)".
    pub section: &'static str,
    /// Shell run in the private mount namespace before its sleeper waits.
    pub setup: String,
    /// True if the private namespace is the cgroup way (else the D-Bus way).
    pub private_is_cgroup: bool,
    /// Said after each way's "read:" line: how that way was made.
    pub cgroup_note: &'static str,
    pub dbus_note: &'static str,
}

/// The script that times `status` both ways in turn, `runs` times each (and
/// `list` and `metrics` the cgroup way when `all`).
pub fn script(ways: &Ways, runs: usize, all: bool) -> String {
    let extra = if all {
        format!(
            "for i in $(seq {REPS}); do one list-cgroup cg list; one metrics-cgroup cg metrics; done"
        )
    } else {
        String::new()
    };
    let (cg, bus) = if ways.private_is_cgroup {
        ("$sleeper", "1")
    } else {
        ("1", "$sleeper")
    };
    format!(
        "cat > /run/ocusers-bench-ns.sh <<'SETUP'\n{setup}\nSETUP
         rm -f /run/ocusers-bench-ns.ready
         unshare -m --propagation private bash -c 'bash -e /run/ocusers-bench-ns.sh && touch /run/ocusers-bench-ns.ready && exec sleep infinity' &
         sleeper=$!
         trap 'kill $sleeper' EXIT
         for _ in $(seq 600); do
             [ -e /run/ocusers-bench-ns.ready ] && break
             kill -0 $sleeper 2>/dev/null || {{ echo 'the namespace setup failed'; exit 1; }}
             sleep 0.5
         done
         [ -e /run/ocusers-bench-ns.ready ] || {{ echo 'the namespace setup took over 5 minutes'; exit 1; }}
         cg() {{ nsenter -t {cg} -m \"$@\"; }}
         bus() {{ nsenter -t {bus} -m \"$@\"; }}
         way() {{ OCUSERS_LOG=ocusers=debug \"$1\" ocusers status --json 2>&1 >/dev/null | grep -o '[0-9]* of [0-9]* units read from their cgroup'; }}
         echo \"path cgroup $(way cg)\"
         echo \"path dbus $(way bus)\"
         {MEASURED_SH}
         one() {{
             local m
             m=$(measured \"$2\" {BENCH_BIN} measure -- ocusers $3) || exit 1
             echo \"$1 $m\"
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
         echo \"gateways $(ps -eo rss=,comm= | awk '$2 == \"node\" {{n++; kb+=$1}} END {{printf \"%d %d\", n, kb}}')\"",
        setup = ways.setup
    )
}

/// One checkpoint's lines of the report from the guest's output: per label
/// the wall times, and the median CPU of ocusers, systemd (PID 1) and the bus.
pub fn report(ways: &Ways, n: usize, out: &str, all: bool) -> Result<Vec<String>, String> {
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
            "{} status --json, {n} tenants ({}, kernel {}; {} gateways, {} KiB RSS), the two ways in turn",
            ways.section,
            get("systemd", 0),
            get("kernel", 0),
            gw.next().unwrap_or_default(),
            gw.next().unwrap_or_default()
        ),
        format!("  from cgroup v2 files  : {cg}"),
        format!("      read: {}{}", get("path", 0), ways.cgroup_note),
        format!("  over D-Bus only       : {bus}"),
        format!("      read: {}{}", get("path", 1), ways.dbus_note),
        format!(
            "  cgroup way / D-Bus way: {:.2} (wall, medians); 1/5/15-min load after: {}",
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

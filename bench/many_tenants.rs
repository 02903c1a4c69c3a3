//! Many tenants on one host, measured side by side in one run (issue #6):
//!
//! (a) `ocusers add` with and without waiting for readiness, at 1 and at 100
//!     existing tenants;
//! (b) `ocusers status --json` (and `list`, `metrics`) at 10, 100 and 200 tenants;
//! (c) memory ocusers itself keeps on the host besides the gateways;
//! (d) the D-Bus part of `status` at 200 tenants, with and without a
//!     cgroup v2 host's files (this machine's containers have none);
//! (e) with `vm` (bench/vm.rs): `status` at 200 tenants on cgroup v2, in
//!     the VM tier's qemu guest, from the cgroup files and over D-Bus only;
//! (f) `status` at 200 tenants end to end the cgroup way in the container,
//!     its cgroup v2 files stood in for by tmpfs (bench/two_ways.rs).
//!
//! Runs in a fresh Debian 12 systemd-nspawn container (real systemd, D-Bus,
//! useradd; the tests' harness, tests/support/nspawn.rs) with its
//! own network namespace, the .deb installed with apt, and the STUB gateway
//! (examples/stub_gateway.rs: a loopback listener answering /readyz, a few MB)
//! in place of OpenClaw, so 200 tenants fit on a small machine.
//!
//! Run as root: `bench/run` (or `cargo bench --bench many_tenants`).
//! Not run by CI. Inside the container this same binary is the timer
//! (`measure`): it runs a command, times it and reads its peak RSS with
//! wait4(), so no shell or nsenter start-up is counted.
#[path = "../tests/support/mod.rs"]
mod support;
mod two_ways;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::nspawn::Container;
use support::{rootfs, stub_runtime};

/// Runs per `add` figure; a read figure takes twice as many. Five were too
/// few: on a loaded machine two runs of the same code put add's growth from
/// 1 to 100 tenants at +41 % and -11 %.
const REPS: usize = 15;
const BENCH_BIN: &str = "/usr/local/bin/ocusers-bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("measure") {
        measure(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("dbus-reads") {
        dbus_reads(args.get(2).map(String::as_str).unwrap_or("all"));
        return;
    }
    // `cargo bench` passes --bench; `vm` (bench/run vm) asks for the VM part.
    let result = if args.iter().any(|a| a == "vm") {
        deb().and_then(vm::run)
    } else {
        run()
    };
    if let Err(e) = result {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

/// Inside the container: `measure -- CMD ARGS...` runs CMD once and prints
/// `wall_ms maxrss_kb cpu_ms`; fails if CMD fails.
fn measure(args: &[String]) {
    let cmd: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    let t = Instant::now();
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run the measured command");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    // SAFETY: getrusage fills the struct we pass; RUSAGE_CHILDREN covers
    // the one child this process has waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let cpu_ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    println!(
        "{ms:.2} {} {:.1}",
        usage.ru_maxrss,
        cpu_ms(usage.ru_utime) + cpu_ms(usage.ru_stime)
    );
}

/// Inside the container: the D-Bus part of `status` for every tenant, as
/// `ocusers` does it (one `ListUnitsByNames`, then property `Get`s pipelined
/// up to 96 pending replies): all 13 properties a unit, or with `cgroup` only
/// the 4 that a cgroup v2 host's files do not give. This host's containers
/// have no cgroup v2 controllers, so `status` itself can only take the first
/// way here; this shows what the second costs on the same systemd and bus.
/// `getall` asks each unit for all its Unit and Service properties in two
/// calls instead, the road `ocusers` did not take (see (d) in the report).
fn dbus_reads(way: &str) {
    use futures_util::StreamExt;
    use ocusers::systemd::{RUNNING_SERVICE_PROPS, SERVICE_PROPS, UNIT_PROPS};
    use zbus::names::InterfaceName;
    const UNIT: &str = "org.freedesktop.systemd1.Unit";
    const SERVICE: &str = "org.freedesktop.systemd1.Service";
    let (cgroup, getall) = (way == "cgroup", way == "getall");
    // The very lists `ocusers` reads (its states come from ListUnitsByNames).
    let service = if cgroup {
        RUNNING_SERVICE_PROPS
    } else {
        SERVICE_PROPS
    };
    let props: Vec<(&str, &str)> = UNIT_PROPS
        .iter()
        .map(|p| (UNIT, *p))
        .chain(service.iter().map(|p| (SERVICE, *p)))
        .collect();
    let units: Vec<String> = std::fs::read_dir("/var/lib/ocusers/tenants")
        .expect("the registry")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(format!("openclaw@{}.service", name.strip_suffix(".toml")?))
        })
        .collect();
    let read = zbus::block_on(async {
        let conn = zbus::Connection::system().await?;
        let mgr = zbus_systemd::systemd1::ManagerProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let paths: Vec<zbus::OwnedObjectPath> = mgr
            .list_units_by_names(units)
            .await?
            .into_iter()
            .map(|u| u.6)
            .collect();
        let (conn, props) = (&conn, &props);
        let reads = paths.into_iter().map(|path| async move {
            let p = zbus::fdo::PropertiesProxy::builder(conn)
                .destination("org.freedesktop.systemd1")
                .path(path)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            if getall {
                let (u, s) = futures_util::future::try_join(
                    p.get_all(InterfaceName::from_static_str_unchecked(UNIT)),
                    p.get_all(InterfaceName::from_static_str_unchecked(SERVICE)),
                )
                .await?;
                assert!(u.len() + s.len() > 13);
                return zbus::Result::Ok(());
            }
            let gets = props.iter().map(|(iface, name)| {
                let p = &p;
                async move {
                    p.get(InterfaceName::from_static_str_unchecked(iface), name)
                        .await
                }
            });
            futures_util::future::try_join_all(gets).await?;
            zbus::Result::Ok(())
        });
        let done: Vec<_> = futures_util::stream::iter(reads)
            .buffered(ocusers::systemd::MAX_PENDING_READS / if getall { 2 } else { props.len() })
            .collect()
            .await;
        done.into_iter().collect::<zbus::Result<Vec<()>>>()
    });
    if let Err(e) = read {
        eprintln!("dbus-reads: {e}");
        std::process::exit(1);
    }
}

struct Measured {
    wall: f64,
    rss: u64,
    cpu: f64,
    systemd: f64,
    dbus: f64,
    load: f64,
}

struct Bench {
    c: Container,
    tenants: usize,
}

impl Bench {
    fn sh(&self, script: &str) -> Result<String, String> {
        self.c.sh_ok(script)
    }

    /// One measured command inside: (milliseconds, peak RSS in KiB).
    fn once(&self, cmd: &str) -> Result<(f64, u64), String> {
        self.once_cpu(cmd).map(|m| (m.wall, m.rss))
    }

    /// One measured command with the CPU time it cost: its own, systemd's
    /// (PID 1) and dbus-daemon's, from /proc (10 ms ticks). On a busy
    /// machine the wall time says more about the load than about ocusers.
    fn once_cpu(&self, cmd: &str) -> Result<Measured, String> {
        let out = self.sh(&format!(
            "{}\nm=$(measured {BENCH_BIN} measure -- {cmd}) || exit 1\n\
             echo \"$m $(cut -d' ' -f1 /proc/loadavg)\"",
            two_ways::MEASURED_SH
        ))?;
        let v: Vec<f64> = out
            .split_whitespace()
            .map(|x| x.parse().map_err(|_| out.clone()))
            .collect::<Result<_, _>>()?;
        if v.len() != 6 {
            return Err(format!("measure printed {out:?}"));
        }
        Ok(Measured {
            wall: v[0],
            rss: v[1] as u64,
            cpu: v[2],
            systemd: v[3],
            dbus: v[4],
            load: v[5],
        })
    }

    /// Add stub tenants t0001.. until there are `n` (not measured).
    fn fill_to(&mut self, n: usize) -> Result<(), String> {
        if n <= self.tenants {
            return Ok(());
        }
        let t = Instant::now();
        self.sh(&format!(
            "for i in $(seq {} {n}); do ocusers add $(printf t%04d $i) --no-wait >/dev/null || exit 1; done",
            self.tenants + 1
        ))?;
        eprintln!(
            "[bench] filled {} -> {n} tenants in {:.1} s",
            self.tenants,
            t.elapsed().as_secs_f64()
        );
        self.tenants = n;
        Ok(())
    }

    /// `ocusers add x` REPS times with `tenants` existing, each removed
    /// again (not measured) so the count stays put.
    fn add_times(&self, flags: &str) -> Result<Vec<f64>, String> {
        Ok(self.add_cpu(flags)?.0)
    }

    /// Wall times and the CPU time of `ocusers add` itself (its children,
    /// useradd, included), which does not depend on the machine's load.
    /// Wall times of `add`, and the CPU it cost: its own (with useradd),
    /// and systemd's (PID 1) while it ran.
    fn add_cpu(&self, flags: &str) -> Result<(Vec<f64>, AddCpu), String> {
        let (mut wall, mut cpu) = (Vec::new(), AddCpu::default());
        for _ in 0..REPS {
            let m = self.once_cpu(&format!("ocusers add bench-x {flags}"))?;
            wall.push(m.wall);
            cpu.ocusers.push(m.cpu);
            cpu.systemd.push(m.systemd);
            self.sh("ocusers remove bench-x --purge >/dev/null")?;
        }
        Ok((wall, cpu))
    }

    fn read_times(&self, cmd: &str) -> Result<(Vec<f64>, u64), String> {
        let (v, rss, _) = self.read_cpu(cmd)?;
        Ok((v, rss))
    }

    /// Wall times, peak RSS and the median CPU split of a read command.
    fn read_cpu(&self, cmd: &str) -> Result<(Vec<f64>, u64, String), String> {
        self.once(cmd)?; // warm the page cache once
        let mut all = Vec::new();
        for _ in 0..REPS * 2 {
            all.push(self.once_cpu(cmd)?);
        }
        let col = |f: fn(&Measured) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        let split = format!(
            "CPU per call (median): ocusers {:.0} ms, systemd {:.0} ms, dbus-daemon {:.0} ms; 1-min load {:.1}",
            col(|m| m.cpu),
            col(|m| m.systemd),
            col(|m| m.dbus),
            col(|m| m.load)
        );
        Ok((
            all.iter().map(|m| m.wall).collect(),
            all.iter().map(|m| m.rss).max().unwrap_or(0),
            split,
        ))
    }
}

#[derive(Default)]
struct AddCpu {
    ocusers: Vec<f64>,
    systemd: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn fmt(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    format!(
        "median {:>7.1} ms  (min {:.1}, max {:.1}, n={})",
        median(v),
        s[0],
        s[s.len() - 1],
        v.len()
    )
}

/// `OCUSERS_BENCH_DEB`, else the tree's .deb (built once, shared with the test tiers).
fn deb() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("OCUSERS_BENCH_DEB") {
        return Ok(PathBuf::from(p));
    }
    support::deb::build()
}

fn run() -> Result<(), String> {
    let deb = deb()?;
    let stub = stub_runtime::build_stub_gateway()?;
    let base = rootfs::ensure_base_root()?;
    let dir = deb.parent().ok_or("deb has no parent")?.to_path_buf();
    let c = Container::boot_with(&base, &[(dir, "/mnt/deb".into(), true)], true)?;
    c.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /mnt/deb/ocusers_*.deb >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }")?;
    stub_runtime::install_stub_runtime(c.root(), &stub, "0.0.0-stub", true)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let inside = c.root().join(BENCH_BIN.trim_start_matches('/'));
    std::fs::copy(&me, &inside).map_err(|e| format!("copy bench binary: {e}"))?;
    // 200 blocks of 128 ports need a larger pool than the default (99
    // tenants); the container's own network namespace has room. Stub
    // gateways use a few MB, so the capacity guard's ratio is raised here.
    write(
        c.root(),
        "etc/ocusers/ocusers.toml",
        "[ports]\nstart = 10000\nend = 60999\n\n[tenants]\ndefault_tier = \"light\"\n\n[capacity]\novercommit = 100\n",
    )?;
    let mut b = Bench { c, tenants: 0 };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut report = vec![
        "ocusers many-tenants bench".to_string(),
        "gateway: STUB (examples/stub_gateway.rs, a loopback /readyz listener), not OpenClaw"
            .into(),
        format!(
            "host: systemd-nspawn Debian 12 container, private network; {cpus} CPUs on the host; {REPS} adds / {} reads per figure",
            REPS * 2
        ),
        String::new(),
    ];

    if let Ok(n) = std::env::var("OCUSERS_BENCH_PAUSE_AT") {
        // For looking inside by hand: fill, then wait until the file goes.
        b.fill_to(
            n.parse()
                .map_err(|e| format!("OCUSERS_BENCH_PAUSE_AT: {e}"))?,
        )?;
        let flag = Path::new("/tmp/ocusers-bench-paused");
        std::fs::write(flag, b.c.leader_pid().to_string()).map_err(|e| e.to_string())?;
        eprintln!(
            "[bench] paused: nsenter -t {} -a bash; rm {} to go on",
            b.c.leader_pid(),
            flag.display()
        );
        while flag.exists() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    b.fill_to(1)?;
    let (add1_nowait, add1_cpu) = b.add_cpu("--no-wait")?;
    let add1_wait = b.add_times("")?;
    b.fill_to(10)?;
    let (st10, _, cpu10) = b.read_cpu("ocusers status --json")?;
    b.fill_to(100)?;
    let (add100_nowait, add100_cpu) = b.add_cpu("--no-wait")?;
    let add100_wait = b.add_times("")?;
    let (st100, _, cpu100) = b.read_cpu("ocusers status --json")?;
    b.fill_to(200)?;
    let (st200, rss200, cpu200) = b.read_cpu("ocusers status --json")?;
    // Which way status read the units: a cgroup v2 host's files, or D-Bus.
    let layout = b.sh("stat -fc %T /sys/fs/cgroup")?;
    let path200 = b.sh(
        "OCUSERS_LOG=ocusers=debug ocusers status --json 2>&1 >/dev/null | grep -o '[0-9]* of [0-9]* units read from their cgroup'",
    )?;
    // (d) The D-Bus part alone, both ways, by this binary (see dbus_reads).
    let (dbus13, _, dbus13_cpu) = b.read_cpu(&format!("{BENCH_BIN} dbus-reads all"))?;
    let (dbus4, _, dbus4_cpu) = b.read_cpu(&format!("{BENCH_BIN} dbus-reads cgroup"))?;
    let (getall, _, getall_cpu) = b.read_cpu(&format!("{BENCH_BIN} dbus-reads getall"))?;
    let (list200, _) = b.read_times("ocusers list")?;
    let (metrics200, _) = b.read_times("ocusers metrics")?;
    let (add200_nowait, _) = (b.add_times("--no-wait")?, ());

    let growth = (median(&add100_nowait) / median(&add1_nowait) - 1.0) * 100.0;
    report.push("(a) ocusers add".into());
    report.push(format!(
        "  at   1 tenant,  --no-wait : {}",
        fmt(&add1_nowait)
    ));
    report.push(format!("  at   1 tenant,  to ready  : {}", fmt(&add1_wait)));
    report.push(format!(
        "  at 100 tenants, --no-wait : {}",
        fmt(&add100_nowait)
    ));
    report.push(format!(
        "  at 100 tenants, to ready  : {}",
        fmt(&add100_wait)
    ));
    report.push(format!(
        "  at 200 tenants, --no-wait : {}",
        fmt(&add200_nowait)
    ));
    report.push(format!(
        "  growth of add --no-wait from 1 to 100 tenants: {growth:+.1}% wall (target: at most +20%)"
    ));
    report.push(format!(
        "  CPU of add --no-wait itself (with useradd): median {:.0} ms at 1, {:.0} ms at 100 tenants ({:+.1}%)",
        median(&add1_cpu.ocusers),
        median(&add100_cpu.ocusers),
        (median(&add100_cpu.ocusers) / median(&add1_cpu.ocusers) - 1.0) * 100.0
    ));
    report.push(format!(
        "  CPU of systemd (PID 1) during add --no-wait: median {:.0} ms at 1, {:.0} ms at 100 tenants",
        median(&add1_cpu.systemd),
        median(&add100_cpu.systemd),
    ));
    report.push("(b) read commands".into());
    report.push(format!("  status --json,  10 tenants: {}", fmt(&st10)));
    report.push(format!("      {cpu10}"));
    report.push(format!("  status --json, 100 tenants: {}", fmt(&st100)));
    report.push(format!("      {cpu100}"));
    report.push(format!(
        "  status --json, 200 tenants: {}  (target: under 100 ms)",
        fmt(&st200)
    ));
    report.push(format!("      {cpu200}"));
    report.push(format!(
        "      read: {} (container's /sys/fs/cgroup: {}); without cgroup v2 controllers every figure comes over D-Bus",
        path200.trim(),
        layout.trim()
    ));
    report.push(format!("  list,          200 tenants: {}", fmt(&list200)));
    report.push(format!(
        "  metrics,       200 tenants: {}",
        fmt(&metrics200)
    ));

    // (c) What ocusers keeps on the host: no process of its own between
    // commands, no unit of its own running (the metrics timer is off by
    // default); the peak RSS of one status call at 200 tenants for scale.
    let resident = b.sh(
        "ps -eo rss=,comm= | awk '$2 ~ /^ocusers/ {n++; kb+=$1} END {printf \"%d %d\", n, kb}'",
    )?;
    let units = b.sh(
        "systemctl list-units --no-legend --plain 'ocusers*' | awk '{print $1}' | paste -sd' '",
    )?;
    let gateways = b.sh(
        "ps -eo rss=,comm= | awk '$2 == \"node\" {n++; kb+=$1} END {printf \"%d %d\", n, kb}'",
    )?;
    let mut r = resident.split_whitespace();
    let (n, kb) = (r.next().unwrap_or("?"), r.next().unwrap_or("?"));
    let mut g = gateways.split_whitespace();
    report.push("(c) memory of ocusers itself, besides the gateways".into());
    report.push(format!(
        "  resident ocusers processes with 200 tenants running: {n} ({kb} KiB RSS); running ocusers units: [{}]",
        units.trim()
    ));
    report.push(format!(
        "  for scale: peak RSS of one `ocusers status --json` at 200 tenants {rss200} KiB (exits when done); the 200 stub gateways: {} processes, {} KiB RSS",
        g.next().unwrap_or("?"),
        g.next().unwrap_or("?")
    ));
    report.push(
        "(d) status's D-Bus part alone at 200 tenants (ListUnitsByNames + pipelined Gets)".into(),
    );
    report.push(format!(
        "  13 reads a unit (no cgroup v2 files)  : {}",
        fmt(&dbus13)
    ));
    report.push(format!("      {dbus13_cpu}"));
    report.push(format!(
        "   4 reads a unit (running, cgroup v2)  : {}",
        fmt(&dbus4)
    ));
    report.push(format!("      {dbus4_cpu}"));
    report.push(format!(
        "   2 GetAll a unit (Unit + Service)    : {}",
        fmt(&getall)
    ));
    report.push(format!("      {getall_cpu}"));

    // (f) `status` the cgroup way, end to end, on this container's systemd,
    // bus and gateways: only the kernel's cgroup files are stood in for.
    let ways = two_ways::Ways {
        section: "(f)",
        setup: CGROUP_FILES_ON_TMPFS.into(),
        private_is_cgroup: true,
        cgroup_note: " (files laid out on tmpfs from systemd's limits and the gateways' /proc)",
        dbus_note: " (the container's own /sys/fs/cgroup: no cgroup v2 controllers)",
    };
    let out = b.sh(&two_ways::script(&ways, REPS * 2, true))?;
    report.push(
        "(f) status at 200 tenants the cgroup way, end to end in this container: real systemd, bus and probes; the cgroup v2 files stood in for by tmpfs".into(),
    );
    report.extend(two_ways::report(&ways, 200, &out, true)?);

    println!("\n{}", report.join("\n"));
    b.sh("ocusers list >/dev/null")?;
    drop(b);
    Ok(())
}

/// For (f): what a cgroup v2 host's kernel shows each running tenant unit,
/// laid out on a tmpfs over `/sys/fs/cgroup` (run in a private mount
/// namespace). This host's kernel binds memory, cpu and pids to cgroup v1,
/// so no container here has those files; `status` reads them the same way
/// from tmpfs, one read a file. The limits are systemd's (`systemctl show`),
/// the usage the gateway's own from /proc.
const CGROUP_FILES_ON_TMPFS: &str = r#"mount -t tmpfs none /sys/fs/cgroup
for f in /var/lib/ocusers/tenants/*.toml; do
    u="openclaw@$(basename "$f" .toml).service"
    d="/sys/fs/cgroup/openclaw.slice/$u"
    mkdir -p "$d"
    systemctl show -p MainPID -p MemoryHigh -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax "$u" |
    awk -F= -v d="$d" '
        function lim(v) { return v == "infinity" ? "max" : v }
        { p[$1] = $2 }
        END {
            print lim(p["MemoryHigh"]) > (d "/memory.high")
            print lim(p["MemoryMax"]) > (d "/memory.max")
            print lim(p["TasksMax"]) > (d "/pids.max")
            q = p["CPUQuotaPerSecUSec"]
            if (q == "infinity") print "max 100000" > (d "/cpu.max")
            else if (q ~ /^[0-9]+ms$/) printf "%d 100000\n", substr(q, 1, length(q) - 2) * 100 > (d "/cpu.max")
            else if (q ~ /^[0-9]+s$/) printf "%d 100000\n", substr(q, 1, length(q) - 1) * 100000 > (d "/cpu.max")
            else { print "CPUQuotaPerSecUSec " q " not understood" > "/dev/stderr"; exit 1 }
            print p["MainPID"] > (d "/main.pid")
        }'
    pid=$(cat "$d/main.pid")
    rm "$d/main.pid"
    [ "$pid" -gt 0 ]
    awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$pid/status" > "$d/memory.current"
    awk '/^Threads:/ {print $2}' "/proc/$pid/status" > "$d/pids.current"
    awk '{printf "usage_usec %d\nuser_usec %d\nsystem_usec %d\n", ($14 + $15) * 10000, $14 * 10000, $15 * 10000}' "/proc/$pid/stat" > "$d/cpu.stat"
done"#;

fn write(root: &Path, rel: &str, text: &str) -> Result<(), String> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
}

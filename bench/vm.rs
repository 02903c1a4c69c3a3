//! `bench/run vm`: `status --json` at 200 tenants on cgroup v2, the one
//! place these machines have it: the VM tier's qemu guest (Debian 13,
//! systemd 257, kernel 6.12; tests/support/vm/). The nspawn containers of
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

use crate::support::stub_runtime;
use crate::support::vm::guest::Vm;
use crate::support::vm::image::ensure_guest_image;
use crate::{BENCH_BIN, REPS, two_ways};

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
    let image = ensure_guest_image()?;
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
        let ways = two_ways::Ways {
            section: "(e)",
            setup: "mount -t tmpfs none /sys/fs/cgroup/openclaw.slice".into(),
            private_is_cgroup: false,
            cgroup_note: "",
            dbus_note: " (empty tmpfs over /sys/fs/cgroup/openclaw.slice)",
        };
        let out = sh(
            &two_ways::script(&ways, if last { REPS * 2 } else { 10 }, last),
            3600,
        )?;
        let figures = two_ways::report(&ways, n, &out, last)?;
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

//! System test tier: real systemd in systemd-nspawn containers (see container.rs). Needs root;
//! fails, never skips, when a prerequisite is missing.

mod container;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use container::{Container, ensure_base_root};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::test("container_smoke", || {
        container_smoke().map_err(Failed::from)
    })];
    libtest_mimic::run(&args, trials).exit();
}

/// Container boots, systemd is running, useradd works, npm can reach the registry.
fn container_smoke() -> Result<(), String> {
    let started = Instant::now();
    let base = ensure_base_root()?;
    let base_secs = started.elapsed().as_secs_f64();

    let shared = tempfile::Builder::new()
        .prefix("ocusers-smoke-")
        .tempdir_in("/var/tmp")
        .map_err(|e| e.to_string())?;
    std::fs::write(shared.path().join("hello"), "from the host\n").map_err(|e| e.to_string())?;
    let binds = [(PathBuf::from(shared.path()), "/mnt/host".to_string(), true)];

    let c = Container::boot(&base, &binds)?;

    // systemctl talks to the container's own systemd (the host has none).
    let facts = c.sh_ok(
        "cat /proc/1/comm; systemd-detect-virt --container; hostname; \
         systemctl show --property=Version --value; systemctl is-system-running",
    )?;
    let lines: Vec<&str> = facts.lines().collect();
    if lines.len() < 5
        || lines[0] != "systemd"
        || lines[1] != "systemd-nspawn"
        || lines[2] != c.name()
        || !matches!(lines[4], "running" | "degraded")
    {
        return Err(format!("unexpected container facts:\n{facts}"));
    }
    let leader_comm = std::fs::read_to_string(format!("/proc/{}/comm", c.leader_pid()))
        .map_err(|e| e.to_string())?;
    if leader_comm.trim() != "systemd" {
        return Err(format!("leader pid {} is {leader_comm:?}", c.leader_pid()));
    }

    // Binds: read-only host dir is visible and not writable.
    let seen =
        c.sh_ok("cat /mnt/host/hello; touch /mnt/host/x 2>/dev/null && echo WRITABLE || true")?;
    if seen != "from the host\n" {
        return Err(format!("read-only bind wrong: {seen:?}"));
    }

    // exec never hangs.
    let t = Instant::now();
    let out = c.exec(&["sleep", "60"], Duration::from_secs(1));
    if out.status.success() || t.elapsed() > Duration::from_secs(10) {
        return Err(format!(
            "timeout did not kill: {}",
            container::describe(&out)
        ));
    }

    // useradd and running as that user despite the nologin shell.
    c.sh_ok("useradd --system --create-home --home-dir /var/lib/octest --shell /usr/sbin/nologin octest")?;
    let who = c.sh_as_ok(
        "octest",
        "id -un; echo \"$HOME\"; pwd; test -r \"$NODE_EXTRA_CA_CERTS\" && echo ca",
    )?;
    if who != "octest\n/var/lib/octest\n/var/lib/octest\nca\n" {
        return Err(format!("sh_as gave {who:?}"));
    }
    let root_file = c.root().join("var/lib/octest");
    if !root_file.is_dir() {
        return Err(format!("{} not visible from the host", root_file.display()));
    }

    // npm from the pre-downloaded debs (no download allowed), then the registry over TLS.
    let t = Instant::now();
    c.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download npm >/dev/null")?;
    let install_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let version = c.sh_ok("timeout 120 npm view openclaw version")?;
    let npm_secs = t.elapsed().as_secs_f64();
    if !version
        .trim()
        .chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_digit())
    {
        return Err(format!("npm view openclaw version gave {version:?}"));
    }
    // and as an unprivileged user (NODE_EXTRA_CA_CERTS only, no .npmrc)
    c.sh_as_ok("octest", "timeout 120 npm view openclaw version >/dev/null")?;

    let timings = c.timings();
    let root = c.root().to_path_buf();
    let leader = c.leader_pid();
    let t = Instant::now();
    drop(c);
    let drop_secs = t.elapsed().as_secs_f64();
    if root.exists() {
        return Err(format!("{} left behind", root.display()));
    }
    if std::fs::read_to_string(format!("/proc/{leader}/comm")).is_ok_and(|c| c.trim() == "systemd")
    {
        return Err(format!("container systemd (pid {leader}) still running"));
    }
    eprintln!(
        "[smoke] base {base_secs:.1}s, copy {:.1}s, boot {:.1}s, apt install npm {install_secs:.1}s, \
         npm view {npm_secs:.1}s (openclaw {}), poweroff+cleanup {drop_secs:.1}s, total {:.1}s",
        timings.copy.as_secs_f64(),
        timings.boot.as_secs_f64(),
        version.trim(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

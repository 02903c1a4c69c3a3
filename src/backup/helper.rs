//! Running the tenant-side halves of a backup as the tenant: a transient
//! service started with `systemd-run --wait --pipe`, given the `[Service]`
//! sandbox of the installed template (`tenant_exec::sandbox_properties`:
//! `User=oc-NAME`, no capabilities, the state directory the only writable
//! path, `/usr` read-only, so `/usr/bin/ocusers` is there), minus the
//! tenant's `EnvironmentFile=` (the helper needs no secrets), with its own
//! private /tmp (not the gateway's: nothing of the tenant's can be waiting
//! in it) and `RuntimeMaxSec=` as the time bound on the whole run. Root
//! only reads or writes the pipe.
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::tenant::TenantName;

/// A helper run (pack or unpack) is stopped by systemd after this long.
pub const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Helper units of one ocusers process get distinct names.
static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Settings of the template the helper does not take.
const NOT_TAKEN: &[&str] = &["EnvironmentFile"];

/// The `systemd-run` command that runs `ocusers internal ARGS` as the tenant.
pub fn command(name: &TenantName, args: &[String]) -> Result<Command> {
    let paths = Paths::default();
    let template = std::fs::read_to_string(crate::tenant_exec::template_path(&paths))
        .context("reading the template unit openclaw@.service")?;
    let exe = std::env::current_exe().context("finding ocusers' own executable")?;
    let mut cmd = Command::new("systemd-run");
    cmd.args([
        "--quiet",
        "--wait",
        "--collect",
        "--service-type=exec",
        "--pipe",
    ])
    .arg(format!(
        "--unit=ocusers-{}-{name}-{}-{}",
        args.first().map(String::as_str).unwrap_or("helper"),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
    .arg(format!(
        "--description=ocusers {} as tenant {name}",
        args.join(" ")
    ))
    .arg(format!("--property=RuntimeMaxSec={}", TIMEOUT.as_secs()));
    for prop in crate::tenant_exec::sandbox_properties(&template, name) {
        let key = prop.split('=').next().unwrap_or_default();
        if !NOT_TAKEN.contains(&key) {
            cmd.arg(format!("--property={prop}"));
        }
    }
    cmd.arg("--").arg(exe).arg("internal").args(args);
    Ok(cmd)
}

/// A running helper; its stderr is collected (at most 64 KiB) for the
/// messages it prints, each shown with the tenant's name.
pub struct Running {
    pub child: Child,
    stderr: mpsc::Receiver<Vec<u8>>,
    name: String,
}

pub fn spawn(name: &TenantName, args: &[String], stdin: bool) -> Result<Running> {
    let mut cmd = command(name, args)?;
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if stdin { Stdio::null() } else { Stdio::piped() })
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running systemd-run for tenant {name}"))?;
    let mut err = child.stderr.take().context("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut err).take(64 << 10).read_to_end(&mut buf);
        // Drain the rest so the helper never blocks on a full pipe.
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        let _ = tx.send(buf);
    });
    Ok(Running {
        child,
        stderr: rx,
        name: name.to_string(),
    })
}

impl Running {
    /// Wait for the helper; print its lines; fail with its last line if it
    /// failed.
    pub fn finish(mut self, what: &str) -> Result<()> {
        let status = self.child.wait().context("waiting for systemd-run")?;
        let text = self
            .stderr
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        let lines: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(|l| {
                l.chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect()
            })
            .filter(|l: &String| !l.trim().is_empty())
            .collect();
        if status.success() {
            for l in &lines {
                eprintln!("{}: {l}", self.name);
            }
            return Ok(());
        }
        let last = lines
            .last()
            .map(|l| l.trim_start_matches("ocusers: ").to_string())
            .unwrap_or_else(|| format!("exit status {status}"));
        bail!("{what} as tenant {} failed: {last}", self.name)
    }
}

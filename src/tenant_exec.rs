//! Run a command as a tenant, the way its gateway runs: as `oc-NAME`, with
//! the tenant's environment file, in the same private /tmp as the gateway
//! (OpenClaw's lock files live there) and under the same sandbox.
//!
//! Mechanism: a transient service started with `systemd-run --wait`, given
//! every `[Service]` setting of the installed template unit
//! (`openclaw@.service`, `%i` replaced by the tenant) except the ones that
//! describe the gateway process itself (ExecStart=, Restart=, timeouts), plus
//! `JoinsNamespaceOf=openclaw@NAME.service`: systemd then hands the command
//! the gateway's own /tmp and /var/tmp (both units have `PrivateTmp=yes`).
//! The sandbox is therefore the template's by construction, not a copy kept
//! in step by hand, and the command runs in `openclaw.slice` like the
//! gateway. Secrets reach it through `EnvironmentFile=`, never argv.
//!
//! (The alternative, `nsenter` into the gateway's mount namespace, would
//! keep the filesystem view but not the seccomp filter, capability bounds,
//! cgroup or environment, and needs the gateway running.)
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::{Context, Result, bail};

use crate::paths::{self, Paths};
use crate::tenant::TenantName;

/// The template as the package ships it; used only when the installed file
/// cannot be read (tests in a temporary root).
const BUILTIN_TEMPLATE: &str = include_str!("../units/openclaw@.service");

/// `[Service]` settings that describe the gateway process, not its sandbox.
const NOT_CARRIED: &[&str] = &[
    "Type",
    "ExecStart",
    // The start gate (as root, `+`) is for the gateway's own starts only.
    "ExecStartPre",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "OOMPolicy",
    "KillMode",
];

/// Where the installed template lives.
pub fn template_path(paths: &Paths) -> PathBuf {
    paths
        .root()
        .join("usr/lib/systemd/system/openclaw@.service")
}

/// The template's `[Service]` settings for tenant `name`, as `Key=value`
/// property assignments for `systemd-run -p`.
pub fn sandbox_properties(template: &str, name: &TenantName) -> Vec<String> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in template.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if NOT_CARRIED.contains(&key.trim()) {
            continue;
        }
        out.push(format!(
            "{}={}",
            key.trim(),
            value.trim().replace("%i", name.as_str())
        ));
    }
    out
}

/// A `systemd-run` command that runs `argv` as the tenant. `pty` asks for a
/// terminal (interactive use); otherwise stdin, stdout and stderr are piped
/// through. The exit status is the command's.
/// `max_runtime`: systemd stops the transient unit after this long (none:
/// no bound beyond the caller's own).
pub fn command(
    paths: &Paths,
    name: &TenantName,
    argv: &[String],
    pty: bool,
    max_runtime: Option<std::time::Duration>,
) -> Result<Command> {
    if argv.is_empty() {
        bail!("nothing to run: give the command after `--`, like `-- openclaw doctor`");
    }
    let template = std::fs::read_to_string(template_path(paths))
        .unwrap_or_else(|_| BUILTIN_TEMPLATE.to_string());
    let gateway = paths::unit_name(name);
    let mut cmd = Command::new("systemd-run");
    cmd.args(["--quiet", "--wait", "--collect", "--service-type=exec"])
        .arg(if pty { "--pty" } else { "--pipe" })
        .arg(format!("--unit=ocusers-exec-{name}-{}", std::process::id()))
        .arg(format!("--description=ocusers exec as tenant {name}"))
        .arg(format!("--property=JoinsNamespaceOf={gateway}"));
    if let Some(max) = max_runtime {
        cmd.arg(format!("--property=RuntimeMaxSec={}", max.as_secs()));
    }
    for prop in sandbox_properties(&template, name) {
        cmd.arg(format!("--property={prop}"));
    }
    // The gateway runs with `--port $OCUSERS_PORT`; the tenant's CLI finds
    // it by OPENCLAW_GATEWAY_PORT before openclaw.json (which a restored
    // or hand-edited config may get wrong). The port is not a secret.
    if let Some(port) = gateway_port(paths, name) {
        cmd.arg(format!("--setenv=OPENCLAW_GATEWAY_PORT={port}"));
    }
    cmd.arg("--")
        .arg(resolve(paths, name, &argv[0]))
        .args(&argv[1..]);
    Ok(cmd)
}

/// systemd looks a bare program name up in its own PATH, not the unit's:
/// `openclaw` (and `node`) are the tenant's runtime's, as on the unit's PATH.
fn resolve(paths: &Paths, name: &TenantName, program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let rel = Path::new("node_modules/.bin").join(program);
    if paths.tenant_runtime_link(name).join(&rel).exists() {
        // The path as the unit sees it (the real root).
        return Paths::default()
            .tenant_runtime_link(name)
            .join(rel)
            .display()
            .to_string();
    }
    program.to_string()
}

/// The tenant's gateway port, from its environment file.
fn gateway_port(paths: &Paths, name: &TenantName) -> Option<u16> {
    let env = crate::secrets::EnvFile::load(&paths.secrets_file(name)).ok()??;
    env.get(crate::secrets::PORT_KEY)?.parse().ok()
}

pub fn check_tenant(paths: &Paths, name: &TenantName) -> Result<()> {
    if !paths.secrets_file(name).exists() {
        bail!(
            "tenant {name} has no environment file {}: see `ocusers doctor`",
            paths.secrets_file(name).display()
        );
    }
    Ok(())
}

/// Run `argv` as the tenant with the caller's stdin, stdout and stderr.
pub fn run(paths: &Paths, name: &TenantName, argv: &[String]) -> Result<ExitStatus> {
    check_tenant(paths, name)?;
    let pty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false)
        && nix::unistd::isatty(std::io::stdout()).unwrap_or(false);
    let mut cmd = command(paths, name, argv, pty, None)?;
    tracing::debug!(tenant = %name, ?argv, "exec as tenant");
    cmd.status()
        .with_context(|| format!("running systemd-run for tenant {name}"))
}

/// Run `argv` as the tenant and capture its output (stdin closed), e.g.
/// `openclaw security audit --json`.
pub fn output(paths: &Paths, name: &TenantName, argv: &[String]) -> Result<Output> {
    check_tenant(paths, name)?;
    let mut cmd = command(paths, name, argv, false, None)?;
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("running systemd-run for tenant {name}"))
}

/// Output [`run_bounded`] takes from the tenant's command.
const BOUNDED_OUTPUT: u64 = 256 * 1024;
/// systemd stops a [`run_bounded`] command after this long.
pub const BOUNDED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Run `argv` as the tenant with a time bound (systemd's, on the transient
/// unit), stdin closed, stderr dropped; (success, at most 256 KiB of
/// stdout). The output is the tenant's: callers take only well-formed
/// values from it.
pub fn run_bounded(paths: &Paths, name: &TenantName, argv: &[&str]) -> Result<(bool, Vec<u8>)> {
    use std::io::Read;
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    check_tenant(paths, name)?;
    let mut cmd = command(paths, name, &argv, false, Some(BOUNDED_TIMEOUT))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running systemd-run for tenant {name}"))?;
    let mut out = child.stdout.take().context("no stdout pipe")?;
    let mut buf = Vec::new();
    (&mut out)
        .take(BOUNDED_OUTPUT)
        .read_to_end(&mut buf)
        .context("reading the tenant command's output")?;
    let _ = std::io::copy(&mut out, &mut std::io::sink());
    let status = child.wait().context("waiting for systemd-run")?;
    Ok((status.success(), buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_sandbox_not_the_process() {
        let name = TenantName::parse("alice").unwrap();
        let props = sandbox_properties(BUILTIN_TEMPLATE, &name);
        for want in [
            "User=oc-alice",
            "EnvironmentFile=/etc/ocusers/tenants/alice.env",
            "PrivateTmp=yes",
            "PrivateUsers=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=",
            "Slice=openclaw.slice",
            "StateDirectory=openclaw/alice",
            "TemporaryFileSystem=/var/lib/openclaw:ro",
            "SystemCallFilter=~@privileged @resources",
            "WorkingDirectory=/var/lib/openclaw/alice",
        ] {
            assert!(props.iter().any(|p| p == want), "missing {want}: {props:?}");
        }
        for p in &props {
            let key = p.split('=').next().unwrap();
            assert!(!NOT_CARRIED.contains(&key), "{p}");
            assert!(!p.contains("%i"), "{p}");
            assert!(!key.starts_with("Assert"), "{p}");
            assert!(!p.contains("start-gate"), "{p}");
        }
        let cmd = command(
            &Paths::new("/nonexistent"),
            &name,
            &["openclaw".into(), "doctor".into()],
            false,
            None,
        )
        .unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--property=JoinsNamespaceOf=openclaw@alice.service".into()));
        assert_eq!(&args[args.len() - 3..], ["--", "openclaw", "doctor"]);
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--property=RuntimeMaxSec"))
        );
        // A bound, when asked for, is a property of the unit, before `--`.
        let bounded: Vec<String> = command(
            &Paths::new("/nonexistent"),
            &name,
            &["openclaw".into(), "dashboard".into()],
            false,
            Some(std::time::Duration::from_secs(60)),
        )
        .unwrap()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        let at = bounded
            .iter()
            .position(|a| a == "--property=RuntimeMaxSec=60");
        let end = bounded.iter().position(|a| a == "--");
        assert!(at.is_some() && at < end, "{bounded:?}");
        assert!(command(&Paths::new("/"), &name, &[], false, None).is_err());
    }
}

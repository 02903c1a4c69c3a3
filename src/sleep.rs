//! Opt-in scale-to-zero (`idle_stop`): a tenant whose public route has had
//! no client connection for that long is stopped, and the next connection
//! through its route starts it again.
//!
//! The parts are systemd's: the tenant's proxy socket
//! (`openclaw-proxy@NAME.socket`, always listening) starts the relay
//! (`openclaw-proxy@NAME.service`, `systemd-socket-proxyd`, as the tenant);
//! for a sleeper ocusers writes two drop-ins:
//! - on the relay: `Wants=`/`After=` the gateway, an `ExecStartPre=` that
//!   waits (as the tenant, inside the relay's sandbox, bounded) until the
//!   gateway answers `/readyz`, and `--exit-idle-time=` the idle time; the
//!   relay counts open connections, so a WebSocket keeps it awake;
//! - on the gateway: `StopWhenUnneeded=yes`, so it stops with the relay.
//!
//! The gateway is not enabled into `openclaw.target`: it wakes on its
//! first connection. A sleeping gateway runs no channels, heartbeats or
//! cron jobs, so idle-stop is refused for a tenant whose config has
//! channels or scheduled jobs enabled unless forced ([`check_config`],
//! read as the tenant).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::paths::{self, Paths};
use crate::policy::{LimitOverrides, Tier};
use crate::systemd::Systemd;
use crate::tenant::TenantName;

/// The shortest idle time: below it a gateway could stop between a page
/// load and its WebSocket (tests use 20 s).
pub const MIN_IDLE_SECS: u64 = 10;

/// `15m`, `90s`, `1h`, `2d`; `off` or `0`: always on. An error says what
/// is wrong and what to write instead.
pub fn parse_idle_stop(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    let fix = "write a duration like 15m, 90s or 1h, or \"off\"";
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("idle_stop {s:?} is not a duration: {fix}"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "idle_stop {s:?} has an unknown unit {unit:?}: {fix}"
            ));
        }
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("idle_stop {s:?} is too large: {fix}"))?;
    if secs == 0 {
        return Ok(None);
    }
    if secs < MIN_IDLE_SECS {
        return Err(format!(
            "idle_stop {s:?} is shorter than {MIN_IDLE_SECS}s: use at least {MIN_IDLE_SECS}s, or \"off\""
        ));
    }
    Ok(Some(secs))
}

/// The tenant's idle time: its own setting (`off` included) over its
/// tier's.
pub fn effective(tier: &Tier, overrides: &LimitOverrides) -> Result<Option<u64>, String> {
    match &overrides.idle_stop {
        Some(s) => parse_idle_stop(s),
        None => Ok(tier.idle_stop),
    }
}

/// `15min`, `20s`: as systemd and people read it.
pub fn show(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// `openclaw-proxy@NAME.service`
pub fn relay_unit(name: &TenantName) -> String {
    format!("openclaw-proxy@{name}.service")
}

const DROPIN: &str = "50-ocusers-idle-stop.conf";

/// The relay's drop-in (`/etc/systemd/system/openclaw-proxy@NAME.service.d/`).
pub fn relay_dropin(paths: &Paths, name: &TenantName) -> PathBuf {
    paths
        .host_path(std::path::Path::new("/etc/systemd/system"))
        .join(format!("{}.d", relay_unit(name)))
        .join(DROPIN)
}

/// The gateway's drop-in (`/etc/systemd/system/openclaw@NAME.service.d/`).
pub fn gateway_dropin(paths: &Paths, name: &TenantName) -> PathBuf {
    paths
        .host_path(std::path::Path::new("/etc/systemd/system"))
        .join(format!("{}.d", paths::unit_name(name)))
        .join(DROPIN)
}

/// Whether the tenant is set up to sleep (its gateway's drop-in is there):
/// what systemd runs it with, not what the registry asks.
pub fn is_sleeper(paths: &Paths, name: &TenantName) -> bool {
    gateway_dropin(paths, name).is_file()
}

/// How long the relay waits for the gateway to be ready: the gateway may
/// wait its turn at the start gate first.
pub fn wake_wait(ready_timeout: u64) -> u64 {
    ready_timeout.saturating_mul(2)
}

/// The relay's drop-in for `idle` seconds of idle time.
pub fn render_relay(name: &TenantName, idle: u64, ready_timeout: u64) -> String {
    let wait = wake_wait(ready_timeout);
    format!(
        "# Written by ocusers (idle_stop = \"{shown}\"): tenant {name} sleeps after\n\
# {shown} without a client connection. The first connection to its proxy\n\
# socket starts this relay, which starts the gateway and waits (as the\n\
# tenant, at most {wait} s) until it answers /readyz before serving it. An\n\
# open connection (a WebSocket) keeps the relay, and so the gateway, awake.\n\
[Unit]\n\
Wants={gateway}\n\
After={gateway}\n\
\n\
[Service]\n\
ExecStartPre=-/usr/bin/ocusers internal wait-ready --port ${{OCUSERS_PORT}} --timeout {wait}\n\
ExecStart=\n\
ExecStart=/lib/systemd/systemd-socket-proxyd --exit-idle-time={idle}s 127.0.0.1:${{OCUSERS_PORT}}\n\
TimeoutStartSec={timeout}\n",
        shown = show(idle),
        gateway = paths::unit_name(name),
        timeout = wait + 30,
    )
}

/// The gateway's drop-in: it stops when the relay no longer needs it.
pub fn render_gateway(name: &TenantName) -> String {
    format!(
        "# Written by ocusers (idle_stop): the gateway of tenant {name} stops when\n\
# its relay (openclaw-proxy@{name}.service) exits idle, and starts with it.\n\
[Unit]\n\
StopWhenUnneeded=yes\n"
    )
}

/// Probe `port` until it answers ready or `timeout` passes; each probe's
/// steps are bounded (see [`crate::health::probe`]: 4 KiB of body at
/// most), so a slow or endless answer costs one step's time, not a hang.
pub fn wait_ready(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let left = timeout.saturating_sub(start.elapsed());
        let step = left
            .min(Duration::from_secs(2))
            .max(Duration::from_millis(50));
        if crate::health::probe(port, step).is_ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100).min(left));
    }
    false
}

/// What the tenant's config says runs on its own: enabled channels and
/// enabled cron jobs. Made by `ocusers internal idle-check` as the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    pub channels: Vec<String>,
    pub cron_jobs: u64,
    /// Why the config could not be read (then nothing is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// The most of a config or job store the tenant side reads.
const READ_CAP: u64 = 4 << 20;

/// Read a regular file of the tenant's, bounded (a FIFO or device is not
/// opened for reading: `O_NONBLOCK`, then the kind is checked).
fn read_capped(path: &std::path::Path) -> Result<Option<String>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut buf = Vec::new();
    f.take(READ_CAP + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > READ_CAP {
        return Err(format!(
            "{} is larger than {READ_CAP} bytes",
            path.display()
        ));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The tenant side (run as the tenant, in its state directory): enabled
/// channels in `openclaw.json` (`channels.<id>`, enabled unless
/// `"enabled": false`) and enabled jobs in the cron store
/// (`cron/jobs.json`, or `cron.store`), unless `cron.enabled` is false.
pub fn inspect(state: &std::path::Path) -> Scheduled {
    let mut out = Scheduled::default();
    let config: serde_json::Value = match read_capped(&state.join(crate::statedir::CONFIG)) {
        Ok(None) => return out,
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                out.unreadable = Some(format!(
                    "openclaw.json is not plain JSON ({e}), so its channels and jobs cannot be told"
                ));
                return out;
            }
        },
        Err(e) => {
            out.unreadable = Some(e);
            return out;
        }
    };
    if let Some(channels) = config["channels"].as_object() {
        for (id, c) in channels {
            if c.is_object() && c["enabled"] != serde_json::Value::Bool(false) {
                out.channels.push(id.clone());
            }
        }
    }
    if config["cron"]["enabled"] == serde_json::Value::Bool(false) {
        return out;
    }
    let store = match config["cron"]["store"].as_str() {
        Some(s) => state.join(s),
        None => state.join("cron/jobs.json"),
    };
    match read_capped(&store) {
        Ok(None) => {}
        Ok(Some(text)) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => {
                let jobs = v["jobs"].as_array().or_else(|| v.as_array());
                out.cron_jobs = jobs.map_or(0, |j| {
                    j.iter()
                        .filter(|j| j["enabled"] != serde_json::Value::Bool(false))
                        .count() as u64
                });
            }
            Err(e) => out.unreadable = Some(format!("the cron store is not JSON ({e})")),
        },
        Err(e) => out.unreadable = Some(e),
    }
    out
}

/// Root's side: the tenant's answer, taken only if well-formed and with
/// names that are plain identifiers (the answer is the tenant's).
pub fn parse_answer(bytes: &[u8]) -> Scheduled {
    match serde_json::from_slice::<Scheduled>(bytes) {
        Ok(mut s) => {
            s.channels.retain(|c| {
                !c.is_empty()
                    && c.len() <= 40
                    && c.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            });
            s.channels.truncate(20);
            if let Some(u) = &mut s.unreadable {
                *u = u.chars().filter(|c| !c.is_control()).take(200).collect();
            }
            s
        }
        Err(_) => Scheduled {
            unreadable: Some("the check run as the tenant gave no answer".into()),
            ..Default::default()
        },
    }
}

/// Refuse idle-stop for a tenant whose config runs things on its own,
/// unless `force`. Pure: the verdict from what the tenant side found.
pub fn refusal(name: &TenantName, found: &Scheduled, force: bool) -> Option<String> {
    if force {
        return None;
    }
    let fix = format!(
        "a sleeping gateway runs no channels, heartbeats or cron jobs; turn them off, or force it with `--force-idle-stop` (apply: force_idle_stop = true), or leave idle_stop off for {name}"
    );
    if let Some(why) = &found.unreadable {
        return Some(format!(
            "tenant {name} cannot sleep (idle_stop): {why}; {fix}"
        ));
    }
    let mut what = Vec::new();
    if !found.channels.is_empty() {
        what.push(format!("channels enabled ({})", found.channels.join(", ")));
    }
    if found.cron_jobs > 0 {
        what.push(format!("{} cron job(s) enabled", found.cron_jobs));
    }
    if what.is_empty() {
        return None;
    }
    Some(format!(
        "tenant {name} cannot sleep (idle_stop): its OpenClaw config has {}; {fix}",
        what.join(" and ")
    ))
}

/// Ask the tenant (as the tenant, in its sandbox, bounded) what its config
/// runs on its own, and refuse idle-stop as [`refusal`] says. A tenant
/// without a state or config yet (a new one: its config is ours) passes.
pub fn check_config(paths: &Paths, name: &TenantName, force: bool) -> Result<()> {
    if force
        || !crate::statedir::state_exists(paths, name)
        || !paths.secrets_file(name).exists()
        || crate::identity::lookup(&paths::user_name(name)).is_none()
    {
        return Ok(());
    }
    let (_, out) = crate::tenant_exec::run_bounded(
        paths,
        name,
        &["/usr/bin/ocusers", "internal", "idle-check"],
    )?;
    match refusal(name, &parse_answer(&out), force) {
        Some(message) => anyhow::bail!(message),
        None => Ok(()),
    }
}

/// The drop-ins `idle` asks for (both files and their text); none for an
/// always-on tenant.
fn wanted(name: &TenantName, idle: Option<u64>, ready_timeout: u64) -> Option<(String, String)> {
    idle.map(|i| (render_relay(name, i, ready_timeout), render_gateway(name)))
}

/// Write (or, for an always-on tenant, remove) the two drop-ins and reload
/// systemd; a later failure puts back what was there.
pub fn dropin_step<'a>(
    paths: &'a Paths,
    sd: &'a dyn Systemd,
    name: &'a TenantName,
    idle: Option<u64>,
    ready_timeout: u64,
) -> crate::plan::Step<'a> {
    let (relay, gateway) = (relay_dropin(paths, name), gateway_dropin(paths, name));
    let before = (std::fs::read(&relay).ok(), std::fs::read(&gateway).ok());
    let want = wanted(name, idle, ready_timeout);
    let what = match idle {
        Some(i) => format!(
            "idle_stop {}: {} waits for the gateway and exits after {} without a connection, {} stops with it ({}, {})",
            show(i),
            relay_unit(name),
            show(i),
            paths::unit_name(name),
            relay.display(),
            gateway.display()
        ),
        None => format!(
            "always on: remove the idle_stop drop-ins ({}, {})",
            relay.display(),
            gateway.display()
        ),
    };
    let (r1, g1, w1) = (relay.clone(), gateway.clone(), want.clone());
    let (r2, g2) = (relay.clone(), gateway.clone());
    crate::plan::Step::new(
        what,
        move || {
            let now = (std::fs::read(&r1).ok(), std::fs::read(&g1).ok());
            Ok(match &w1 {
                Some((r, g)) => {
                    now.0.as_deref() == Some(r.as_bytes()) && now.1.as_deref() == Some(g.as_bytes())
                }
                None => now.0.is_none() && now.1.is_none(),
            })
        },
        move || {
            match &want {
                Some((r, g)) => {
                    for (path, text) in [(&relay, r), (&gateway, g)] {
                        fsutil::ensure_dir(path.parent().expect("drop-in dir"), 0o755)?;
                        fsutil::write_atomic(path, text.as_bytes(), 0o644)?;
                    }
                }
                None => {
                    fsutil::remove_file(&relay)?;
                    fsutil::remove_file(&gateway)?;
                }
            }
            sd.daemon_reload()
        },
    )
    .revert(move || {
        for (path, old) in [(&r2, &before.0), (&g2, &before.1)] {
            match old {
                Some(c) => {
                    fsutil::ensure_dir(path.parent().expect("drop-in dir"), 0o755)?;
                    fsutil::write_atomic(path, c, 0o644)?
                }
                None => fsutil::remove_file(path)?,
            }
        }
        sd.daemon_reload()
    })
}

/// Remove both drop-ins (for `remove`); true if there were any.
pub fn remove_dropins(paths: &Paths, name: &TenantName) -> Result<bool> {
    let mut had = false;
    for path in [relay_dropin(paths, name), gateway_dropin(paths, name)] {
        if path.exists() {
            had = true;
            fsutil::remove_file(&path)?;
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(had)
}

/// Wake a sleeper: start its relay (systemd starts the gateway; the start
/// job ends once the relay's wait for readiness does), then one empty
/// connection through its socket so the relay's idle clock runs from now.
/// Nothing is read from the connection.
pub fn wake(paths: &Paths, sd: &dyn Systemd, name: &TenantName) -> Result<()> {
    sd.reset_failed(&paths::unit_name(name))?;
    sd.start(&paths::proxy_socket_unit(name))?;
    sd.start(&relay_unit(name))?;
    poke(paths, name);
    Ok(())
}

/// Restart a sleeper: its relay and gateway stopped, then woken (it sleeps
/// again when idle).
pub fn restart(paths: &Paths, sd: &dyn Systemd, name: &TenantName) -> Result<()> {
    sd.stop(&relay_unit(name))?;
    sd.stop(&paths::unit_name(name))?;
    wake(paths, sd, name)
}

/// Restart a tenant's gateway: a sleeper's through its relay (a gateway
/// started alone would be stopped at once as unneeded), anyone else's
/// with `systemctl restart`.
pub fn restart_gateway(paths: &Paths, sd: &dyn Systemd, name: &TenantName) -> Result<()> {
    if is_sleeper(paths, name) {
        restart(paths, sd, name)
    } else {
        sd.restart(&paths::unit_name(name))
    }
}

/// Whether the drop-ins on disk are the ones `idle` asks for.
pub fn dropins_are(
    paths: &Paths,
    name: &TenantName,
    idle: Option<u64>,
    ready_timeout: u64,
) -> bool {
    let now = (
        std::fs::read(relay_dropin(paths, name)).ok(),
        std::fs::read(gateway_dropin(paths, name)).ok(),
    );
    match wanted(name, idle, ready_timeout) {
        Some((r, g)) => {
            now.0.as_deref() == Some(r.as_bytes()) && now.1.as_deref() == Some(g.as_bytes())
        }
        None => now.0.is_none() && now.1.is_none(),
    }
}

/// The idle seconds the registry and tier ask for a tenant on this host
/// (None: always on, also when public access is off or the tier is gone).
pub fn idle_of(
    paths: &Paths,
    cfg: &crate::config::HostConfig,
    record: &crate::tenant::Record,
) -> Option<u64> {
    if !cfg.proxy.enabled() {
        return None;
    }
    let tier = Tier::load(paths, &record.tier).ok()?;
    effective(&tier, &record.limits).ok().flatten()
}

/// One connection to the tenant's proxy socket, closed at once.
pub fn poke(paths: &Paths, name: &TenantName) {
    if let Ok(s) = std::os::unix::net::UnixStream::connect(paths.proxy_socket(name)) {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// Put a sleeper to sleep now and keep it asleep: its socket (so no
/// connection wakes it), its relay and its gateway stopped.
pub fn stop(sd: &dyn Systemd, name: &TenantName) -> Result<()> {
    sd.stop(&paths::proxy_socket_unit(name))?;
    sd.stop(&relay_unit(name))?;
    sd.stop(&paths::unit_name(name))
}

/// The state `status`, `list` and `metrics` show for a sleeping tenant.
pub const SLEEPING: &str = "sleeping";

/// Whether a tenant with an inactive gateway sleeps: it is a sleeper and
/// its socket listens (a stopped sleeper's socket does not).
pub fn sleeping(paths: &Paths, sd: &dyn Systemd, name: &TenantName, gateway_state: &str) -> bool {
    gateway_state == "inactive"
        && is_sleeper(paths, name)
        && sd
            .active_state(&paths::proxy_socket_unit(name))
            .is_ok_and(|s| s == "active")
}

/// Whether a tenant of `tier` with `overrides` may sleep here: a valid
/// idle_stop, public access on (the tenant wakes through its proxy
/// socket), and a config without channels or cron jobs unless forced.
/// Its idle seconds, None for an always-on tenant.
pub fn check_tenant(
    paths: &Paths,
    cfg: &crate::config::HostConfig,
    name: &TenantName,
    tier: &Tier,
    overrides: &LimitOverrides,
) -> Result<Option<u64>> {
    let idle = effective(tier, overrides).map_err(|m| anyhow::anyhow!("tenant {name}: {m}"))?;
    if idle.is_some() {
        if !cfg.proxy.enabled() {
            anyhow::bail!(
                "tenant {name} cannot sleep (idle_stop): it wakes through its public route, and public access is off; set [proxy] domain in /etc/ocusers/ocusers.toml, or leave idle_stop off"
            );
        }
        check_config(paths, name, overrides.force_idle_stop)?;
    }
    Ok(idle)
}

#[cfg(test)]
mod tests;

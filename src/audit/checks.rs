//! The per-tenant checks of `ocusers audit`: files, modes, owners, ports,
//! rules, listeners, tokens, credentials, logs and exposure.
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::{Check, MAX_EXPOSURE, SETTINGS_KEYS, Tenant, TenantAudit};
use crate::config::HostConfig;
use crate::firewall;
use crate::isolation;
use crate::paths::{self, Paths};
use crate::ports;
use crate::secrets;
use crate::statedir::CacheDir;
use crate::systemd::Systemd;

fn check(checks: &mut Vec<Check>, name: &'static str, ok: bool, detail: String) {
    checks.push(Check {
        check: name,
        ok,
        detail,
    });
}

fn mode_owner(path: &Path) -> Option<(u32, u32)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.mode() & 0o7777, m.uid()))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn audit_tenant(
    paths: &Paths,
    cfg: &HostConfig,
    sd: &dyn Systemd,
    t: &Tenant,
    all: &[Tenant],
    loaded: Option<&str>,
    listeners: &[ports::Listener],
) -> TenantAudit {
    let r = &t.record;
    let name = r.name.as_str();
    let user = paths::user_name(&r.name);
    let state = paths.state_dir(&r.name);
    let secrets_file = paths.secrets_file(&r.name);
    let mut checks = Vec::new();

    // User.
    match &t.account {
        Some(a) if a.home == paths::home_dir(&r.name) => check(
            &mut checks,
            "user",
            true,
            format!("{user} (uid {}), home {}", a.uid, a.home.display()),
        ),
        Some(a) => check(
            &mut checks,
            "user",
            false,
            format!(
                "{user} has home {} instead of {}: it is not ocusers' tenant user",
                a.home.display(),
                paths::home_dir(&r.name).display()
            ),
        ),
        None => check(
            &mut checks,
            "user",
            false,
            format!("user {user} does not exist: run `ocusers add {name}` to repair"),
        ),
    }

    // State directory: 0700, the tenant's own.
    match (mode_owner(&state), &t.account) {
        (Some((mode, uid)), Some(a)) if mode == 0o700 && uid == a.uid => check(
            &mut checks,
            "state_dir",
            true,
            format!("{} 0700 {user}", state.display()),
        ),
        (Some((mode, uid)), _) => check(
            &mut checks,
            "state_dir",
            false,
            format!(
                "{} is mode {mode:04o} owned by uid {uid} (want 0700 {user}): `chmod 700 {0}; chown {user}: {0}`",
                state.display()
            ),
        ),
        (None, _) => check(
            &mut checks,
            "state_dir",
            false,
            format!(
                "{} is missing: run `ocusers add {name}` to repair",
                state.display()
            ),
        ),
    }

    // Compile cache (the unit's CacheDirectory=): 0700, the tenant's own, a
    // directory (not a link). systemd makes it at the gateway's first start;
    // until then it is rightly missing.
    let cache = paths.cache_dir(&r.name);
    let cache_state = crate::statedir::cache_dir(paths, &r.name);
    match cache_state {
        CacheDir::Missing => check(
            &mut checks,
            "cache_dir",
            true,
            format!(
                "{} not made yet (systemd makes it when the gateway starts)",
                cache.display()
            ),
        ),
        _ if t
            .account
            .as_ref()
            .is_some_and(|a| cache_state.is_sound_for(a)) =>
        {
            check(
                &mut checks,
                "cache_dir",
                true,
                format!("{} 0700 {user}", cache.display()),
            )
        }
        CacheDir::NotDir => check(
            &mut checks,
            "cache_dir",
            false,
            format!(
                "{} is not a directory (a link or file): `ocusers stop {name}; rm {0}; ocusers start {name}`",
                cache.display()
            ),
        ),
        CacheDir::Dir { mode, uid } => check(
            &mut checks,
            "cache_dir",
            false,
            format!(
                "{} is mode {mode:04o} owned by uid {uid} (want 0700 {user}): `chmod 700 {0}; chown -R {user}: {0}`",
                cache.display(),
            ),
        ),
    }

    // Secrets file: 0600 root, in a 0700 root directory.
    match mode_owner(&secrets_file) {
        Some((0o600, 0)) => check(
            &mut checks,
            "secrets_file",
            true,
            format!("{} 0600 root", secrets_file.display()),
        ),
        Some((mode, uid)) => check(
            &mut checks,
            "secrets_file",
            false,
            format!(
                "{} is mode {mode:04o} owned by uid {uid} (want 0600 root){}: `chmod 600 {0}; chown root: {0}`",
                secrets_file.display(),
                if mode & 0o004 != 0 {
                    ", readable by every user"
                } else {
                    ""
                }
            ),
        ),
        None => check(
            &mut checks,
            "secrets_file",
            false,
            format!(
                "{} is missing: run `ocusers add {name}` to repair",
                secrets_file.display()
            ),
        ),
    }
    let dir = paths.secrets_dir();
    if let Some((mode, uid)) = mode_owner(&dir)
        && (mode & 0o077 != 0 || uid != 0)
    {
        check(
            &mut checks,
            "secrets_dir",
            false,
            format!(
                "{} is mode {mode:04o} owned by uid {uid} (want 0700 root): `chmod 700 {0}`",
                dir.display()
            ),
        );
    }

    // Port block: not shared, bind rules set, firewall rules loaded, and
    // nothing but the tenant's unit listening in it.
    let shared: Vec<String> = all
        .iter()
        .filter(|o| o.record.name != r.name)
        .filter(|o| o.record.port <= r.last_port() && r.port <= o.record.last_port())
        .map(|o| o.record.name.to_string())
        .collect();
    check(
        &mut checks,
        "ports",
        shared.is_empty(),
        if shared.is_empty() {
            format!("{}-{}", r.port, r.last_port())
        } else {
            format!(
                "ports {}-{} overlap the block of {}: remove one tenant and add it again",
                r.port,
                r.last_port(),
                shared.join(", ")
            )
        },
    );
    let unit = paths::unit_name(&r.name);
    let want = isolation::socket_bind_for(cfg, r);
    match sd.socket_bind(&unit) {
        Ok(have) if have == want => check(
            &mut checks,
            "bind_rules",
            true,
            format!(
                "SocketBindAllow={} SocketBindDeny={}",
                want.allow[0], want.deny[0]
            ),
        ),
        Ok(_) | Err(_) => check(
            &mut checks,
            "bind_rules",
            false,
            format!(
                "{unit} lacks SocketBindAllow={} SocketBindDeny={}: run `ocusers add {name}` to set them",
                want.allow[0], want.deny[0]
            ),
        ),
    }
    if let Some(table) = loaded {
        let has = firewall::closes_block(table, name, r.port, r.last_port());
        check(
            &mut checks,
            "firewall_rules",
            has,
            if has {
                format!(
                    "table inet {} closes {}-{}",
                    firewall::TABLE,
                    r.port,
                    r.last_port()
                )
            } else {
                format!(
                    "table inet {} has no rules for {}-{}: run `ocusers add {name}` (or `systemctl restart {}`)",
                    firewall::TABLE,
                    r.port,
                    r.last_port(),
                    firewall::UNIT
                )
            },
        );
    }
    let expected_cgroup = crate::cgroup::unit_path(&unit);
    let foreign: Vec<String> = listeners
        .iter()
        .filter(|l| l.port >= r.port && l.port <= r.last_port())
        .filter(|l| l.cgroups.iter().any(|c| c != &expected_cgroup) || l.cgroups.is_empty())
        .map(|l| {
            if l.pids.is_empty() {
                format!("port {} (owner not found)", l.port)
            } else {
                format!(
                    "port {} by pid {} in {}",
                    l.port,
                    l.pids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    l.cgroups.join(",")
                )
            }
        })
        .collect();
    check(
        &mut checks,
        "listeners",
        foreign.is_empty(),
        if foreign.is_empty() {
            format!("only {unit} listens in {}-{}", r.port, r.last_port())
        } else {
            format!(
                "a process outside {unit} listens on the tenant's ports: {}; stop it",
                foreign.join("; ")
            )
        },
    );

    // Token and channel credentials: present, and not shared.
    let token = t.env.as_ref().and_then(|e| e.get(secrets::TOKEN_KEY));
    match token {
        Some(tok) if tok.len() >= 32 => {
            let same: Vec<String> = all
                .iter()
                .filter(|o| o.record.name != r.name)
                .filter(|o| o.env.as_ref().and_then(|e| e.get(secrets::TOKEN_KEY)) == Some(tok))
                .map(|o| o.record.name.to_string())
                .collect();
            check(
                &mut checks,
                "token",
                same.is_empty(),
                if same.is_empty() {
                    format!("{} set, unique", secrets::TOKEN_KEY)
                } else {
                    format!(
                        "{} is the same as {}'s: give each tenant its own (delete the line from {} and run `ocusers add {name}`, then `systemctl restart {unit}`)",
                        secrets::TOKEN_KEY,
                        same.join(", "),
                        secrets_file.display()
                    )
                },
            );
        }
        _ => check(
            &mut checks,
            "token",
            false,
            format!(
                "no {} of at least 32 characters in {}: run `ocusers add {name}` to create one",
                secrets::TOKEN_KEY,
                secrets_file.display()
            ),
        ),
    }
    let mut dup_keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(env) = &t.env {
        for key in env
            .keys()
            .filter(|k| *k != secrets::TOKEN_KEY && !SETTINGS_KEYS.contains(k))
        {
            let value = env.get(key).unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            for o in all.iter().filter(|o| o.record.name != r.name) {
                if o.env.as_ref().and_then(|e| e.get(key)) == Some(value) {
                    dup_keys
                        .entry(key.to_string())
                        .or_default()
                        .insert(o.record.name.to_string());
                }
            }
        }
    }
    check(
        &mut checks,
        "credentials",
        dup_keys.is_empty(),
        if dup_keys.is_empty() {
            "no credential shared with another tenant".into()
        } else {
            format!(
                "same value as another tenant: {}; one bot or key per tenant (edit {})",
                dup_keys
                    .iter()
                    .map(|(k, who)| format!(
                        "{k} ({})",
                        who.iter().cloned().collect::<Vec<_>>().join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                secrets_file.display()
            )
        },
    );

    // Logs: inside the state directory.
    let logs = log_file(paths, &r.name);
    let home = paths::home_dir(&r.name);
    match &logs {
        Some(l) if Path::new(l).starts_with(&home) => check(
            &mut checks,
            "logs",
            true,
            format!("{l} (inside the state directory)"),
        ),
        Some(l) => check(
            &mut checks,
            "logs",
            false,
            format!(
                "logging.file is {l}, outside {}: set it back with `openclaw config set logging.file {}/logs/openclaw.log` as the tenant",
                home.display(),
                home.display()
            ),
        ),
        None => check(
            &mut checks,
            "logs",
            false,
            format!(
                "no logging.file in {}/openclaw.json (OpenClaw then logs to /tmp/openclaw): set it inside the state directory",
                state.display()
            ),
        ),
    }

    // Exposure of the unit.
    let exposure = exposure(&unit);
    match exposure {
        Some(score) => check(
            &mut checks,
            "exposure",
            score <= MAX_EXPOSURE,
            format!("systemd-analyze security: {score:.1} (at most {MAX_EXPOSURE:.1})"),
        ),
        None => check(
            &mut checks,
            "exposure",
            false,
            format!("`systemd-analyze security {unit}` gave no score"),
        ),
    }

    TenantAudit {
        name: name.to_string(),
        user,
        uid: t.account.as_ref().map(|a| a.uid),
        ports: [r.port, r.last_port()],
        state_dir: state,
        secrets_file,
        logs,
        exposure,
        checks,
    }
}

/// `logging.file` from the tenant's OpenClaw config (JSON as ocusers wrote
/// it; a config the tenant rewrote as JSON5 is searched as text). Read by
/// descriptor, capped, a regular file only (see src/statedir.rs).
fn log_file(paths: &Paths, name: &crate::tenant::TenantName) -> Option<String> {
    let text = crate::statedir::read_config(paths, name).ok()??;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v["logging"]["file"].as_str().map(str::to_string),
        Err(_) => {
            let after = text.split("\"file\"").nth(1)?;
            let quoted = after.split('"').nth(1)?;
            Some(quoted.to_string())
        }
    }
}

/// `systemd-analyze security UNIT`'s overall exposure.
pub fn exposure(unit: &str) -> Option<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--no-pager", unit])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    // "→ Overall exposure level for openclaw@alice.service: 1.3 OK :-)"
    line.split_whitespace().find_map(|w| w.parse().ok())
}

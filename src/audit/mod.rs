//! `ocusers audit`: the tenant boundary, machine-checked. For each tenant the
//! files and settings that keep it apart (user, state directory, secrets
//! file, port block, token, channel credentials, log location, listeners,
//! bind and firewall rules, unit exposure), then live probes as each tenant
//! against the others (see [`probe`]), and the OS layers this host enforces.
//! Secrets are compared in memory and never printed.
pub mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde::Serialize;

use crate::config::HostConfig;
use crate::firewall;
use crate::identity;
use crate::isolation::{self, Layer};
use crate::paths::{self, Paths};
use crate::ports;
use crate::secrets::{self, EnvFile};
use crate::systemd::Systemd;
use crate::tenant::{Record, TenantName};
use probe::{Kind, Outcome};

/// `systemd-analyze security` exposure above this fails the audit.
pub const MAX_EXPOSURE: f64 = 2.0;
/// Keys of the environment file that are per-tenant settings, not credentials.
const SETTINGS_KEYS: [&str; 2] = [secrets::PORT_KEY, secrets::NODE_OPTIONS_KEY];

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No failures.
    pub ok: bool,
    pub layers: Vec<Layer>,
    pub tenants: Vec<TenantAudit>,
    pub probes: Vec<ProbeResult>,
    /// One line each, naming the tenant, the cause and the fix.
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantAudit {
    pub name: String,
    pub user: String,
    pub uid: Option<u32>,
    pub ports: [u16; 2],
    pub state_dir: PathBuf,
    pub secrets_file: PathBuf,
    pub logs: Option<String>,
    pub exposure: Option<f64>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub from: String,
    pub to: String,
    pub probe: &'static str,
    pub target: String,
    /// `denied`, `contained` (bind allowed but the firewall drops every answer
    /// from it), `allowed`, `not_run` or `error`.
    pub result: &'static str,
    pub ok: bool,
    pub detail: String,
}

struct Tenant {
    record: Record,
    account: Option<identity::Account>,
    env: Option<EnvFile>,
    main_pid: u32,
    cgroup: Option<PathBuf>,
}

/// Audit `only` (or every tenant) against all tenants.
pub fn run(
    paths: &Paths,
    cfg: &HostConfig,
    sd: &dyn Systemd,
    records: &[Record],
    only: Option<&TenantName>,
) -> Result<Report> {
    let layers = isolation::layers(cfg);
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for l in &layers {
        match (l.name, l.active) {
            (_, true) => {}
            ("bind", false) => warnings.push(format!("bind layer inactive: {}", l.detail)),
            (name, false) => failures.push(format!("{name} layer inactive: {}", l.detail)),
        }
    }
    let loaded = firewall::usable(cfg)
        .ok()
        .and_then(|()| firewall::loaded_table());
    let listeners = ports::listener_owners(paths.root());

    let mut tenants = Vec::new();
    for r in records {
        let account = identity::lookup(&paths::user_name(&r.name));
        let env = EnvFile::load(&paths.secrets_file(&r.name)).ok().flatten();
        let unit = sd.unit(&paths::unit_name(&r.name)).ok();
        let main_pid = unit.as_ref().map_or(0, |u| u.main_pid);
        let cgroup = unit
            .as_ref()
            .filter(|u| u.is_active() && !u.control_group.is_empty())
            .and_then(|u| cgroup_dir(&u.control_group));
        tenants.push(Tenant {
            record: r.clone(),
            account,
            env,
            main_pid,
            cgroup,
        });
    }

    let mut audits = Vec::new();
    for t in tenants
        .iter()
        .filter(|t| only.is_none_or(|n| *n == t.record.name))
    {
        let a = audit_tenant(paths, cfg, sd, t, &tenants, loaded.as_deref(), &listeners);
        for c in a.checks.iter().filter(|c| !c.ok) {
            failures.push(format!("{}: {}: {}", a.name, c.check, c.detail));
        }
        audits.push(a);
    }

    let mut probes = Vec::new();
    for from in tenants
        .iter()
        .filter(|t| only.is_none_or(|n| *n == t.record.name))
    {
        for to in tenants.iter().filter(|t| t.record.name != from.record.name) {
            probes.extend(probe_pair(paths, from, to, loaded.as_deref(), &listeners));
        }
    }
    for p in &probes {
        if !p.ok {
            failures.push(format!(
                "{} could {} {} of {} ({}): {}",
                p.from,
                verb(p.probe),
                p.target,
                p.to,
                p.result,
                p.detail
            ));
        } else if p.result == "contained" || p.result == "not_run" {
            warnings.push(format!(
                "{} -> {} {}: {}: {}",
                p.from, p.to, p.probe, p.result, p.detail
            ));
        }
    }
    Ok(Report {
        ok: failures.is_empty(),
        layers,
        tenants: audits,
        probes,
        failures,
        warnings,
    })
}

fn verb(probe: &str) -> &'static str {
    match probe {
        "read-state" | "read-secrets" | "read-environ" => "read",
        "signal" => "signal",
        "bind" => "bind",
        _ => "connect to",
    }
}

/// The unit's cgroup directory on this host (cgroup v2, or the unified
/// hierarchy of a hybrid host).
fn cgroup_dir(control_group: &str) -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|base| PathBuf::from(format!("{base}{control_group}")))
        .find(|p| p.join("cgroup.procs").is_file())
}

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
fn audit_tenant(
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
        let has = table.contains(&format!("\"{name} connect {}-{}", r.port, r.last_port()))
            && table.contains(&format!("\"{name} answer {}-{}", r.port, r.last_port()));
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
    let expected_cgroup = format!("/openclaw.slice/{unit}");
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
    let logs = log_file(&state);
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
/// it; a config the tenant rewrote as JSON5 is searched as text).
fn log_file(state: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state.join("openclaw.json")).ok()?;
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

fn probe_pair(
    paths: &Paths,
    from: &Tenant,
    to: &Tenant,
    loaded: Option<&str>,
    listeners: &[ports::Listener],
) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    let (fname, tname) = (from.record.name.to_string(), to.record.name.to_string());
    let result =
        |probe: &'static str, target: String, result: &'static str, ok: bool, detail: String| {
            ProbeResult {
                from: fname.clone(),
                to: tname.clone(),
                probe,
                target,
                result,
                ok,
                detail,
            }
        };
    let Some(account) = &from.account else {
        out.push(result(
            "all",
            String::new(),
            "not_run",
            false,
            format!("user of {fname} is missing"),
        ));
        return out;
    };
    let cg = from.cgroup.as_deref();
    let where_ = if cg.is_some() {
        format!("as {} in its unit", paths::user_name(&from.record.name))
    } else {
        format!(
            "as {} outside its unit ({fname} is not running)",
            paths::user_name(&from.record.name)
        )
    };
    // In the tenant's unit cgroup if it runs (where its cgroup filters
    // apply); a host that will not let us join it gets the probe as the user
    // alone, and says so.
    let run = |kind: Kind, target: &str| match probe::probe_as(
        account.uid,
        account.gid,
        cg,
        kind,
        target,
    ) {
        Err(e) if cg.is_some() => probe::probe_as(account.uid, account.gid, None, kind, target)
            .map(|o| match o {
                Outcome::Denied(why) => Outcome::Denied(format!(
                    "{why}; outside the unit: could not join its cgroup: {e:#}"
                )),
                other => other,
            }),
        other => other,
    };
    let mut simple = |probe: &'static str, kind: Kind, target: String| {
        let r = match run(kind, &target) {
            Ok(Outcome::Denied(why)) => {
                result(probe, target, "denied", true, format!("{why} ({where_})"))
            }
            Ok(Outcome::Allowed) => result(
                probe,
                target,
                "allowed",
                false,
                format!("the OS allowed it ({where_})"),
            ),
            Ok(Outcome::Broken(e)) => result(probe, target, "error", false, e),
            Err(e) => result(probe, target, "error", false, format!("{e:#}")),
        };
        out.push(r);
    };
    simple(
        "read-state",
        Kind::ReadDir,
        paths.state_dir(&to.record.name).display().to_string(),
    );
    simple(
        "read-secrets",
        Kind::ReadFile,
        paths.secrets_file(&to.record.name).display().to_string(),
    );
    if to.main_pid > 0 {
        simple(
            "read-environ",
            Kind::ReadFile,
            format!("/proc/{}/environ", to.main_pid),
        );
        simple("signal", Kind::Signal, to.main_pid.to_string());
    } else {
        out.push(result(
            "read-environ",
            String::new(),
            "not_run",
            true,
            format!("{tname} is not running"),
        ));
        out.push(result(
            "signal",
            String::new(),
            "not_run",
            true,
            format!("{tname} is not running"),
        ));
    }
    // bind: a port of the target's block nothing listens on.
    let busy: BTreeSet<u16> = listeners.iter().map(|l| l.port).collect();
    let r = &to.record;
    match (r.port..=r.last_port()).rev().find(|p| !busy.contains(p)) {
        Some(port) => {
            let contained = loaded.is_some_and(|t| {
                t.contains(&format!("\"{tname} answer {}-{}", r.port, r.last_port()))
            });
            let pr = match run(Kind::Bind, &port.to_string()) {
                Ok(Outcome::Denied(why)) => result(
                    "bind",
                    port.to_string(),
                    "denied",
                    true,
                    format!("{why} ({where_})"),
                ),
                Ok(Outcome::Allowed) if contained => result(
                    "bind",
                    port.to_string(),
                    "contained",
                    true,
                    format!(
                        "bind allowed ({where_}; systemd does not enforce SocketBindAllow= here), but the firewall drops every answer from it"
                    ),
                ),
                Ok(Outcome::Allowed) => result(
                    "bind",
                    port.to_string(),
                    "allowed",
                    false,
                    format!("bind allowed ({where_}) and no firewall rule drops answers from it"),
                ),
                Ok(Outcome::Broken(e)) => result("bind", port.to_string(), "error", false, e),
                Err(e) => result("bind", port.to_string(), "error", false, format!("{e:#}")),
            };
            out.push(pr);
        }
        None => out.push(result(
            "bind",
            String::new(),
            "not_run",
            true,
            format!("every port of {tname} is in use"),
        )),
    }
    // connect: the target's gateway port, if it listens.
    if busy.contains(&r.port) {
        let port = r.port.to_string();
        let pr = match run(Kind::Connect, &port) {
            Ok(Outcome::Denied(why)) => {
                result("connect", port, "denied", true, format!("{why} ({where_})"))
            }
            Ok(Outcome::Allowed) => result(
                "connect",
                port,
                "allowed",
                false,
                format!("connected to {tname}'s gateway ({where_})"),
            ),
            Ok(Outcome::Broken(e)) => result("connect", port, "error", false, e),
            Err(e) => result("connect", port, "error", false, format!("{e:#}")),
        };
        out.push(pr);
    } else {
        out.push(result(
            "connect",
            r.port.to_string(),
            "not_run",
            true,
            format!("nothing listens on {tname}'s gateway port"),
        ));
    }
    out
}

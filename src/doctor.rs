//! `ocusers doctor`: host and tenant checks, each failure with the fix.
//! Every check reads; `ocusers repair` ([`crate::provision::repair`])
//! changes. A new check: a function here returning [`Check`]s, called from
//! [`run`]; per-tenant file checks go in `doctor/tenants.rs`.
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::config::HostConfig;
use crate::identity;
use crate::paths::{self, Paths};
use crate::ports;
use crate::runtime;
use crate::statedir;
use crate::systemd::{DbusSystemd, Systemd};
use crate::tenant::{self, Record, TenantName};

/// Oldest systemd the template unit is written for (Debian 12).
pub const MIN_SYSTEMD: u32 = 252;
/// cgroup v2 controllers the tiers' limits need.
pub const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
const GIB: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `systemd`, `cgroup`, `runtime`, `proxy`, `ports`, `disk`, `unit`, `tenant`.
    pub check: String,
    pub status: Status,
    /// The tenant the check is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The `ports` check: how many port blocks new tenants can still get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks_left: Option<u32>,
}

fn ok(check: &str, detail: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        status: Status::Ok,
        tenant: None,
        detail: detail.into(),
        fix: None,
        blocks_left: None,
    }
}

fn bad(status: Status, check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: check.into(),
        status,
        tenant: None,
        detail: detail.into(),
        fix: Some(fix.into()),
        blocks_left: None,
    }
}

fn about(mut c: Check, tenant: &TenantName) -> Check {
    c.tenant = Some(tenant.to_string());
    c
}

/// Every check, host first, then each tenant.
/// `sd` is systemd over D-Bus as the caller opened it, or why it could not.
pub fn run(paths: &Paths, sd: std::result::Result<&DbusSystemd, &anyhow::Error>) -> Vec<Check> {
    let mut out = Vec::new();
    match sd {
        Ok(sd) => out.push(systemd_version(sd)),
        Err(e) => out.push(bad(
            Status::Fail,
            "systemd",
            format!("{e:#}"),
            "ocusers needs systemd as PID 1 with the system D-Bus running",
        )),
    }
    out.push(cgroups(Path::new("/sys/fs/cgroup")));
    let records = match tenant::list(paths) {
        Ok(r) => r,
        Err(e) => {
            out.push(bad(
                Status::Fail,
                "tenant",
                format!("cannot read the registry: {e:#}"),
                "fix or remove the file named above",
            ));
            Vec::new()
        }
    };
    out.extend(runtimes(paths, &records));
    out.extend(proxy(paths, sd.ok().map(|s| s as &dyn Systemd), &records));
    out.extend(port_pool(paths, &records));
    out.extend(disk(paths));
    if let Ok(sd) = sd {
        out.extend(units(paths, sd, &records));
    }
    // The state scans share one time budget, so doctor stays quick on a
    // host with many tenants; tenants past it are named as not scanned.
    let budget_end = std::time::Instant::now() + STATE_SCAN_BUDGET;
    let mut not_scanned = Vec::new();
    let proxy_cfg = HostConfig::load(paths).ok().map(|c| c.proxy);
    for r in &records {
        out.extend(tenant_files(paths, r));
        if let Some(c) = &proxy_cfg {
            out.push(origins(paths, c, r));
        }
        let left = budget_end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            not_scanned.push(r.name.to_string());
        } else {
            out.extend(state_hazards(paths, r, left));
        }
    }
    if !not_scanned.is_empty() && nix::unistd::geteuid().is_root() {
        out.push(bad(
            Status::Warn,
            "state",
            format!(
                "the state of {} tenant(s) was not scanned ({} s budget used up): {}",
                not_scanned.len(),
                STATE_SCAN_BUDGET.as_secs(),
                not_scanned.join(", ")
            ),
            "`sudo ocusers audit NAME` scans one tenant's state",
        ));
    }
    out.extend(orphans(paths, &records));
    out
}

fn systemd_version(sd: &DbusSystemd) -> Check {
    match sd.version() {
        Ok(v) => {
            let major: u32 = v
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if major >= MIN_SYSTEMD {
                ok("systemd", format!("systemd {v}"))
            } else {
                bad(
                    Status::Fail,
                    "systemd",
                    format!("systemd {v} is older than {MIN_SYSTEMD}"),
                    "upgrade the host to Debian 12 or newer",
                )
            }
        }
        Err(e) => bad(
            Status::Fail,
            "systemd",
            format!("{e:#}"),
            "check that systemd is PID 1",
        ),
    }
}

/// cgroup v2 with the controllers the limits need; a v1 or hybrid host
/// accepts the limits but does not enforce them: a warning.
pub fn cgroups(root: &Path) -> Check {
    let is_v2 = nix::sys::statfs::statfs(root)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !is_v2 {
        return bad(
            Status::Warn,
            "cgroup",
            format!(
                "{} is not a cgroup v2 (unified) hierarchy: MemoryMax, CPUQuota and TasksMax are accepted but not enforced",
                root.display()
            ),
            "boot with the unified hierarchy (kernel option systemd.unified_cgroup_hierarchy=1, Debian 12's default)",
        );
    }
    let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let have: BTreeSet<&str> = have.split_whitespace().collect();
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .filter(|c| !have.contains(*c))
        .copied()
        .collect();
    if missing.is_empty() {
        ok(
            "cgroup",
            format!("cgroup v2 with {}", CONTROLLERS.join(", ")),
        )
    } else {
        bad(
            Status::Fail,
            "cgroup",
            format!(
                "cgroup v2 lacks the {} controller(s): tenant limits are not enforced",
                missing.join(", ")
            ),
            "enable them in the kernel / on the boot command line (cgroup_enable=memory)",
        )
    }
}

fn runtimes(paths: &Paths, records: &[Record]) -> Vec<Check> {
    let mut out = Vec::new();
    let link = paths.default_runtime_link();
    match (std::fs::read_link(&link), runtime::default_version(paths)) {
        (_, Some(v)) => {
            let node = runtime::node_bin(&paths.runtime_dir(&v));
            match runtime::check_node(&node) {
                Ok(n) => out.push(ok("runtime", format!("default OpenClaw {v} with Node {n}"))),
                Err(e) => out.push(bad(
                    Status::Fail,
                    "runtime",
                    format!("default OpenClaw {v}: {e:#}"),
                    format!("reinstall it: `sudo ocusers runtime install --version {v}`"),
                )),
            }
        }
        (Ok(target), None) => out.push(bad(
            Status::Fail,
            "runtime",
            format!(
                "the default runtime {} points at {}, which is not installed (missing runtime)",
                link.display(),
                target.display()
            ),
            "`sudo ocusers runtime install` (installs OpenClaw and makes it the default)",
        )),
        (Err(_), None) => out.push(bad(
            if records.is_empty() {
                Status::Warn
            } else {
                Status::Fail
            },
            "runtime",
            "no OpenClaw runtime is installed (missing runtime)",
            "`sudo ocusers runtime install`",
        )),
    }
    for r in records {
        if runtime::read_marker(&paths.runtime_dir(&r.runtime)).is_none() {
            out.push(about(
                bad(
                    Status::Fail,
                    "runtime",
                    format!(
                        "tenant {} runs OpenClaw {}, which is not installed (missing runtime)",
                        r.name, r.runtime
                    ),
                    format!(
                        "`sudo ocusers runtime install --version {}`, then `sudo ocusers repair`",
                        r.runtime
                    ),
                ),
                &r.name,
            ));
        } else if !runtime::tenant_link_is(paths, &r.name, &r.runtime) {
            out.push(about(
                bad(
                    Status::Fail,
                    "runtime",
                    format!(
                        "tenant {}: {} does not point at OpenClaw {} as its registry entry says",
                        r.name,
                        paths.tenant_runtime_link(&r.name).display(),
                        r.runtime
                    ),
                    "`sudo ocusers repair`",
                ),
                &r.name,
            ));
        }
    }
    out
}

/// The reverse proxy, when public access is on: installed, running,
/// accepting its configuration, and routing every tenant's host names.
fn proxy(paths: &Paths, sd: Option<&dyn Systemd>, records: &[Record]) -> Vec<Check> {
    let cfg = match HostConfig::load(paths) {
        Ok(c) => c.proxy,
        Err(_) => return Vec::new(), // the ports check reports the config
    };
    if !cfg.enabled() {
        return vec![ok(
            "proxy",
            "public access is off ([proxy] domain unset or kind = \"none\"): gateways are reachable on loopback only",
        )];
    }
    let program = cfg.program();
    if let Err(e) = cfg.check_installed() {
        return vec![bad(
            Status::Fail,
            "proxy",
            e.to_string(),
            format!("`apt install {program}`, or set [proxy] kind in /etc/ocusers/ocusers.toml"),
        )];
    }
    let mut out = Vec::new();
    if let Some(sd) = sd {
        let unit = cfg.unit();
        match sd.unit(&unit) {
            Ok(u) if u.is_active() => {}
            Ok(u) => out.push(bad(
                Status::Fail,
                "proxy",
                format!(
                    "{unit} is {}: no tenant is reachable from outside",
                    u.active_state
                ),
                format!("`systemctl start {unit}`; `journalctl -u {unit}` says why it stopped"),
            )),
            Err(e) => out.push(bad(
                Status::Fail,
                "proxy",
                format!("{unit}: {e:#}"),
                format!("`apt install {program}`"),
            )),
        }
    }
    if !paths.host_path(cfg.include()).exists() {
        out.push(bad(
            Status::Fail,
            "proxy",
            format!("{} is missing", cfg.include().display()),
            "`sudo ocusers proxy sync`",
        ));
    } else if let Err(e) = cfg.validate() {
        out.push(bad(
            Status::Fail,
            "proxy",
            e.to_string(),
            format!("fix the file {program} names; then `sudo ocusers proxy sync`"),
        ));
    }
    // Caddy's admin API on TCP lets any local process (a tenant's agent)
    // replace the proxy's configuration.
    let admin = crate::proxy::admin::problem(&cfg);
    if let Some((detail, fix)) = &admin {
        out.push(bad(Status::Fail, "proxy_admin", detail, fix));
    }
    // On-demand certificates only for the names ocusers routes.
    let ask_unit = "ocusers-ask.socket";
    let ask_missing = cfg.kind == crate::proxy::Kind::Caddy
        && cfg.tls == crate::proxy::Tls::Acme
        && sd.is_some_and(|sd| sd.active_state(ask_unit).map_or(true, |s| s != "active"));
    if ask_missing {
        out.push(bad(
            Status::Fail,
            "proxy_ask",
            format!(
                "tls = \"acme\" gets certificates on demand, but {ask_unit} is not listening: Caddy would get one for any name that points here"
            ),
            format!(
                "`systemctl enable --now {ask_unit}` and `on_demand_tls {{ ask {} }}` in the global options of {}",
                crate::proxy::ask::URL,
                cfg.caddy_config.display()
            ),
        ));
    }
    let routed: BTreeSet<(String, String)> = crate::proxy::links(paths)
        .unwrap_or_default()
        .into_iter()
        .collect();
    for r in records {
        for host in cfg.hosts_of(r) {
            if !routed.contains(&(host.clone(), r.name.to_string())) {
                out.push(about(
                    bad(
                        Status::Fail,
                        "proxy",
                        format!("{host} is not routed to tenant {}", r.name),
                        "`sudo ocusers proxy sync`",
                    ),
                    &r.name,
                ));
            }
        }
    }
    if out.is_empty() {
        out.push(ok(
            "proxy",
            format!(
                "{program} is running and routes {} tenants under *.{}",
                records.len(),
                cfg.domain
            ),
        ));
    }
    if admin.is_none() && cfg.kind == crate::proxy::Kind::Caddy {
        out.push(ok("proxy_admin", crate::proxy::admin::describe(&cfg)));
    }
    out
}

fn port_pool(paths: &Paths, records: &[Record]) -> Vec<Check> {
    let cfg = match HostConfig::load(paths) {
        Ok(c) => c,
        Err(e) => {
            return vec![bad(
                Status::Fail,
                "ports",
                format!("{e:#}"),
                "fix /etc/ocusers/ocusers.toml",
            )];
        }
    };
    let live = ports::live_listeners(paths.root()).unwrap_or_default();
    let range = std::fs::read_to_string(paths.root().join("proc/sys/net/ipv4/ip_local_port_range"))
        .ok()
        .and_then(|t| ports::parse_local_port_range(&t));
    pool_checks(&cfg.ports, records, &live, range)
}

/// The pool's checks: blocks left (also as `blocks_left`), and a warning
/// when the kernel's ephemeral range (`range`, if readable) overlaps it.
fn pool_checks(
    p: &crate::config::PortsConfig,
    records: &[Record],
    live: &std::collections::BTreeSet<u16>,
    range: Option<(u16, u16)>,
) -> Vec<Check> {
    let free = ports::free_blocks(p, records, live);
    let total = ports::pool_blocks(p);
    let mut c = if free == 0 {
        bad(
            Status::Warn,
            "ports",
            format!(
                "no free port block left in {}-{} ({total} blocks of {})",
                p.start, p.end, p.block
            ),
            "widen [ports] in /etc/ocusers/ocusers.toml before adding tenants",
        )
    } else {
        ok(
            "ports",
            format!(
                "{free} of {total} port blocks left in {}-{} (blocks of {})",
                p.start, p.end, p.block
            ),
        )
    };
    c.blocks_left = Some(free);
    let mut out = vec![c];
    if let Some((lo, hi)) = range.and_then(|r| ports::ephemeral_overlap(p, r)) {
        let (a, b) = range.unwrap_or_default();
        out.push(bad(
            Status::Warn,
            "ports",
            format!(
                "the kernel's ephemeral range {a}-{b} (net.ipv4.ip_local_port_range) overlaps the port pool at {lo}-{hi}: an outgoing connection can take a gateway's port"
            ),
            "move [ports] in /etc/ocusers/ocusers.toml out of it, or narrow the range (sysctl net.ipv4.ip_local_port_range), or reserve the pool (net.ipv4.ip_local_reserved_ports)",
        ));
    }
    out
}

fn disk(paths: &Paths) -> Vec<Check> {
    let mut out = Vec::new();
    for (what, dir) in [
        ("tenant state", paths.state_parent()),
        ("runtimes and backups", paths.lib_dir()),
    ] {
        // The nearest existing directory.
        let mut d = dir.as_path();
        while !d.exists() {
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        match nix::sys::statvfs::statvfs(d) {
            Ok(s) => {
                let avail = s.blocks_available() * s.fragment_size();
                let text = format!(
                    "{} free for {what} ({})",
                    crate::display::human_bytes(Some(avail)),
                    dir.display()
                );
                out.push(if avail < GIB {
                    bad(
                        Status::Fail,
                        "disk",
                        text,
                        "free space: prune runtimes (`ocusers runtime prune`), move old backups",
                    )
                } else if avail < 3 * GIB {
                    bad(
                        Status::Warn,
                        "disk",
                        text,
                        "a runtime takes about 850 MB and each tenant's state grows: free some space",
                    )
                } else {
                    ok("disk", text)
                });
            }
            Err(e) => out.push(bad(
                Status::Warn,
                "disk",
                format!("cannot read free space of {}: {e}", d.display()),
                "check the filesystem",
            )),
        }
    }
    out
}

fn units(paths: &Paths, sd: &dyn Systemd, records: &[Record]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut failed = 0;
    for r in records {
        let unit = paths::unit_name(&r.name);
        let sleeper = crate::sleep::is_sleeper(paths, &r.name);
        match sd.unit(&unit) {
            Ok(u) if u.active_state == "failed" => {
                failed += 1;
                out.push(about(
                    bad(
                        Status::Fail,
                        "unit",
                        format!("{unit} is in failed state (result {})", u.result),
                        format!(
                            "read `journalctl -u {unit}`, fix the cause, then `sudo ocusers restart {}` (or `sudo ocusers repair`)",
                            r.name
                        ),
                    ),
                    &r.name,
                ));
            }
            // A sleeper (idle_stop) is left out of openclaw.target on
            // purpose and stopped while it sleeps: not broken. Stopped with
            // its socket (`ocusers stop`), it is stopped like any tenant.
            Ok(u) if sleeper && u.is_active() => {}
            Ok(u) if crate::sleep::sleeping(paths, sd, &r.name, &u.active_state) => {}
            Ok(_) if sleeper => out.push(about(
                bad(
                    Status::Warn,
                    "unit",
                    format!(
                        "{unit} sleeps with idle_stop but its socket {} does not listen (stopped)",
                        paths::proxy_socket_unit(&r.name)
                    ),
                    format!("`sudo ocusers start {}` if it should run", r.name),
                ),
                &r.name,
            )),
            Ok(u) if u.unit_file_state != "enabled" => out.push(about(
                bad(
                    Status::Fail,
                    "unit",
                    format!("{unit} is {} (not started at boot)", u.unit_file_state),
                    "`sudo ocusers repair`",
                ),
                &r.name,
            )),
            Ok(u) if !u.is_active() => out.push(about(
                bad(
                    Status::Warn,
                    "unit",
                    format!("{unit} is {} (stopped)", u.active_state),
                    format!("`sudo ocusers start {}` if it should run", r.name),
                ),
                &r.name,
            )),
            Ok(_) => {}
            Err(e) => out.push(about(
                bad(Status::Fail, "unit", format!("{e:#}"), "check systemd"),
                &r.name,
            )),
        }
    }
    if failed == 0 {
        out.push(ok(
            "unit",
            format!("no tenant unit in failed state ({} tenants)", records.len()),
        ));
    }
    out
}

mod tenants;

use tenants::{STATE_SCAN_BUDGET, orphans};
pub use tenants::{origins, orphan_names, state_hazards, tenant_files};

#[cfg(test)]
mod tests;

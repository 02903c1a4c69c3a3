//! Typed errors of the library, and how the binary prints them.
use std::path::PathBuf;

/// Errors that callers (and the exit status) care to tell apart. Lower-level
/// failures travel as `anyhow::Error` with context naming the path, unit or
/// tenant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid tenant name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("`ocusers {command}` must run as root: try `sudo ocusers {command} ...`")]
    NotRoot { command: String },
    #[error("unknown tier {tier:?}: choose one of {available} (tiers live in {dirs})")]
    UnknownTier {
        tier: String,
        available: String,
        dirs: String,
    },
    #[error(
        "port {port} is outside the port pool {start}-{end}: pick a port in the pool or change [ports] in /etc/ocusers/ocusers.toml"
    )]
    PortOutsidePool { port: u16, start: u16, end: u16 },
    #[error(
        "port {port} is not the start of a port block (blocks start every {block} ports from {start}): use a port like {suggest}"
    )]
    PortNotBlockStart {
        port: u16,
        block: u16,
        start: u16,
        suggest: u16,
    },
    #[error("port {port} is taken: {by}; pick another port or leave --port out to allocate one")]
    PortTaken { port: u16, by: String },
    #[error(
        "no free port block left in the pool {start}-{end} (blocks of {block}): widen [ports] in /etc/ocusers/ocusers.toml"
    )]
    PoolExhausted { start: u16, end: u16, block: u16 },
    #[error("no tenant named {name:?}: see `ocusers list`")]
    UnknownTenant { name: String },
    #[error("no OpenClaw runtime is installed: run `sudo ocusers runtime install` first")]
    NoRuntime,
    #[error(
        "OpenClaw runtime {version} is not installed: run `sudo ocusers runtime install --version {version}`"
    )]
    RuntimeMissing { version: String },
    #[error(
        "npm is not installed, and ocusers uses it to fetch the OpenClaw runtime: install it with `sudo apt install npm`"
    )]
    NpmMissing,
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error(
        "user {user:?} already exists and is not an ocusers tenant: choose another tenant name"
    )]
    ForeignUser { user: String },
    #[error("tenant {name:?} already exists with {what}; {fix}")]
    Conflict {
        name: String,
        what: String,
        /// What to run instead, e.g. `ocusers domain add NAME HOST`.
        fix: String,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error(
        "cannot load the tenant firewall rules ({why}), and /etc/ocusers/ocusers.toml says [isolation] firewall = \"required\": install nftables and run on a host (not a container) that allows nft, or set firewall = \"auto\""
    )]
    FirewallUnavailable { why: String },
    #[error("audit found {count} problem(s), listed above with their fixes")]
    AuditFailed { count: usize },
    #[error(
        "not enough memory for {what}: the tenants' MemoryMax would total {committed}, above {ratio} x RAM {ram} = {limit} ([capacity] overcommit in /etc/ocusers/ocusers.toml); remove or shrink tenants, raise the ratio, or pass --force"
    )]
    OverCapacity {
        what: String,
        committed: String,
        ratio: f64,
        ram: String,
        limit: String,
    },
    #[error(
        "gateway of tenant {name:?} did not become ready within {seconds} s ({detail}); see `journalctl -u openclaw@{name}`"
    )]
    NotReady {
        name: String,
        seconds: u64,
        detail: String,
    },
    #[error(
        "public access is configured for {kind} ([proxy] in /etc/ocusers/ocusers.toml), but {kind} is not installed: install it with `sudo apt install {kind}`, or set [proxy] kind = \"none\""
    )]
    ProxyMissing { kind: String },
    #[error(
        "{proxy} rejects its configuration, so nothing was changed and the running {proxy} was not reloaded: {message}"
    )]
    ProxyInvalid { proxy: String, message: String },
    #[error(
        "{config} does not include ocusers' routes: add the line `{line}` to it (ocusers never edits it), then run `sudo ocusers proxy sync`"
    )]
    ProxyNotIncluded { config: PathBuf, line: String },
    #[error("invalid domain {domain:?}: {reason}")]
    BadDomain { domain: String, reason: String },
    #[error("domain {domain:?} already routes to tenant {tenant:?}: choose another domain")]
    DomainTaken { domain: String, tenant: String },
}

impl Error {
    /// Errors the user made on the command line exit with status 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::UnknownTier { .. }
                | Error::PortOutsidePool { .. }
                | Error::PortNotBlockStart { .. }
                | Error::BadDomain { .. }
        )
    }
}

/// `top: cause: deeper cause`, on one line.
pub fn render_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        if i > 0 {
            if out.ends_with(&text) {
                continue;
            }
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// 2 for usage errors, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Error>() {
        Some(e) if e.is_usage() => 2,
        _ => 1,
    }
}

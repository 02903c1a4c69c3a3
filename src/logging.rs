//! Logs go to stderr through `tracing`; `-v` raises the level, `OCUSERS_LOG`
//! overrides it.
use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

/// Target of the change records that also go to the journal.
pub const AUDIT: &str = "ocusers::audit";

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("OCUSERS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("ocusers={default}")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not in a file, a pipe or CI's log.
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .with_filter(filter);
    // No journal (a container without journald, a test): stderr only.
    let journal = tracing_journald::layer().ok().map(|l| {
        l.with_syslog_identifier("ocusers".into())
            .with_field_prefix(Some("OCUSERS".into()))
            .with_filter(Targets::new().with_target(AUDIT, tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(journal)
        .try_init();
}

/// Record a change in the journal with structured fields (OCUSERS_TENANT,
/// OCUSERS_ACTION, OCUSERS_STEP, OCUSERS_BY; never secrets), and at info
/// level on stderr. `ocusers history` reads them back (only root's).
pub fn record(tenant: &str, action: &str, step: &str) {
    let by = invoker();
    tracing::info!(target: AUDIT, tenant, action, step, by = %by, "ocusers {action} {tenant}: {step}");
}

/// Who runs this command: the admin behind sudo (sudo sets SUDO_USER), else
/// `root` or `uid N`.
pub fn invoker() -> String {
    let uid = nix::unistd::getuid().as_raw();
    match std::env::var("SUDO_USER") {
        Ok(u) if uid == 0 && !u.is_empty() && u.len() <= 64 && !u.contains(char::is_control) => u,
        _ if uid == 0 => "root".into(),
        _ => format!("uid {uid}"),
    }
}

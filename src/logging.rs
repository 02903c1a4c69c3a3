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
/// OCUSERS_ACTION, OCUSERS_STEP; never secrets), and at info level on stderr.
pub fn record(tenant: &str, action: &str, step: &str) {
    tracing::info!(target: AUDIT, tenant, action, step, "ocusers {action} {tenant}: {step}");
}

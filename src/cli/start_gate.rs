//! `ocusers start-gate NAME`: openclaw@.service's `ExecStartPre=+`. Waits
//! for the tenant's turn to start ([`crate::startgate`]) and says in the
//! journal whom it waited for. Always exits 0: the gate only ever delays a
//! start, it never fails one.
use clap::Args;

use crate::paths::Paths;
use crate::startgate::{self, Turn};
use crate::systemd::{DbusSystemd, Systemd};
use crate::tenant::TenantName;

#[derive(Debug, Args)]
pub struct StartGateArgs {
    /// The tenant (the unit's instance name).
    pub name: String,
}

pub fn run(paths: &Paths, args: StartGateArgs) -> anyhow::Result<()> {
    let result = TenantName::parse(&args.name)
        .map_err(anyhow::Error::from)
        .and_then(|name| {
            let sd = DbusSystemd::connect().ok();
            startgate::wait_turn(paths, &name, sd.as_ref().map(|s| s as &dyn Systemd))
        });
    match result {
        Ok(p) if p.behind.is_empty() => {}
        Ok(p) => println!(
            "start gate: {} {:.1} s behind {} ({} at a time{})",
            args.name,
            p.waited.as_secs_f64(),
            p.behind.join(", "),
            p.batch,
            if p.turn == Turn::Overdue {
                "; waited the longest allowed, [tenants] ready_timeout"
            } else {
                ""
            }
        ),
        Err(e) => println!(
            "start gate: {} starts without waiting: {}",
            args.name,
            crate::error::render_chain(&e)
        ),
    }
    Ok(())
}

//! The command line: clap definitions here, one file per subcommand.
//!
//! A subcommand's file holds its arguments and its printing, takes the host
//! lock and picks the exit code; what it does is a call into the library
//! (`crate::provision` for changes). No file here imports another one
//! (shared bits live in this file: `print_plan`, `dry_run_done`,
//! `systemd_if`, `print_json`). A new command: a file here, a variant of
//! [`Command`] and its arm in [`run`].
use clap::{Args, Parser, Subcommand};

use crate::paths::Paths;

mod add;
mod apply;
mod audit;
mod backup;
mod devices;
mod doctor;
mod domain;
mod exec;
mod export;
mod history;
mod internal;
mod invite;
mod lifecycle;
mod list;
mod logs;
mod metrics;
mod proxy;
mod remove;
mod repair;
mod restore;
mod runtime;
mod secret;
mod set;
mod start_gate;
mod status;
mod token;
mod upgrade;

#[derive(Debug, Parser)]
#[command(
    name = "ocusers",
    version,
    about = "One hardened OpenClaw gateway per tenant: a system user, a systemd unit, a port block and a secrets file each",
    long_about = "ocusers turns one Linux host into a home for many OpenClaw gateways. Each tenant gets a \
dedicated system user (oc-NAME), a private state directory (/var/lib/openclaw/NAME), a root-only secrets file \
(/etc/ocusers/tenants/NAME.env), a port block on loopback and a hardened instance of openclaw@.service with \
cgroup CPU, memory and task limits. systemd supervises: use `systemctl status openclaw@NAME` and \
`journalctl -u openclaw@NAME` day to day.",
    after_help = "Changing commands must run as root. Read commands take --json."
)]
pub struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a tenant and start its gateway: user, state, config, token, port block, unit.
    Add(add::AddArgs),
    /// Stop a tenant's gateway and remove the tenant (state archived unless --purge).
    Remove(remove::RemoveArgs),
    /// One line per tenant: state, readiness, port, tier, memory, uptime.
    List(JsonArg),
    /// Details of one tenant or all, read from systemd and the gateway.
    Status(status::StatusArgs),
    /// Start tenants' gateways and wait until they are ready (like `systemctl start openclaw@NAME`).
    Start(lifecycle::Target),
    /// Stop tenants' gateways (like `systemctl stop openclaw@NAME`).
    Stop(lifecycle::Target),
    /// Restart tenants' gateways and wait until they are ready.
    Restart(lifecycle::Target),
    /// Converge the host to a TOML file of tenants (add, update limits live, --prune removes).
    Apply(apply::ApplyArgs),
    /// Change one tenant's tier or limits (live, through apply's plan), without an apply file.
    Set(set::SetArgs),
    /// Add or remove an extra public host name of one tenant (routes through the proxy).
    #[command(subcommand)]
    Domain(domain::DomainCommand),
    /// Print this host's tenants as a file `ocusers apply` takes (no secret values).
    Export(JsonArg),
    /// Prometheus metrics of every tenant and the host's committed memory.
    Metrics(metrics::MetricsArgs),
    /// Install and list OpenClaw runtimes (Node + the openclaw package).
    #[command(subcommand)]
    Runtime(runtime::RuntimeCommand),
    /// Public access through the reverse proxy (Caddy or nginx): sync and show its routes.
    #[command(subcommand)]
    Proxy(proxy::ProxyCommand),
    /// Check the boundary between tenants: files, tokens, ports, rules, exposure, and live probes.
    Audit(audit::AuditArgs),
    /// One probe of `ocusers audit`, run as a tenant (internal).
    #[command(hide = true)]
    AuditProbe(crate::audit::probe::ProbeArgs),
    /// A tenant's secrets (provider keys): set from stdin or a file, unset, list names.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// The tenant's gateway token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run the tenant's own OpenClaw CLI as the tenant, in its gateway's /tmp and sandbox.
    Exec(exec::ExecArgs),
    /// A single-use, expiring link that signs one browser in to a tenant's Control UI; list, revoke.
    Invite(invite::InviteArgs),
    /// Answer one connection of ocusers-invite.socket (internal).
    #[command(hide = true)]
    InviteServe,
    /// Wait for this tenant's turn to start (ExecStartPre of openclaw@.service; internal).
    #[command(hide = true)]
    StartGate(start_gate::StartGateArgs),
    /// A tenant's paired devices and pending pairing requests: list, approve, revoke.
    Devices(devices::DevicesArgs),
    /// The tenant's journal (journalctl -u openclaw@NAME).
    Logs(logs::LogsArgs),
    /// ocusers' change trail (who, when, what), only the entries root wrote.
    History(history::HistoryArgs),
    /// Archive tenants' state and registry entry (consistent while running); `backup verify FILE` checks one.
    Backup(backup::BackupArgs),
    /// Recreate a tenant from a backup, on this or a fresh host.
    Restore(restore::RestoreArgs),
    /// Move tenants to another OpenClaw runtime, N at a time, each back if it is not ready.
    Upgrade(upgrade::UpgradeArgs),
    /// Move the tenants of the last upgrade back to the runtime they came from.
    Rollback(upgrade::RollbackArgs),
    /// Check the host and every tenant; each problem with its fix.
    Doctor(JsonArg),
    /// Reconcile tenants whose files, user, unit and registry entry disagree.
    Repair(repair::RepairArgs),
    /// The tenant-side halves of backup and restore, run as the tenant (internal).
    #[command(subcommand, hide = true)]
    Internal(internal::InternalCommand),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON (shape documented in README.md, "Output").
    #[arg(long)]
    pub json: bool,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let paths = Paths::from_env();
    if matches!(
        cli.command,
        Command::List(_) | Command::Status(_) | Command::Export(_) | Command::Metrics(_)
    ) {
        crate::process::die_quietly_on_closed_stdout();
    }
    match cli.command {
        Command::Add(args) => add::run(&paths, args),
        Command::Remove(args) => remove::run(&paths, args),
        Command::List(args) => list::run(&paths, args),
        Command::Status(args) => status::run(&paths, args),
        Command::Start(t) => lifecycle::run(&paths, lifecycle::Action::Start, t),
        Command::Stop(t) => lifecycle::run(&paths, lifecycle::Action::Stop, t),
        Command::Restart(t) => lifecycle::run(&paths, lifecycle::Action::Restart, t),
        Command::Runtime(cmd) => runtime::run(&paths, cmd),
        Command::Apply(args) => apply::run(&paths, args),
        Command::Set(args) => set::run(&paths, args),
        Command::Domain(cmd) => domain::run(&paths, cmd),
        Command::Export(args) => export::run(&paths, args),
        Command::Metrics(args) => metrics::run(&paths, args),
        Command::Proxy(cmd) => proxy::run(&paths, cmd),
        Command::Audit(args) => audit::run(&paths, args),
        Command::AuditProbe(args) => std::process::exit(crate::audit::probe::run_probe(&args)),
        Command::Secret(cmd) => secret::run(&paths, cmd),
        Command::History(args) => history::run(args),
        Command::Token(cmd) => token::run(&paths, cmd),
        Command::Exec(args) => {
            let code = exec::run(&paths, args)?;
            if code != 0 {
                // The tenant command's own status, as `ssh` or `sudo` would.
                std::process::exit(i32::from(code));
            }
            Ok(())
        }
        Command::Invite(args) => invite::run(&paths, args),
        Command::InviteServe => invite::serve(&paths),
        Command::StartGate(args) => start_gate::run(&paths, args),
        Command::Devices(args) => devices::run(&paths, args),
        Command::Logs(args) => logs::run(&paths, args),
        Command::Backup(args) => backup::run(&paths, args),
        Command::Restore(args) => restore::run(&paths, args),
        Command::Upgrade(args) => upgrade::run(&paths, args),
        Command::Rollback(args) => upgrade::rollback(&paths, args),
        Command::Doctor(args) => doctor::run(&paths, args),
        Command::Repair(args) => repair::run(&paths, args),
        Command::Internal(cmd) => internal::run(cmd),
    }
}

/// The clap command, for the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// What `--dry-run` prints: the title, each step marked done or to do, and
/// that nothing changed.
fn print_plan(title: &str, plan: &crate::plan::Plan<'_>) -> anyhow::Result<()> {
    println!("{title}");
    print!("{}", plan.describe()?);
    dry_run_done();
    Ok(())
}

/// The last line of every `--dry-run`.
fn dry_run_done() {
    println!("dry run: nothing changed");
}

/// The system's systemd over D-Bus, opened only when `needed` (a read of
/// no tenant, or a change that starts nothing, works without D-Bus).
fn systemd_if(needed: bool) -> anyhow::Result<Option<crate::systemd::DbusSystemd>> {
    Ok(if needed {
        Some(crate::systemd::DbusSystemd::connect()?)
    } else {
        None
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::tenant::TenantName;

    /// Every command where a tenant NAME shares a position with
    /// subcommand words (`ocusers invite list NAME` beside `ocusers invite
    /// NAME`), with those words, from clap's own tree.
    fn clashing_words(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        let takes_name = cmd.get_positionals().any(|a| a.get_id().as_str() == "name");
        for sub in cmd.get_subcommands() {
            if takes_name {
                for word in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                    out.push((path.to_string(), word.to_string()));
                }
            }
            clashing_words(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn no_new_tenant_may_be_named_like_a_subcommand_where_a_name_stands() {
        let mut cmd = super::command();
        cmd.build();
        let mut found = Vec::new();
        clashing_words(&cmd, "ocusers", &mut found);
        let commands: BTreeSet<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
        for expected in ["ocusers invite", "ocusers devices", "ocusers backup"] {
            assert!(commands.contains(expected), "{commands:?}");
        }
        for (command, word) in &found {
            let refused = match TenantName::parse(word) {
                Err(_) => true,
                Ok(name) => name.check_new().is_err(),
            };
            assert!(
                refused,
                "`{command} {word}` is a subcommand, so a new tenant named {word:?} must be refused"
            );
        }
        // And the list of such words names no word clap does not read so.
        let words: BTreeSet<&str> = found.iter().map(|(_, w)| w.as_str()).collect();
        for word in TenantName::command_words() {
            assert!(
                words.contains(word),
                "{word} is no longer a clashing subcommand"
            );
        }
    }
}

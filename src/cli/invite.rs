//! `ocusers invite NAME [--expires 24h] [--app] [--json]`, `invite list NAME`,
//! `invite revoke NAME ID`, and the hidden `invite-serve` of
//! `ocusers-invite@.service` (see `crate::invite`).
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::print_json;
use crate::invite::{self, mint, store};
use crate::paths::Paths;
use crate::privilege;
use crate::tenant::registered;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct InviteArgs {
    #[command(subcommand)]
    pub action: Option<InviteAction>,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Tenant name.
    #[arg(required = true)]
    pub name: Option<String>,
    /// How long the link stays usable (like 30m, 24h, 7d; at most 30d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub expires: Duration,
    /// Print a setup code for the OpenClaw phone apps instead of a browser link.
    #[arg(long)]
    pub app: bool,
    /// The proxy's public HTTPS port (default: `[proxy] public_port` of
    /// ocusers.toml, 443 unless set).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print JSON: {"id", "url", "expires"} (with --app: {"setupCode", "gatewayUrl"}).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InviteAction {
    /// The open invites of a tenant (ids and expiry; the links are not stored).
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an open invite: its link is refused from now on.
    Revoke { name: String, id: String },
}

pub fn run(paths: &Paths, args: InviteArgs) -> Result<()> {
    match args.action {
        Some(InviteAction::List { name, json }) => {
            let record = registered(paths, &name)?;
            privilege::require_root("invite list")?;
            let now = store::now();
            let all: Vec<invite::Shown> = invite::store(paths)
                .list(Some(record.name.as_str()))?
                .iter()
                .map(|i| invite::shown(i, None, now))
                .collect();
            if json {
                return print_json(&all);
            }
            if all.is_empty() {
                println!("no open invites for {}", record.name);
            }
            for i in all {
                println!(
                    "{}  expires {}{}",
                    i.id,
                    i.expires,
                    if i.expired { " (expired)" } else { "" }
                );
            }
            Ok(())
        }
        Some(InviteAction::Revoke { name, id }) => {
            let record = registered(paths, &name)?;
            privilege::require_root("invite revoke")?;
            if !invite::store(paths).revoke(record.name.as_str(), &id)? {
                bail!(
                    "{} has no open invite {id:?}: see `ocusers invite list {}`",
                    record.name,
                    record.name
                );
            }
            crate::logging::record(
                record.name.as_str(),
                "invite-revoke",
                &format!("invite {id} revoked"),
            );
            println!("invite {id} of {} revoked", record.name);
            Ok(())
        }
        None => create(paths, args.create),
    }
}

fn create(paths: &Paths, args: CreateArgs) -> Result<()> {
    let record = registered(paths, args.name.as_deref().unwrap_or_default())?;
    privilege::require_root("invite")?;
    let port = match args.port {
        Some(p) => p,
        None => crate::config::HostConfig::load(paths)?.proxy.public_port,
    };
    if args.app {
        let host = invite::public_host(paths, &record.name)?;
        let url = invite::origin(&host, port).replacen("https://", "wss://", 1);
        let code = mint::setup_code(paths, &record.name, &url)?;
        crate::logging::record(
            record.name.as_str(),
            "invite",
            "setup code for the phone apps issued",
        );
        if args.json {
            return print_json(&code);
        }
        println!("{}", code.setup_code);
        print_qr(&code.setup_code);
        eprintln!(
            "Setup code for {url}: paste it into the OpenClaw app (Settings, Gateway, Setup code). It works once, for a short time."
        );
        return Ok(());
    }
    let (shown, _) = invite::create(paths, &record.name, args.expires, port)?;
    let url = shown.url.clone().unwrap_or_default();
    if args.json {
        return print_json(&serde_json::json!({
            "id": shown.id,
            "url": url,
            "expires": shown.expires,
        }));
    }
    println!("{url}");
    print_qr(&url);
    eprintln!(
        "Send this link to the person {} is for: it signs one browser in, once, until {} (invite {}; `ocusers invite revoke {} {}` to cancel).",
        record.name, shown.expires, shown.id, record.name, shown.id
    );
    Ok(())
}

/// A QR code of `data` below it, when stdout is a terminal.
fn print_qr(data: &str) {
    if !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        return;
    }
    match invite::qr_text(data) {
        Ok(q) => println!("{q}"),
        Err(e) => eprintln!("(no QR code: {e})"),
    }
}

/// `ocusers invite-serve`: one connection of ocusers-invite.socket.
pub fn serve(paths: &Paths) -> Result<()> {
    invite::serve(paths)
}

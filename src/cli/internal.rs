//! `ocusers internal pack-state DIR` / `unpack-state DIR`: the halves of
//! `backup` and `restore` that touch a tenant's files, run by ocusers
//! itself as the tenant inside its sandbox (see `crate::backup::helper`),
//! never by hand. They refuse to run as root. `wait-ready` and
//! `idle-check` are the tenant's halves of scale-to-zero (`crate::sleep`).
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::backup::{self, ConfigFix, tenant_side};

#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// Write the state directory DIR as a tar stream to stdout.
    PackState { dir: PathBuf },
    /// Unpack a tar stream of state members from stdin into DIR.
    UnpackState {
        dir: PathBuf,
        /// In openclaw.json, replace this state directory ...
        #[arg(long, requires = "home_to")]
        home_from: Option<String>,
        /// ... by this one.
        #[arg(long, requires = "home_from")]
        home_to: Option<String>,
        /// Set gateway.port in openclaw.json.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Wait until the gateway on 127.0.0.1:PORT answers /readyz (ExecStartPre
    /// of a sleeping tenant's relay, as the tenant); exit 1 at the timeout.
    WaitReady {
        #[arg(long)]
        port: u16,
        /// Seconds.
        #[arg(long)]
        timeout: u64,
    },
    /// Print, as JSON, the channels and cron jobs the tenant's config (in
    /// the current directory, its state) enables (see `crate::sleep`).
    IdleCheck,
}

pub fn run(cmd: InternalCommand) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        bail!(
            "`ocusers internal` runs as a tenant, started by ocusers itself; it refuses to run as root"
        );
    }
    match cmd {
        InternalCommand::PackState { dir } => {
            // The pipe itself, not Rust's line-buffered stdout: tar data
            // is full of newlines.
            use std::os::fd::AsFd;
            let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(fd));
            tenant_side::pack(&dir, &mut out, backup::EXCLUDED, &mut |l| eprintln!("{l}"))?;
            out.flush()?;
            Ok(())
        }
        InternalCommand::UnpackState {
            dir,
            home_from,
            home_to,
            port,
        } => {
            let fix = ConfigFix {
                home: home_from.zip(home_to),
                port,
            };
            let stdin = std::io::stdin().lock();
            tenant_side::unpack(&dir, std::io::BufReader::new(stdin), None, &fix)?;
            Ok(())
        }
        InternalCommand::WaitReady { port, timeout } => {
            if crate::sleep::wait_ready(port, std::time::Duration::from_secs(timeout)) {
                Ok(())
            } else {
                bail!("the gateway on port {port} was not ready after {timeout} s")
            }
        }
        InternalCommand::IdleCheck => {
            let found = crate::sleep::inspect(&std::env::current_dir()?);
            println!("{}", serde_json::to_string(&found)?);
            Ok(())
        }
    }
}

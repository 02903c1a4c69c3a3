//! `ocusers metrics [--textfile PATH]`
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::capacity;
use crate::config::HostConfig;
use crate::metrics::{self, Host};
use crate::paths::Paths;
use crate::status;
use crate::tenant;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the metrics atomically to this file (for node_exporter's textfile
    /// collector, e.g. /var/lib/prometheus/node-exporter/ocusers.prom) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

pub fn run(paths: &Paths, args: MetricsArgs) -> Result<()> {
    let cfg = HostConfig::load(paths)?;
    let records = tenant::list(paths)?;
    let sd = super::systemd_if(!records.is_empty())?;
    let statuses = status::collect_all(paths, sd.as_ref().map(|s| s as _), &records)?;
    let text = metrics::render(
        &statuses,
        Host {
            ram: capacity::host_ram(paths)?,
            overcommit: cfg.capacity.overcommit,
        },
    );
    match args.textfile {
        Some(path) => metrics::write_textfile(&path, &text),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

//! `ocusers history [NAME] [--json]`: ocusers' change journal, only the
//! entries root wrote (see [`crate::history`]).
use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::print_json;
use crate::history;
use crate::tenant::TenantName;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this tenant's changes (a removed tenant's too); every change if left out.
    pub name: Option<String>,
    /// Print JSON (shape documented in README.md, "Output").
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: HistoryArgs) -> Result<()> {
    let name = args.name.as_deref().map(TenantName::parse).transpose()?;
    let entries = history::read(name.as_ref())?;
    if args.json {
        print_json(&json!({ "entries": entries }))
    } else {
        print!("{}", history::render(&entries));
        Ok(())
    }
}

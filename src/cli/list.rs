//! `ocusers list`
use anyhow::Result;
use serde_json::json;

use super::{JsonArg, print_json};
use crate::display::{human_bytes, human_duration};
use crate::paths::Paths;
use crate::status;
use crate::tenant;

pub fn run(paths: &Paths, args: JsonArg) -> Result<()> {
    let records = tenant::list(paths)?;
    let sd = super::systemd_if(!records.is_empty())?;
    let statuses = status::collect_all(paths, sd.as_ref().map(|s| s as _), &records)?;
    if args.json {
        return print_json(&json!({ "tenants": statuses }));
    }
    if statuses.is_empty() {
        println!("no tenants yet: add one with `sudo ocusers add NAME`");
        return Ok(());
    }
    let unknown = statuses.iter().any(|s| s.ready.is_none());
    println!(
        "{:<20} {:<10} {:<6} {:<6} {:<9} {:>8} {:>8} {:>8}",
        "NAME", "STATE", "READY", "PORT", "TIER", "MEMORY", "MAX", "UPTIME"
    );
    for s in &statuses {
        println!(
            "{:<20} {:<10} {:<6} {:<6} {:<9} {:>8} {:>8} {:>8}",
            s.name,
            s.state,
            match s.ready {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            },
            s.port,
            s.tier,
            human_bytes(s.memory.current),
            human_bytes(s.memory.max),
            human_duration(s.uptime_sec),
        );
    }
    if unknown {
        println!("READY ?: {}", crate::health::ONLY_ROOT);
    }
    Ok(())
}

//! `ocusers doctor [--json]`.
use anyhow::{Result, bail};
use serde_json::json;

use super::JsonArg;
use super::print_json;
use crate::doctor::{self, Status};
use crate::paths::Paths;
use crate::systemd::DbusSystemd;

pub fn run(paths: &Paths, args: JsonArg) -> Result<()> {
    let sd = DbusSystemd::connect();
    let checks = doctor::run(paths, sd.as_ref());
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    if args.json {
        print_json(
            &json!({ "ok": fails == 0, "failures": fails, "warnings": warns, "checks": checks }),
        )?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("[{mark}] {:<8} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                println!("         fix: {fix}");
            }
        }
    }
    if fails > 0 {
        bail!("doctor found {fails} problem(s) and {warns} warning(s); each has its fix above");
    }
    if !args.json {
        println!("doctor: no problems ({warns} warning(s))");
    }
    Ok(())
}

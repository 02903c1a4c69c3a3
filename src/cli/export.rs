//! `ocusers export [--json]`: the host's tenants as a file `ocusers apply`
//! takes (tier, domains, limit overrides); secret values are never exported.
use anyhow::Result;

use super::{JsonArg, print_json};
use crate::manifest::{self, Manifest, TenantSpec};
use crate::paths::Paths;
use crate::secrets::EnvFile;
use crate::tenant;

pub fn run(paths: &Paths, args: JsonArg) -> Result<()> {
    let records = tenant::list(paths)?;
    if args.json {
        let m = Manifest {
            tenants: records
                .iter()
                .map(|r| (r.name.to_string(), TenantSpec::from_record(r)))
                .collect(),
        };
        return print_json(&m);
    }
    let text = manifest::export(&records, |r| {
        match EnvFile::load(&paths.secrets_file(&r.name)) {
            Ok(Some(env)) => manifest::extra_keys(&env),
            Ok(None) => Vec::new(),
            // The env file is root-only: say so instead of guessing.
            Err(_) => vec!["(unknown: run as root to list them)".into()],
        }
    })?;
    print!("{text}");
    Ok(())
}

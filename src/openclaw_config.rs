//! The tenant's OpenClaw configuration, `$STATE/openclaw.json`, written once
//! when the tenant is created and then the tenant's own (the gateway and
//! `openclaw config set` edit it). The token is not in it: the config refers
//! to the environment variable `OPENCLAW_GATEWAY_TOKEN`, which systemd sets
//! from the root-only environment file. Nor are the public origins: three
//! `$include`s point at root-owned files outside the state that ocusers
//! keeps in step with the tenant's domains (see [`crate::proxy::origins`]).
use serde_json::json;

use crate::paths;
use crate::proxy::origins;
use crate::tenant::TenantName;

/// Loopback addresses a local reverse proxy connects from; forwarded requests
/// from anywhere else are refused by the gateway.
pub const TRUSTED_PROXIES: [&str; 2] = ["127.0.0.1", "::1"];

/// Plugins a lean tenant keeps whatever its tier lists: ocusers' invites
/// pair devices through `device-pair` (see [`crate::invite`]).
pub const REQUIRED_PLUGINS: [&str; 1] = ["device-pair"];

/// The `plugins.allow` a lean tier's `list` gives: the list with
/// [`REQUIRED_PLUGINS`], sorted, each once.
pub fn allow_list(list: &[String]) -> Vec<String> {
    let mut allow: Vec<String> = list.to_vec();
    allow.extend(REQUIRED_PLUGINS.map(String::from));
    allow.sort_unstable();
    allow.dedup();
    allow
}

/// The tenant's config. `plugins`: a lean tier's allow-list (see
/// [`crate::policy::Tier::plugins`]), written as OpenClaw's exclusive
/// `plugins.allow` with [`REQUIRED_PLUGINS`] added; `None` leaves OpenClaw's
/// defaults (every bundled default-on plugin loads).
pub fn render(name: &TenantName, port: u16, plugins: Option<&[String]>) -> String {
    let state = paths::home_dir(name).display().to_string();
    let include = |file: &str| json!({ "$include": origins::include_path(name, file) });
    let mut plugin_config = json!({
        "entries": {
            "device-pair": {
                "config": include(origins::DEVICE_PAIR),
            },
        },
    });
    if let Some(list) = plugins {
        plugin_config["allow"] = json!(allow_list(list));
    }
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
            // Root-owned, outside the state (OPENCLAW_INCLUDE_ROOTS in the
            // unit admits them); the gateway reloads them when they change.
            "publicOrigin": include(origins::PUBLIC_ORIGIN),
            "controlUi": include(origins::CONTROL_UI),
        },
        "plugins": plugin_config,
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

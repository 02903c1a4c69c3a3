//! A tenant's public origins, as its gateway must know them for a browser
//! through the proxy: `gateway.controlUi.allowedOrigins` (the Control UI's
//! WebSocket is refused, "origin not allowed", from any origin not in it),
//! `gateway.publicOrigin` (links the gateway makes) and the device-pair
//! plugin's `publicUrl` (setup codes for the phone apps).
//!
//! Root never edits the tenant's `openclaw.json` for them. The config
//! ocusers writes at `add` points at three root-owned files, one value each,
//! with OpenClaw's `$include` (`gateway.controlUi`, `gateway.publicOrigin`,
//! `plugins.entries.device-pair.config`); they live in
//! `/var/lib/ocusers/public/NAME/` (0750 root:oc-NAME, files 0640 root:oc-NAME), outside the
//! state, which the template unit admits as an include root
//! (`OPENCLAW_INCLUDE_ROOTS=/var/lib/ocusers/public/%i`). ocusers writes
//! them with an atomic rename in a directory only root can write, so the
//! tenant controls no part of those paths (threat model rule 1); the gateway
//! watches included files and applies a change without a restart (seen with
//! 2026.9.6: "config hot reload applied (gateway.controlUi.allowedOrigins)").
//! The tenant can drop the includes from its own config, which loses it its
//! own browser access and nothing else; `doctor` reports it. The values are
//! public by nature (they are the tenant's URLs), but OpenClaw's own audit
//! calls a world-readable include critical, so only the tenant's group reads
//! them (a group-readable include is a warning there).
//!
//! With public access off the files still exist (a missing include stops
//! the gateway): no allowed origins, no public URL, and the loopback origin
//! `http://127.0.0.1:PORT` as the public origin (the only one the gateway
//! has then; OpenClaw accepts plain HTTP only for loopback).
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result};
use serde_json::json;

use super::ProxyConfig;
use crate::fsutil;
use crate::paths::{self, Paths};
use crate::plan::Step;
use crate::tenant::{Record, TenantName};

/// `gateway.controlUi`: `{"allowedOrigins": [...]}`.
pub const CONTROL_UI: &str = "control-ui.json";
/// `gateway.publicOrigin`: one JSON string.
pub const PUBLIC_ORIGIN: &str = "public-origin.json";
/// `plugins.entries.device-pair.config`: `{"publicUrl": "wss://..."}`.
pub const DEVICE_PAIR: &str = "device-pair.json";
/// The three files, in the order they are written.
pub const FILES: [&str; 3] = [CONTROL_UI, PUBLIC_ORIGIN, DEVICE_PAIR];

/// `/var/lib/ocusers/public/NAME`, as the tenant's unit sees it.
pub fn dir_of(name: &TenantName) -> String {
    paths::public_dir(name).display().to_string()
}

/// The absolute path of one origin file of tenant `name` (for `$include`).
pub fn include_path(name: &TenantName, file: &str) -> String {
    format!("{}/{file}", dir_of(name))
}

/// The directory on this host (under the test root).
pub fn host_dir(paths: &Paths, name: &TenantName) -> PathBuf {
    paths.public_dir(name)
}

/// `https://HOST`, with `:PORT` when the public HTTPS port is not 443.
pub fn origin_of(cfg: &ProxyConfig, host: &str) -> String {
    if cfg.public_port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{}", cfg.public_port)
    }
}

/// Every origin a browser opens tenant `record`'s Control UI from: one per
/// public host name (`NAME.DOMAIN` first, then its extra domains), full
/// origins without wildcards; empty when public access is off.
pub fn public_origins(cfg: &ProxyConfig, record: &Record) -> Vec<String> {
    if !cfg.enabled() {
        return Vec::new();
    }
    cfg.hosts_of(record)
        .iter()
        .map(|h| origin_of(cfg, h))
        .collect()
}

/// The gateway's own public origin: the first public origin, or loopback.
pub fn primary_origin(cfg: &ProxyConfig, record: &Record) -> String {
    public_origins(cfg, record)
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", record.port))
}

/// The WebSocket URL the phone apps connect to (`wss://NAME.DOMAIN[:PORT]`),
/// when public access is on.
pub fn public_ws_url(cfg: &ProxyConfig, record: &Record) -> Option<String> {
    public_origins(cfg, record)
        .into_iter()
        .next()
        .map(|o| o.replacen("https://", "wss://", 1))
}

/// The three files as they should be: (file name, content).
pub fn render(cfg: &ProxyConfig, record: &Record) -> Vec<(&'static str, String)> {
    let pretty = |v: serde_json::Value| {
        let mut s = serde_json::to_string_pretty(&v).expect("static JSON");
        s.push('\n');
        s
    };
    let control_ui = if cfg.enabled() {
        json!({ "allowedOrigins": public_origins(cfg, record) })
    } else {
        json!({})
    };
    let device_pair = match public_ws_url(cfg, record) {
        Some(url) => json!({ "publicUrl": url }),
        None => json!({}),
    };
    vec![
        (CONTROL_UI, pretty(control_ui)),
        (PUBLIC_ORIGIN, pretty(json!(primary_origin(cfg, record)))),
        (DEVICE_PAIR, pretty(device_pair)),
    ]
}

/// What differs between the files on disk and [`render`]: one line per file.
pub fn drift(paths: &Paths, cfg: &ProxyConfig, record: &Record) -> Vec<String> {
    let dir = host_dir(paths, &record.name);
    render(cfg, record)
        .into_iter()
        .filter_map(|(file, want)| {
            let path = dir.join(file);
            match std::fs::read(&path) {
                Ok(have) if have == want.as_bytes() => None,
                Ok(_) => Some(format!("{} is out of date", path.display())),
                Err(_) => Some(format!("{} is missing", path.display())),
            }
        })
        .collect()
}

/// The `$include`s the tenant's config must carry, by config path, for
/// `doctor`: the ones missing from `config` (the tenant's `openclaw.json`
/// text, read by descriptor). The tenant may have rewritten its config as
/// JSON5; then the include paths are searched as text.
pub fn missing_includes(name: &TenantName, config: &str) -> Vec<&'static str> {
    let parsed = serde_json::from_str::<serde_json::Value>(config).ok();
    INCLUDED_AT
        .into_iter()
        .filter(|(key, file)| {
            let want = include_path(name, file);
            match &parsed {
                Some(v) => {
                    let mut at = v;
                    for k in key.split('.') {
                        at = &at[k];
                    }
                    at["$include"].as_str() != Some(want.as_str())
                }
                None => !config.contains(&want),
            }
        })
        .map(|(key, _)| key)
        .collect()
}

/// The config keys that carry the includes, and the file each includes.
const INCLUDED_AT: [(&str, &str); 3] = [
    ("gateway.controlUi", CONTROL_UI),
    ("gateway.publicOrigin", PUBLIC_ORIGIN),
    ("plugins.entries.device-pair.config", DEVICE_PAIR),
];

/// The `openclaw config patch` that puts back the `missing` includes (keys
/// as [`missing_includes`] names them).
pub fn includes_patch(name: &TenantName, missing: &[&str]) -> serde_json::Value {
    let mut patch = serde_json::json!({});
    for (key, file) in INCLUDED_AT {
        if !missing.contains(&key) {
            continue;
        }
        let mut at = &mut patch;
        for k in key.split('.') {
            at = &mut at[k];
        }
        *at = serde_json::json!({ "$include": include_path(name, file) });
    }
    patch
}

/// Put the public-origin includes back into a config that lacks them (a
/// tenant made before ocusers wrote them, or one that dropped them): the
/// tenant's own `openclaw config patch`, run as the tenant in its sandbox,
/// edits its config; root only reads it (by descriptor) to see what is
/// missing.
pub fn includes_step<'a>(paths: &'a Paths, name: &'a TenantName) -> Step<'a> {
    let missing = move || -> Result<Vec<&'static str>> {
        Ok(crate::statedir::read_config(paths, name)?
            .map(|text| missing_includes(name, &text))
            .unwrap_or_default())
    };
    Step::new(
        format!(
            "include {name}'s public origins from {} in its openclaw.json (as {name}: openclaw config patch)",
            dir_of(name)
        ),
        move || Ok(missing()?.is_empty()),
        move || {
            let patch = includes_patch(name, &missing()?).to_string();
            let script = "printf %s \"$1\" | openclaw config patch --stdin >/dev/null";
            let (ok, _) =
                crate::tenant_exec::run_bounded(paths, name, &["sh", "-c", script, "sh", &patch])?;
            if !ok {
                anyhow::bail!(
                    "`openclaw config patch` as {name} failed: see `sudo ocusers exec {name} -- openclaw config validate`"
                );
            }
            Ok(())
        },
    )
}

/// Write tenant `record`'s origin files (before its gateway first starts:
/// a missing include is a configuration error to OpenClaw).
pub fn origins_step<'a>(paths: &'a Paths, cfg: &'a ProxyConfig, record: &'a Record) -> Step<'a> {
    let name = &record.name;
    let shown = match public_origins(cfg, record) {
        o if o.is_empty() => "no public origin: public access is off".to_string(),
        o => o.join(", "),
    };
    Step::new(
        format!(
            "write {name}'s public origins to {} ({shown})",
            host_dir(paths, name).display()
        ),
        move || Ok(drift(paths, cfg, record).is_empty()),
        move || write(paths, cfg, record),
    )
    .revert(move || fsutil::remove_tree(&host_dir(paths, name)))
}

/// Write the files (root's own directory; atomic renames).
pub fn write(paths: &Paths, cfg: &ProxyConfig, record: &Record) -> Result<()> {
    let dir = host_dir(paths, &record.name);
    fsutil::ensure_dir(dir.parent().expect("public dir"), 0o755)?;
    fsutil::ensure_dir(&dir, DIR_MODE)?;
    // The tenant's group reads them (its gateway runs as oc-NAME); in a test
    // root without that user, or not as root, the group stays as it is.
    let group = crate::identity::lookup(&paths::user_name(&record.name))
        .filter(|_| nix::unistd::geteuid().is_root())
        .map(|a| nix::unistd::Gid::from_raw(a.gid));
    let regroup = |p: &Path| -> Result<()> {
        if let Some(g) = group {
            nix::unistd::chown(p, None, Some(g))
                .with_context(|| format!("setting the group of {}", p.display()))?;
        }
        Ok(())
    };
    regroup(&dir)?;
    for (file, text) in render(cfg, record) {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            fsutil::write_atomic(&path, text.as_bytes(), FILE_MODE)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FILE_MODE))?;
        }
        // Root's own directory, which the tenant cannot write: the path is
        // root's.
        regroup(&path)?;
    }
    Ok(())
}

/// Modes of a tenant's origin directory and files (group: the tenant's).
pub const DIR_MODE: u32 = 0o750;
pub const FILE_MODE: u32 = 0o640;

/// Remove a tenant's origin files (`remove`).
pub fn removal_step<'a>(paths: &'a Paths, name: &'a TenantName) -> Step<'a> {
    Step::new(
        format!("remove {}", host_dir(paths, name).display()),
        move || Ok(!fsutil::exists(&host_dir(paths, name))),
        move || fsutil::remove_tree(&host_dir(paths, name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Kind, Tls};

    fn cfg(port: u16) -> ProxyConfig {
        ProxyConfig {
            domain: "test.internal".into(),
            kind: Kind::Caddy,
            tls: Tls::Internal,
            cert_file: String::new(),
            key_file: String::new(),
            listen: vec![],
            public_port: port,
            caddy_config: "/etc/caddy/Caddyfile".into(),
            caddy_include: "/etc/caddy/ocusers.caddy".into(),
            nginx_include: "/etc/nginx/conf.d/ocusers.conf".into(),
        }
    }

    fn rec(domains: &[&str]) -> Record {
        Record::sample("alice", domains)
    }

    #[test]
    fn origins_name_every_host_with_the_port_unless_443() {
        assert_eq!(
            public_origins(&cfg(19443), &rec(&["alice.example.org"])),
            [
                "https://alice.test.internal:19443",
                "https://alice.example.org:19443"
            ]
        );
        assert_eq!(
            public_origins(&cfg(443), &rec(&[])),
            ["https://alice.test.internal"]
        );
        assert_eq!(
            public_ws_url(&cfg(443), &rec(&[])).as_deref(),
            Some("wss://alice.test.internal")
        );
        let mut off = cfg(443);
        off.domain.clear();
        assert!(public_origins(&off, &rec(&["alice.example.org"])).is_empty());
        assert_eq!(primary_origin(&off, &rec(&[])), "http://127.0.0.1:20000");
        assert_eq!(public_ws_url(&off, &rec(&[])), None);
    }

    #[test]
    fn files_hold_one_value_each() {
        let files = render(&cfg(19443), &rec(&["alice.example.org"]));
        let get = |f: &str| -> serde_json::Value {
            serde_json::from_str(&files.iter().find(|(n, _)| *n == f).unwrap().1).unwrap()
        };
        assert_eq!(
            get(CONTROL_UI),
            json!({"allowedOrigins": ["https://alice.test.internal:19443", "https://alice.example.org:19443"]})
        );
        assert_eq!(
            get(PUBLIC_ORIGIN),
            json!("https://alice.test.internal:19443")
        );
        assert_eq!(
            get(DEVICE_PAIR),
            json!({"publicUrl": "wss://alice.test.internal:19443"})
        );
        let mut off = cfg(443);
        off.kind = Kind::None;
        let files = render(&off, &rec(&[]));
        assert_eq!(files[0].1, "{}\n");
        assert_eq!(files[2].1, "{}\n");
    }

    #[test]
    fn steps_write_and_detect_drift() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let (c, r) = (cfg(19443), rec(&[]));
        assert_eq!(drift(&paths, &c, &r).len(), 3);
        write(&paths, &c, &r).unwrap();
        assert!(drift(&paths, &c, &r).is_empty());
        let d = host_dir(&paths, &r.name);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(d.join(CONTROL_UI))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            FILE_MODE
        );
        let r2 = rec(&["alice.example.org"]);
        assert_eq!(
            drift(&paths, &c, &r2),
            [format!("{} is out of date", d.join(CONTROL_UI).display())]
        );
    }

    #[test]
    fn restore_as_another_name_moves_the_includes() {
        let alice = TenantName::parse("alice").unwrap();
        let alice2 = TenantName::parse("alice2").unwrap();
        let fix = crate::backup::ConfigFix {
            home: Some((
                "/var/lib/openclaw/alice".into(),
                "/var/lib/openclaw/alice2".into(),
            )),
            port: Some(20128),
        };
        let text = crate::openclaw_config::render(&alice, 20000, None);
        let fixed = crate::backup::tenant_side::fixed_config(text, &fix).unwrap();
        assert!(missing_includes(&alice2, &fixed).is_empty(), "{fixed}");
        assert!(!fixed.contains("/public/alice/"), "{fixed}");
        assert_eq!(fixed, crate::openclaw_config::render(&alice2, 20128, None));
    }

    #[test]
    fn the_patch_puts_back_exactly_what_is_missing() {
        fn merge(into: &mut serde_json::Value, patch: &serde_json::Value) {
            match (into, patch) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
                (slot, v) => *slot = v.clone(),
            }
        }
        let name = TenantName::parse("alice").unwrap();
        let bare =
            r#"{"gateway": {"port": 20000, "controlUi": {"allowedOrigins": ["https://x.org"]}}}"#;
        let missing = missing_includes(&name, bare);
        let patch = includes_patch(&name, &missing);
        assert_eq!(
            patch["plugins"]["entries"]["device-pair"]["config"]["$include"],
            include_path(&name, DEVICE_PAIR)
        );
        let mut config: serde_json::Value = serde_json::from_str(bare).unwrap();
        merge(&mut config, &patch);
        assert!(
            missing_includes(&name, &config.to_string()).is_empty(),
            "{config}"
        );
        assert_eq!(config["gateway"]["port"], 20000);
        // Only what is missing: a present include is not in the patch.
        let patch = includes_patch(&name, &["gateway.publicOrigin"]);
        assert_eq!(
            patch,
            serde_json::json!({"gateway": {"publicOrigin": {"$include": include_path(&name, PUBLIC_ORIGIN)}}})
        );
    }

    #[test]
    fn missing_includes_are_named() {
        let name = TenantName::parse("alice").unwrap();
        let full = crate::openclaw_config::render(&name, 20000, None);
        assert!(missing_includes(&name, &full).is_empty());
        let bare = r#"{"gateway": {"controlUi": {"allowedOrigins": ["https://x.org"]}}}"#;
        assert_eq!(
            missing_includes(&name, bare),
            [
                "gateway.controlUi",
                "gateway.publicOrigin",
                "plugins.entries.device-pair.config"
            ]
        );
        // JSON5 the tenant wrote: searched as text.
        let json5 = format!(
            "{{gateway: {{controlUi: {{$include: '{}'}}}}}}",
            include_path(&name, CONTROL_UI)
        );
        let json5 = json5.replace('\'', "\"");
        assert_eq!(missing_includes(&name, &json5).len(), 2);
    }
}

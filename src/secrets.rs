//! The tenant's environment file, `/etc/ocusers/tenants/NAME.env`: root-only
//! (0600), read by systemd through `EnvironmentFile=`, never passed in argv
//! or `Environment=` (both visible to every local user).
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::fsutil;

/// The key of the gateway token.
pub const TOKEN_KEY: &str = "OPENCLAW_GATEWAY_TOKEN";
/// The gateway port (the unit passes it as `--port`).
pub const PORT_KEY: &str = "OCUSERS_PORT";
/// Node's options, managed by ocusers: the V8 heap limit
/// (`--max-old-space-size`, from the tier) and [`INSPECTOR_OFF`].
pub const NODE_OPTIONS_KEY: &str = "NODE_OPTIONS";
/// Without it, SIGUSR1 (which the tenant, or its agent, can send to its own
/// gateway) opens Node's inspector on 127.0.0.1:9229: code execution inside
/// the gateway for any local user that reaches the port. NODE_OPTIONS is
/// inherited by the gateway's child processes, so they get it too.
pub const INSPECTOR_OFF: &str = "--disable-sigusr1";

/// The NODE_OPTIONS value ocusers writes for a V8 heap of `heap_mb`.
pub fn node_options(heap_mb: u32) -> String {
    format!("--max-old-space-size={heap_mb} {INSPECTOR_OFF}")
}

/// The V8 heap of a NODE_OPTIONS value ocusers wrote: [`node_options`]'s
/// value, or the heap setting alone that versions before the inspector
/// flag wrote. Anything else (another option, a second heap) is `None`.
pub fn managed_heap(node_options: &str) -> Option<u32> {
    let digits = node_options
        .strip_prefix("--max-old-space-size=")?
        .split(' ')
        .next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let heap = digits.parse().ok()?;
    (node_options == self::node_options(heap)
        || node_options == format!("--max-old-space-size={heap}"))
    .then_some(heap)
}

/// Whether a NODE_OPTIONS value keeps the inspector's signal off.
pub fn inspector_off(node_options: &str) -> bool {
    node_options.split_whitespace().any(|o| o == INSPECTOR_OFF)
}

/// 256 bits from the OS random number generator, hex-encoded.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).context("reading the OS random number generator")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `KEY=value` lines in order, with a header comment. Values are written
/// bare: keys and values are checked so no value can start a new line or be
/// re-interpreted by systemd's parser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    entries: Vec<(String, String)>,
}

impl EnvFile {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        check_value(key, value)?;
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Remove a key; true if it was there.
    pub fn unset(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn parse(text: &str) -> Result<EnvFile> {
        let mut env = EnvFile::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                bail!("line {}: expected KEY=value", i + 1);
            };
            env.set(k.trim(), v.trim())
                .with_context(|| format!("line {}", i + 1))?;
        }
        Ok(env)
    }

    pub fn render(&self, tenant: &str) -> String {
        let mut out = format!(
            "# ocusers: environment of tenant {tenant} (openclaw@{tenant}.service).\n\
             # Root only (0600); systemd reads it through EnvironmentFile=.\n"
        );
        for (k, v) in &self.entries {
            out.push_str(&format!("{k}={v}\n"));
        }
        out
    }

    pub fn load(path: &Path) -> Result<Option<EnvFile>> {
        match std::fs::read_to_string(path) {
            Ok(text) => EnvFile::parse(&text)
                .map(Some)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write atomically, 0600, root-owned (we run as root).
    pub fn store(&self, path: &Path, tenant: &str) -> Result<()> {
        if let Some(dir) = path.parent() {
            fsutil::ensure_dir(dir, 0o700)?;
        }
        fsutil::write_atomic(path, self.render(tenant).as_bytes(), 0o600)
    }
}

/// The keys of the environment file that ocusers writes itself: the
/// token (`add`, `token rotate`) and the two settings.
pub const MANAGED_KEYS: [&str; 3] = [TOKEN_KEY, PORT_KEY, NODE_OPTIONS_KEY];
/// The managed keys that are per-tenant settings, not credentials: made
/// anew for the tenant (port, tier) rather than copied or compared.
pub const SETTINGS_KEYS: [&str; 2] = [PORT_KEY, NODE_OPTIONS_KEY];

/// Keys the operator may not set with `ocusers secret`: ocusers' own (the
/// token changes only through `ocusers token rotate`), and every variable
/// the template unit sets or the loader honours. `EnvironmentFile=` overrides
/// `Environment=`, so a secret named `PATH` or `OPENCLAW_STATE_DIR` would
/// silently move the gateway's binaries or state.
pub const RESERVED_KEYS: &[&str] = &[
    // MANAGED_KEYS (a test keeps them here):
    TOKEN_KEY,
    PORT_KEY,
    NODE_OPTIONS_KEY,
    "HOME",
    "PATH",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "NODE_ENV",
    "NODE_PATH",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_HOME",
    "OPENCLAW_SERVICE_REPAIR_POLICY",
    "OPENCLAW_SUPERVISOR_MODE",
    "OPENCLAW_NO_AUTO_UPDATE",
];

/// Can `ocusers secret set|unset` touch this key? Checks the syntax too.
pub fn check_operator_key(key: &str) -> Result<()> {
    check_key(key)?;
    if key == TOKEN_KEY {
        bail!("{key} is the gateway token: change it with `ocusers token rotate NAME`");
    }
    if RESERVED_KEYS.contains(&key)
        || key.starts_with("OCUSERS_")
        || key.starts_with("LD_")
        || key.starts_with("SYSTEMD_")
    {
        bail!(
            "{key} is set by ocusers or the unit and cannot be a secret: choose another name (like OPENAI_API_KEY)"
        );
    }
    Ok(())
}

/// A secret value as read from stdin or a file: one trailing newline (what
/// `echo` and editors add) is dropped; anything that could start a new
/// assignment or be re-read differently by systemd is refused.
pub fn value_from_input(key: &str, raw: &[u8]) -> Result<String> {
    let Ok(text) = std::str::from_utf8(raw) else {
        bail!("the value of {key} is not UTF-8 text");
    };
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        bail!("the value of {key} is empty: pipe the value on stdin or name a file with --file");
    }
    if text.len() > 64 * 1024 {
        bail!("the value of {key} is longer than 64 KiB");
    }
    check_value(key, text)?;
    Ok(text.to_string())
}

fn check_key(key: &str) -> Result<()> {
    let ok = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("invalid key {key:?}: use upper-case letters, digits and '_', like OPENAI_API_KEY");
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<()> {
    // systemd's EnvironmentFile= parser treats quotes, backslashes and a
    // trailing backslash specially; a newline would start a new assignment.
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        bail!("the value of {key} contains {c:?}, which an environment file cannot hold safely");
    }
    if value != value.trim() {
        bail!("the value of {key} has leading or trailing spaces");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_keys_are_reserved_and_settings_are_managed() {
        for k in MANAGED_KEYS {
            assert!(RESERVED_KEYS.contains(&k), "{k}");
        }
        for k in SETTINGS_KEYS {
            assert!(MANAGED_KEYS.contains(&k), "{k}");
        }
    }

    #[test]
    fn tokens_are_256_bit_hex_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn round_trip_keeps_order_and_updates_in_place() {
        let mut env = EnvFile::default();
        env.set(PORT_KEY, "20000").unwrap();
        env.set(TOKEN_KEY, "abc").unwrap();
        env.set(PORT_KEY, "20128").unwrap();
        let text = env.render("alice");
        assert!(
            text.ends_with("OCUSERS_PORT=20128\nOPENCLAW_GATEWAY_TOKEN=abc\n"),
            "{text}"
        );
        assert_eq!(EnvFile::parse(&text).unwrap(), env);
        assert_eq!(env.keys().collect::<Vec<_>>(), [PORT_KEY, TOKEN_KEY]);
    }

    #[test]
    fn injection_is_refused() {
        let mut env = EnvFile::default();
        assert!(env.set("A", "x\nOPENCLAW_GATEWAY_TOKEN=evil").is_err());
        assert!(env.set("A", "x\"y").is_err());
        assert!(env.set("a-b", "x").is_err());
        assert!(env.set("A B", "x").is_err());
        assert!(env.get("A").is_none());
    }

    #[test]
    fn operator_keys_and_values() {
        assert!(check_operator_key("OPENAI_API_KEY").is_ok());
        for bad in [
            TOKEN_KEY,
            PORT_KEY,
            "NODE_OPTIONS",
            "PATH",
            "LD_PRELOAD",
            "OCUSERS_X",
            "a",
            "A=B",
            "",
        ] {
            assert!(check_operator_key(bad).is_err(), "{bad}");
        }
        assert_eq!(value_from_input("K", b"sk-123\n").unwrap(), "sk-123");
        for bad in [&b"a\nB=c\n"[..], b"a\0b", b"\n", b"", b"x\\", b"\xff"] {
            assert!(value_from_input("K", bad).is_err(), "{bad:?}");
        }
        let mut env = EnvFile::default();
        env.set("A", "1").unwrap();
        assert!(env.unset("A"));
        assert!(!env.unset("A"));
    }

    #[test]
    fn managed_heap_takes_only_what_ocusers_writes() {
        assert_eq!(managed_heap(&node_options(1024)), Some(1024));
        assert_eq!(managed_heap("--max-old-space-size=512"), Some(512));
        for bad in [
            "--max-old-space-size=",
            "--max-old-space-size=1024 --require=/tmp/x.js",
            "--max-old-space-size=1024 --disable-sigusr1 --inspect",
            "--require=/tmp/x.js",
            "--max-old-space-size=+1",
        ] {
            assert_eq!(managed_heap(bad), None, "{bad}");
        }
    }

    #[test]
    fn node_options_turn_the_inspector_signal_off() {
        let v = node_options(384);
        assert_eq!(v, "--max-old-space-size=384 --disable-sigusr1");
        assert!(inspector_off(&v));
        assert!(!inspector_off("--max-old-space-size=384"));
        assert!(!inspector_off("--disable-sigusr1x"));
        // A value the environment file holds as it is.
        let mut env = EnvFile::default();
        env.set(NODE_OPTIONS_KEY, &v).unwrap();
        assert_eq!(EnvFile::parse(&env.render("a")).unwrap(), env);
    }

    #[test]
    fn stored_file_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants/alice.env");
        let mut env = EnvFile::default();
        env.set(TOKEN_KEY, &new_token().unwrap()).unwrap();
        env.store(&path, "alice").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        assert_eq!(EnvFile::load(&path).unwrap(), Some(env));
    }
}

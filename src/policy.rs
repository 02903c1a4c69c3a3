//! Resource tiers: TOML files shipped in `/usr/share/ocusers/policy/tiers`
//! (from `policy/tiers/` in the source tree), overridable by a file of the
//! same name in `/etc/ocusers/tiers`. The shipped files are also compiled in,
//! so a tier is never missing because a package file was deleted.
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::paths::Paths;

const BUILTIN: &[(&str, &str)] = &[
    ("light", include_str!("../policy/tiers/light.toml")),
    ("standard", include_str!("../policy/tiers/standard.toml")),
    ("heavy", include_str!("../policy/tiers/heavy.toml")),
];

/// A tier as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    description: String,
    memory_high: String,
    memory_max: String,
    cpu_quota: String,
    tasks_max: u64,
    v8_heap_mb: u32,
    /// A lean tier: the only OpenClaw plugins its tenants' gateways load
    /// (OpenClaw's exclusive `plugins.allow`, written into the tenant's
    /// config when it is created). Absent: every plugin OpenClaw enables
    /// by default.
    #[serde(default)]
    plugins: Option<Vec<String>>,
    /// Opt-in scale-to-zero (`idle_stop = "15m"`, see `crate::sleep`);
    /// absent: always on.
    #[serde(default)]
    idle_stop: Option<String>,
}

/// A tier, parsed: the unit properties it sets and the V8 heap it gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub name: String,
    pub description: String,
    pub limits: Limits,
    pub v8_heap_mb: u32,
    /// The plugin allow-list of a lean tier (see [`TierFile`]); `None`:
    /// OpenClaw's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<String>>,
    /// Seconds without a client connection before the gateway sleeps
    /// (`crate::sleep`); None: always on.
    pub idle_stop: Option<u64>,
}

/// The resource properties a tier sets: the systemd adapter's type (the
/// policy decides the values, the adapter owns what a unit takes).
pub use crate::systemd::Limits;

/// Per-tenant changes to its tier's limits, kept as written (`3G`, `150%`)
/// so `ocusers export` gives back what the operator wrote. Recorded in the
/// registry entry; the values on the unit are set from tier + overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u64>,
    /// The tenant's own idle_stop (`"15m"`, `"off"`), over its tier's
    /// (see `crate::sleep`); not a unit limit, kept here as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<String>,
    /// Sleep even though its config has channels or cron jobs enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_idle_stop: bool,
}

impl LimitOverrides {
    pub fn is_empty(&self) -> bool {
        *self == LimitOverrides::default()
    }

    /// `base` with these overrides; an error names the bad field.
    pub fn apply(&self, base: Limits) -> Result<Limits, String> {
        let mut l = base;
        if let Some(s) = &self.memory_high {
            l.memory_high = parse_bytes(s).map_err(|m| format!("memory_high: {m}"))?;
        }
        if let Some(s) = &self.memory_max {
            l.memory_max = parse_bytes(s).map_err(|m| format!("memory_max: {m}"))?;
        }
        if let Some(s) = &self.cpu_quota {
            l.cpu_quota_per_sec_usec =
                u64::from(parse_percent(s).map_err(|m| format!("cpu_quota: {m}"))?) * 10_000;
        }
        if let Some(n) = self.tasks_max {
            if n == 0 {
                return Err("tasks_max must be positive".into());
            }
            l.tasks_max = n;
        }
        if l.memory_high > l.memory_max {
            return Err(format!(
                "memory_high ({}) must not be above memory_max ({})",
                l.memory_high, l.memory_max
            ));
        }
        Ok(l)
    }
}

impl Tier {
    /// Look a tier up by name: `/etc/ocusers/tiers/NAME.toml`, then the
    /// shipped file, then the built-in copy.
    pub fn load(paths: &Paths, name: &str) -> Result<Tier> {
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid_name {
            for dir in [paths.local_tiers_dir(), paths.shipped_tiers_dir()] {
                let path = dir.join(format!("{name}.toml"));
                match std::fs::read_to_string(&path) {
                    Ok(text) => return parse(name, &text, Some(path)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                }
            }
            if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
                return parse(name, text, None);
            }
        }
        Err(Error::UnknownTier {
            tier: name.to_string(),
            available: available(paths).join(", "),
            dirs: format!(
                "{} and {}",
                paths.shipped_tiers_dir().display(),
                paths.local_tiers_dir().display()
            ),
        }
        .into())
    }
}

/// Names of every tier that can be loaded, sorted.
pub fn available(paths: &Paths) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    for dir in [paths.local_tiers_dir(), paths.shipped_tiers_dir()] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml")
                    && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                {
                    names.push(stem.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn parse(name: &str, text: &str, path: Option<PathBuf>) -> Result<Tier> {
    let path_or_builtin = || {
        path.clone()
            .unwrap_or_else(|| PathBuf::from(format!("(built-in tier {name})")))
    };
    let bad = |message: String| Error::BadFile {
        path: path_or_builtin(),
        message,
    };
    let file: TierFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    let memory_high =
        parse_bytes(&file.memory_high).map_err(|m| bad(format!("memory_high: {m}")))?;
    let memory_max = parse_bytes(&file.memory_max).map_err(|m| bad(format!("memory_max: {m}")))?;
    let cpu = parse_percent(&file.cpu_quota).map_err(|m| bad(format!("cpu_quota: {m}")))?;
    if memory_high > memory_max {
        return Err(bad("memory_high must not be above memory_max".into()).into());
    }
    if file.tasks_max == 0 || file.v8_heap_mb < 256 {
        return Err(bad("tasks_max must be positive and v8_heap_mb at least 256".into()).into());
    }
    if u64::from(file.v8_heap_mb) * 1024 * 1024 >= memory_max {
        return Err(bad("v8_heap_mb must be below memory_max".into()).into());
    }
    let idle_stop = match &file.idle_stop {
        Some(s) => crate::sleep::parse_idle_stop(s).map_err(bad)?,
        None => None,
    };
    Ok(Tier {
        name: name.to_string(),
        description: file.description,
        limits: Limits {
            memory_high,
            memory_max,
            // systemd: CPUQuota=100% is 1 s of CPU time per second.
            cpu_quota_per_sec_usec: u64::from(cpu) * 10_000,
            tasks_max: file.tasks_max,
        },
        v8_heap_mb: file.v8_heap_mb,
        plugins: match file.plugins {
            Some(list) => Some(plugin_list(list).map_err(|m| bad(format!("plugins: {m}")))?),
            None => None,
        },
        idle_stop,
    })
}

/// An OpenClaw plugin id as its manifests spell them (`device-pair`,
/// `memory-core`): lower-case letters, digits and `-`, at most 64.
pub fn check_plugin_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a plugin id (lower-case letters, digits and '-', like device-pair)"
        ))
    }
}

/// Plugin ids checked, sorted, without duplicates.
fn plugin_list(mut list: Vec<String>) -> Result<Vec<String>, String> {
    for id in &list {
        check_plugin_id(id)?;
    }
    list.sort();
    list.dedup();
    Ok(list)
}

impl Tier {
    /// This tier with `extra` plugins added to its allow-list (`ocusers add
    /// --plugin`). Refused for a tier without one: its gateways already
    /// load every plugin OpenClaw enables by default.
    pub fn with_plugins(mut self, extra: &[String]) -> Result<Tier, String> {
        if extra.is_empty() {
            return Ok(self);
        }
        let Some(list) = self.plugins.take() else {
            return Err(format!(
                "tier {} has no plugin list (its gateways load every plugin OpenClaw enables by default): drop --plugin, or use a lean tier such as light",
                self.name
            ));
        };
        self.plugins = Some(plugin_list(
            list.into_iter().chain(extra.iter().cloned()).collect(),
        )?);
        Ok(self)
    }
}

/// `512M`, `2G`, `1536M`, `1048576` (bytes); K, M, G, T are powers of 1024
/// as in systemd.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown unit {c:?} in {s:?} (use K, M, G or T)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512M or 2G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `50%` -> 50.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{s:?} is not a percentage like 50% or 200%"))?;
    if n == 0 {
        return Err("must be above 0%".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("2X").is_err());
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_percent("150%"), Ok(150));
        assert!(parse_percent("150").is_err());
        assert!(parse_percent("0%").is_err());
    }

    #[test]
    fn shipped_tiers_parse_and_leave_room_for_an_idle_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        // An idle gateway takes about 850 MB (README, "Resource tiers").
        let idle = 850u64 << 20;
        for name in ["light", "standard", "heavy"] {
            let t = Tier::load(&paths, name).unwrap();
            assert!(t.limits.memory_high > idle, "{name}: MemoryHigh too small");
            assert!(t.limits.memory_max > t.limits.memory_high, "{name}");
            assert!(
                t.limits.tasks_max >= 64,
                "{name}: an idle gateway runs 19 tasks"
            );
        }
        assert_eq!(available(&paths), ["heavy", "light", "standard"]);
    }

    #[test]
    fn overrides_apply_over_the_tier() {
        let dir = tempfile::tempdir().unwrap();
        let base = Tier::load(&Paths::new(dir.path()), "standard")
            .unwrap()
            .limits;
        assert_eq!(LimitOverrides::default().apply(base), Ok(base));
        let o = LimitOverrides {
            memory_max: Some("3G".into()),
            cpu_quota: Some("150%".into()),
            ..Default::default()
        };
        let l = o.apply(base).unwrap();
        assert_eq!(l.memory_max, 3 << 30);
        assert_eq!(l.memory_high, base.memory_high);
        assert_eq!(l.cpu_quota_per_sec_usec, 1_500_000);
        let low = LimitOverrides {
            memory_max: Some("512M".into()),
            ..Default::default()
        };
        assert!(low.apply(base).unwrap_err().contains("memory_high"));
        let bad = LimitOverrides {
            cpu_quota: Some("lots".into()),
            ..Default::default()
        };
        assert!(bad.apply(base).unwrap_err().starts_with("cpu_quota"));
    }

    #[test]
    fn unknown_tier_lists_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tier::load(&Paths::new(dir.path()), "huge").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("heavy, light, standard"), "{text}");
        assert!(Tier::load(&Paths::new(dir.path()), "../etc/passwd").is_err());
    }

    #[test]
    fn a_lean_tier_lists_its_plugins_and_add_extends_them() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.local_tiers_dir()).unwrap();
        let base = "description = \"x\"\nmemory_high = \"1G\"\nmemory_max = \"2G\"\ncpu_quota = \"25%\"\ntasks_max = 100\nv8_heap_mb = 384\n";
        let write = |name: &str, extra: &str| {
            std::fs::write(
                paths.local_tiers_dir().join(format!("{name}.toml")),
                format!("{base}{extra}"),
            )
            .unwrap()
        };
        write(
            "lean",
            "plugins = [\"telegram\", \"device-pair\", \"telegram\"]\n",
        );
        let t = Tier::load(&paths, "lean").unwrap();
        assert_eq!(
            t.plugins.as_deref(),
            Some(&["device-pair".to_string(), "telegram".into()][..])
        );
        let more = t.with_plugins(&["browser".into()]).unwrap();
        assert_eq!(
            more.plugins.unwrap(),
            ["browser", "device-pair", "telegram"]
        );
        // A bad id names the field and the rule.
        write("bad", "plugins = [\"../x\"]\n");
        let err = format!("{:#}", Tier::load(&paths, "bad").unwrap_err());
        assert!(
            err.contains("plugins") && err.contains("not a plugin id"),
            "{err}"
        );
        // A tier without a list loads everything: --plugin is refused there.
        let standard = Tier::load(&paths, "standard").unwrap();
        assert!(standard.plugins.is_none());
        let err = standard.with_plugins(&["browser".into()]).unwrap_err();
        assert!(err.contains("tier standard has no plugin list"), "{err}");
        assert!(
            Tier::load(&paths, "standard")
                .unwrap()
                .with_plugins(&[])
                .is_ok()
        );
        let lean = Tier::load(&paths, "lean").unwrap();
        assert!(lean.with_plugins(&["Browser".into()]).is_err());
    }

    #[test]
    fn local_override_wins() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.local_tiers_dir()).unwrap();
        std::fs::write(
            paths.local_tiers_dir().join("light.toml"),
            "description = \"x\"\nmemory_high = \"1G\"\nmemory_max = \"1G\"\ncpu_quota = \"25%\"\ntasks_max = 100\nv8_heap_mb = 384\n",
        )
        .unwrap();
        let t = Tier::load(&paths, "light").unwrap();
        assert_eq!(t.limits.cpu_quota_per_sec_usec, 250_000);
        std::fs::write(paths.local_tiers_dir().join("bad.toml"), "memory_high = 1").unwrap();
        let err = Tier::load(&paths, "bad").unwrap_err();
        assert!(format!("{err:#}").contains("bad.toml"));
    }
}

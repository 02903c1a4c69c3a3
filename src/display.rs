//! How sizes, durations and times are shown to people and written into
//! files: one home for these small formatters (`status`, `list`, `add`,
//! the registry's timestamps and invites all use them).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `1.5G`, `800M`, `-` for not set.
pub fn human_bytes(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(n) if n >= 1 << 30 => format!("{:.1}G", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{}M", n >> 20),
        Some(n) if n >= 1 << 10 => format!("{}K", n >> 10),
        Some(n) => format!("{n}B"),
    }
}

/// `3d4h`, `5m12s`, `-`.
pub fn human_duration(secs: Option<u64>) -> String {
    let Some(s) = secs else { return "-".into() };
    match s {
        s if s >= 86400 => format!("{}d{}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Now, as RFC 3339 to the second (`2026-12-01T18:00:00Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Seconds since the epoch as RFC 3339.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humans() {
        assert_eq!(human_bytes(Some(2 << 30)), "2.0G");
        assert_eq!(human_bytes(Some(850 << 20)), "850M");
        assert_eq!(human_bytes(None), "-");
        assert_eq!(human_duration(Some(3725)), "1h2m");
        assert_eq!(human_duration(Some(42)), "42s");
        assert_eq!(human_duration(None), "-");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert!(now_rfc3339().ends_with('Z'));
    }
}

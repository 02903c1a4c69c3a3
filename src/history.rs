//! `ocusers history`: ocusers' change journal, read back. Every change is
//! written to the journal by [`crate::logging::record`] with
//! `SYSLOG_IDENTIFIER=ocusers` and the fields `OCUSERS_TENANT`,
//! `OCUSERS_ACTION`, `OCUSERS_STEP` and `OCUSERS_BY` (the admin who ran the
//! command). Anyone on the host can write an entry with the same identifier
//! and fields (`systemd-cat -t ocusers`, as a tenant); what nobody but root
//! can forge is `_UID=0`, the sender's user id that journald itself records
//! from the socket's credentials. So the trail is read with `_UID=0` as a
//! journal match (threat model rule 4), and each entry is checked again.
//! No secret is ever in an entry (values are never logged, only key names).
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::tenant::TenantName;

/// One change, as `ocusers history --json` prints it (README, "Output").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// UTC, RFC 3339 with microseconds.
    pub time: String,
    /// The tenant, or `-` for host-wide changes (runtimes, the proxy).
    pub tenant: String,
    /// The command: `add`, `remove`, `secret-set`, `token-rotate`, ...
    pub action: String,
    /// What was done, as the plan's step says it (names, ports, limits,
    /// versions; never a secret value).
    pub step: String,
    /// Who ran it: the admin behind sudo (`SUDO_USER`), else `root`, or
    /// `uid 0` for entries written before ocusers recorded it.
    pub by: String,
    /// The ocusers process that wrote it.
    pub pid: Option<u32>,
}

/// The journal matches: ocusers' identifier, written by root, and the
/// tenant when one is asked for.
pub fn journal_matches(tenant: Option<&TenantName>) -> Vec<String> {
    let mut m = vec![
        "SYSLOG_IDENTIFIER=ocusers".to_string(),
        "_UID=0".to_string(),
    ];
    if let Some(t) = tenant {
        m.push(format!("OCUSERS_TENANT={t}"));
    }
    m
}

/// Read the trail from the journal (oldest first).
pub fn read(tenant: Option<&TenantName>) -> Result<Vec<Entry>> {
    let out = Command::new("journalctl")
        .args(["--output=json", "--no-pager", "--quiet"])
        .args(journal_matches(tenant))
        .output()
        .context("running journalctl (is systemd's journal installed?)")?;
    if !out.status.success() {
        bail!(
            "journalctl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout), tenant))
}

/// A journal field as text: journalctl prints a string, or an array of
/// bytes for values that are not UTF-8, or an array of values when the
/// field occurs more than once (then none is trusted: `None`).
fn field(v: &serde_json::Value, key: &str) -> Option<String> {
    match &v[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.iter().all(|b| b.is_u64()) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

/// Entries from `journalctl --output=json` lines; anything not written by
/// root under ocusers' identifier is dropped here too.
pub fn parse(text: &str, tenant: Option<&TenantName>) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if field(&v, "_UID").as_deref() != Some("0")
            || field(&v, "SYSLOG_IDENTIFIER").as_deref() != Some("ocusers")
        {
            continue;
        }
        let (Some(t), Some(action), Some(step)) = (
            field(&v, "OCUSERS_TENANT"),
            field(&v, "OCUSERS_ACTION"),
            field(&v, "OCUSERS_STEP"),
        ) else {
            continue;
        };
        if tenant.is_some_and(|n| n.as_str() != t) {
            continue;
        }
        let time = field(&v, "__REALTIME_TIMESTAMP")
            .and_then(|us| us.parse::<u64>().ok())
            .map(|us| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
                humantime::format_rfc3339_micros(t).to_string()
            })
            .unwrap_or_default();
        out.push(Entry {
            time,
            tenant: t,
            action,
            step,
            by: field(&v, "OCUSERS_BY").unwrap_or_else(|| "uid 0".into()),
            pid: field(&v, "_PID").and_then(|p| p.parse().ok()),
        });
    }
    out
}

/// The human table: one line per change.
pub fn render(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "no changes recorded\n".into();
    }
    let w_tenant = entries
        .iter()
        .map(|e| e.tenant.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w_action = entries
        .iter()
        .map(|e| e.action.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w_by = entries.iter().map(|e| e.by.len()).max().unwrap_or(0).max(2);
    let mut s = format!(
        "{:<19}  {:<w_by$}  {:<w_tenant$}  {:<w_action$}  STEP\n",
        "TIME (UTC)", "BY", "TENANT", "ACTION"
    );
    for e in entries {
        // Seconds are enough for the table; --json has microseconds.
        let time: String = e
            .time
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        s.push_str(&format!(
            "{time:<19}  {:<w_by$}  {:<w_tenant$}  {:<w_action$}  {}\n",
            e.by, e.tenant, e.action, e.step
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOURNAL: &str = r#"{"__REALTIME_TIMESTAMP":"1796083200000000","_UID":"0","_PID":"41","SYSLOG_IDENTIFIER":"ocusers","OCUSERS_TENANT":"alice","OCUSERS_ACTION":"add","OCUSERS_STEP":"create system user and group oc-alice","OCUSERS_BY":"ana"}
{"__REALTIME_TIMESTAMP":"1796083201000000","_UID":"1001","_PID":"99","SYSLOG_IDENTIFIER":"ocusers","OCUSERS_TENANT":"alice","OCUSERS_ACTION":"remove","OCUSERS_STEP":"forged"}
{"__REALTIME_TIMESTAMP":"1796083202000000","_UID":"0","SYSLOG_IDENTIFIER":"other","OCUSERS_TENANT":"alice","OCUSERS_ACTION":"x","OCUSERS_STEP":"y"}
{"__REALTIME_TIMESTAMP":"1796083203000000","_UID":["0","1001"],"SYSLOG_IDENTIFIER":"ocusers","OCUSERS_TENANT":"alice","OCUSERS_ACTION":"x","OCUSERS_STEP":"twice"}
{"__REALTIME_TIMESTAMP":"1796083204000000","_UID":"0","SYSLOG_IDENTIFIER":"ocusers","OCUSERS_TENANT":"bob","OCUSERS_ACTION":"token-rotate","OCUSERS_STEP":[114,111,116,97,116,101]}
not json
{"__REALTIME_TIMESTAMP":"1796083205000000","_UID":"0","SYSLOG_IDENTIFIER":"ocusers","MESSAGE":"no fields"}
"#;

    #[test]
    fn only_roots_entries_with_ocusers_fields() {
        let all = parse(JOURNAL, None);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            all[0],
            Entry {
                time: "2026-12-01T00:00:00.000000Z".into(),
                tenant: "alice".into(),
                action: "add".into(),
                step: "create system user and group oc-alice".into(),
                by: "ana".into(),
                pid: Some(41),
            }
        );
        assert_eq!(all[1].step, "rotate");
        assert_eq!(all[1].by, "uid 0");
        let bob = TenantName::parse("bob").unwrap();
        let only = parse(JOURNAL, Some(&bob));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].tenant, "bob");
    }

    #[test]
    fn matches_ask_journald_for_roots_entries() {
        let alice = TenantName::parse("alice").unwrap();
        assert_eq!(
            journal_matches(Some(&alice)),
            [
                "SYSLOG_IDENTIFIER=ocusers",
                "_UID=0",
                "OCUSERS_TENANT=alice"
            ]
        );
    }

    #[test]
    fn table() {
        let t = render(&parse(JOURNAL, None));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("TIME (UTC)"), "{t}");
        assert!(
            lines[1].starts_with("2026-12-01 00:00:00  ana")
                && lines[1].ends_with("create system user and group oc-alice"),
            "{t}"
        );
        assert_eq!(render(&[]), "no changes recorded\n");
    }
}

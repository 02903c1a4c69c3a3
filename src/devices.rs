//! `ocusers devices NAME [list | approve ID | revoke ID]`: the tenant's own
//! `openclaw devices` CLI, run as the tenant in its sandbox against its
//! gateway on loopback (like `ocusers exec`), for the pairing cases an
//! invite does not cover (a pending request from a phone app or a CLI). The
//! output is the tenant's: it is read with bounds, JSON is re-serialised,
//! and text loses its control characters before it reaches the operator's
//! terminal.
use anyhow::{Result, bail};

use crate::paths::Paths;
use crate::tenant::TenantName;
use crate::tenant_exec::run_bounded;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    Approve(String),
    Revoke(String),
}

/// A request or device id as OpenClaw prints them.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 200
        || id.starts_with('-')
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        bail!("{id:?} is not a request or device id: take one from `ocusers devices NAME list`");
    }
    Ok(())
}

/// The `openclaw` arguments for an action.
pub fn argv(action: &Action, json: bool) -> Vec<String> {
    let mut v: Vec<String> = vec!["openclaw".into(), "devices".into()];
    match action {
        Action::List => v.push("list".into()),
        Action::Approve(id) => v.extend(["approve".into(), id.clone()]),
        // A paired device is removed (its tokens with it).
        Action::Revoke(id) => v.extend(["remove".into(), id.clone()]),
    }
    if json {
        v.push("--json".into());
    }
    v
}

/// Text without control characters other than newline and tab.
pub fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Run the action as the tenant; what to print.
pub fn run(paths: &Paths, name: &TenantName, action: &Action, json: bool) -> Result<String> {
    if let Action::Approve(id) | Action::Revoke(id) = action {
        check_id(id)?;
    }
    let args = argv(action, json);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run_bounded(paths, name, &refs)?;
    let text = String::from_utf8_lossy(&out);
    if !ok {
        let last = clean(text.lines().last().unwrap_or_default());
        bail!(
            "`openclaw {}` as tenant {name} failed{}: is its gateway running (`ocusers status {name}`)?",
            args[1..].join(" "),
            if last.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", last.trim())
            }
        );
    }
    match action {
        Action::Approve(id) => crate::logging::record(
            name.as_str(),
            "devices-approve",
            &format!("pairing request {id} approved"),
        ),
        Action::Revoke(id) => crate::logging::record(
            name.as_str(),
            "devices-revoke",
            &format!("device {id} removed"),
        ),
        Action::List => {}
    }
    if json {
        let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|_| {
            anyhow::anyhow!(
                "`openclaw {}` as tenant {name} printed no JSON",
                args[1..].join(" ")
            )
        })?;
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    Ok(clean(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_arguments() {
        assert!(check_id("3f2a-b9c1").is_ok());
        for bad in ["", "--url=ws://evil", "a b", "a;b", "\u{1b}[2J"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            argv(&Action::Revoke("d1".into()), true),
            ["openclaw", "devices", "remove", "d1", "--json"]
        );
        assert_eq!(argv(&Action::List, false), ["openclaw", "devices", "list"]);
        assert_eq!(clean("a\u{1b}]0;x\u{7}b\n"), "a]0;xb\n");
    }
}

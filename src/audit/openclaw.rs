//! OpenClaw's own view: `openclaw security audit --json`, run as the tenant
//! inside its gateway's sandbox (src/tenant_exec.rs), its critical findings
//! reported as failures of the tenant's `openclaw-audit` check.
use serde::Deserialize;

use super::Check;
use crate::paths::Paths;
use crate::tenant::TenantName;

#[derive(Debug, Deserialize)]
struct Report {
    summary: Summary,
    #[serde(default)]
    findings: Vec<Finding>,
}

#[derive(Debug, Deserialize)]
struct Summary {
    critical: u32,
    warn: u32,
}

#[derive(Debug, Deserialize)]
struct Finding {
    #[serde(rename = "checkId", default)]
    check_id: String,
    severity: String,
    #[serde(default)]
    title: String,
}

/// The check for one running tenant; `Err` (a warning) when the audit could
/// not run or said something unreadable.
pub(super) fn check(paths: &Paths, name: &TenantName) -> Result<Check, String> {
    let argv: Vec<String> = ["openclaw", "security", "audit", "--json"]
        .map(String::from)
        .to_vec();
    let out = crate::tenant_exec::output(paths, name, &argv)
        .map_err(|e| format!("{name}: openclaw security audit did not run: {e:#}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    summarize(&stdout).map_err(|e| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "{name}: openclaw security audit ({}): {e}; {}",
            out.status,
            err.lines().last().unwrap_or_default()
        )
    })
}

/// Read the report (the JSON object in the output) into a check.
fn summarize(stdout: &str) -> Result<Check, String> {
    let start = stdout.find('{').ok_or("no JSON in its output")?;
    let report: Report = serde_json::Deserializer::from_str(&stdout[start..])
        .into_iter()
        .next()
        .ok_or("no JSON in its output")?
        .map_err(|e| format!("unreadable JSON: {e}"))?;
    let critical: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == "critical")
        .map(|f| format!("{} ({})", f.title, f.check_id))
        .collect();
    let detail = if critical.is_empty() {
        format!(
            "no critical findings ({} warnings; details: `ocusers exec NAME -- openclaw security audit`)",
            report.summary.warn
        )
    } else {
        format!(
            "{} critical: {}",
            report.summary.critical,
            critical.join("; ")
        )
    };
    Ok(Check {
        check: "openclaw-audit",
        ok: report.summary.critical == 0,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_findings_fail_the_check() {
        let out = "[plugins] noise\n{\"ts\":1,\"summary\":{\"critical\":1,\"warn\":2,\"info\":0},\"findings\":[\
            {\"checkId\":\"channels.telegram.dm.open\",\"severity\":\"critical\",\"title\":\"Telegram DMs are open\"},\
            {\"checkId\":\"x\",\"severity\":\"warn\",\"title\":\"w\"}]}\n";
        let c = summarize(out).unwrap();
        assert!(!c.ok);
        assert!(
            c.detail
                .contains("Telegram DMs are open (channels.telegram.dm.open)"),
            "{}",
            c.detail
        );

        let clean = "{\"summary\":{\"critical\":0,\"warn\":3,\"info\":1},\"findings\":[]}";
        let c = summarize(clean).unwrap();
        assert!(c.ok, "{}", c.detail);
        assert!(c.detail.contains("3 warnings"));

        assert!(summarize("gateway not running").is_err());
    }
}

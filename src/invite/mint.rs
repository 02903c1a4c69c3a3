//! Asking the tenant's own OpenClaw for credentials, as the tenant: the
//! command runs through `tenant_exec` (a transient unit with the template's
//! sandbox, `User=oc-NAME`, the gateway's /tmp), never as root in its
//! state. Its output is the tenant's (a hostile tenant can ptrace its own
//! processes and write anything): it is read with bounds on size and time,
//! and only one well-formed value is taken from it. Nothing of it is
//! logged: the `url` of `dashboard --json` carries the shared gateway token.
use anyhow::{Context, Result, bail};

use super::Bootstrap;
use crate::paths::Paths;
use crate::tenant::TenantName;

fn token_like(s: &str, max: usize) -> bool {
    (16..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The bootstrap token of `dashboard --json` output: from `browserUrl`'s
/// fragment only.
pub fn parse_dashboard(out: &[u8]) -> Result<Bootstrap> {
    let v: serde_json::Value = serde_json::from_slice(out)
        .map_err(|_| anyhow::anyhow!("`openclaw dashboard --json` printed no JSON"))?;
    if v["ok"] != true {
        bail!("`openclaw dashboard --json` reported no handoff (is the gateway ready?)");
    }
    let url = v["browserUrl"]
        .as_str()
        .context("`openclaw dashboard --json` printed no browserUrl")?;
    let (_, fragment) = url.split_once('#').context("browserUrl has no fragment")?;
    let mut token = None;
    let mut profile = None;
    for pair in fragment.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "bootstrapToken" => token = percent_decode(v),
            "bootstrapProfile" => profile = percent_decode(v),
            _ => {}
        }
    }
    let token = token
        .filter(|t| token_like(t, 512))
        .context("browserUrl carries no well-formed bootstrapToken")?;
    let profile = profile
        .filter(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_lowercase()))
        .unwrap_or_else(|| "owner".into());
    Ok(Bootstrap { token, profile })
}

/// A fresh Control UI bootstrap token from the tenant's gateway.
pub fn bootstrap(paths: &Paths, name: &TenantName) -> Result<Bootstrap> {
    let (ok, out) =
        crate::tenant_exec::run_bounded(paths, name, &["openclaw", "dashboard", "--json"])?;
    let parsed = parse_dashboard(&out);
    if !ok && parsed.is_err() {
        bail!("`openclaw dashboard --json` as tenant {name} failed");
    }
    parsed
}

/// The phone apps' setup code (`openclaw qr --url URL --json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetupCode {
    #[serde(rename = "setupCode")]
    pub setup_code: String,
    #[serde(rename = "gatewayUrl")]
    pub gateway_url: String,
}

pub fn parse_qr(out: &[u8], url: &str) -> Result<SetupCode> {
    let v: serde_json::Value = serde_json::from_slice(out)
        .map_err(|_| anyhow::anyhow!("`openclaw qr --json` printed no JSON"))?;
    let code = v["setupCode"]
        .as_str()
        .filter(|c| {
            (16..=8192).contains(&c.len())
                && c.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
                })
        })
        .context("`openclaw qr --json` printed no well-formed setupCode")?;
    Ok(SetupCode {
        setup_code: code.to_string(),
        gateway_url: url.to_string(),
    })
}

pub fn setup_code(paths: &Paths, name: &TenantName, url: &str) -> Result<SetupCode> {
    let (ok, out) = crate::tenant_exec::run_bounded(
        paths,
        name,
        &["openclaw", "qr", "--url", url, "--json", "--no-ascii"],
    )?;
    let parsed = parse_qr(&out, url);
    if !ok && parsed.is_err() {
        bail!(
            "`openclaw qr --json` as tenant {name} failed: is its gateway running (`ocusers status {name}`)?"
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_the_bootstrap_token() {
        let out = br#"{"ok":true,"url":"http://127.0.0.1:18789/#token=SHARED-gateway-token-0123456789","browserUrl":"http://127.0.0.1:18789/#bootstrapToken=Abc_def-0123456789xyz&bootstrapProfile=owner&gatewayUrl=ws%3A%2F%2F127.0.0.1%3A18789","port":18789}"#;
        let b = parse_dashboard(out).unwrap();
        assert_eq!(b.token, "Abc_def-0123456789xyz");
        assert_eq!(b.profile, "owner");
        for bad in [
            &br#"{"ok":false,"reason":"x"}"#[..],
            br#"{"ok":true,"url":"http://x/#token=SHARED0123456789abcdef"}"#,
            br#"{"ok":true,"browserUrl":"http://x/#bootstrapToken=%3Cscript%3E0123456789abcdef"}"#,
            br#"{"ok":true,"browserUrl":"http://x/#bootstrapToken=short"}"#,
            b"not json",
        ] {
            assert!(
                parse_dashboard(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let odd = br#"{"ok":true,"browserUrl":"http://x/#bootstrapToken=0123456789abcdefgh&bootstrapProfile=%22%3E"}"#;
        assert_eq!(parse_dashboard(odd).unwrap().profile, "owner");
    }

    #[test]
    fn setup_code_only() {
        let c = parse_qr(
            br#"{"setupCode":"eyJ1cmwiOiJ3c3M6Ly9hIn0abcdef","gatewayUrl":"wss://a","auth":"token"}"#,
            "wss://alice.example.com",
        )
        .unwrap();
        assert_eq!(c.setup_code, "eyJ1cmwiOiJ3c3M6Ly9hIn0abcdef");
        assert_eq!(c.gateway_url, "wss://alice.example.com");
        assert!(parse_qr(br#"{"setupCode":"<b>"}"#, "x").is_err());
    }
}

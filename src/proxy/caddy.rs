//! The Caddy include: one site for `*.DOMAIN` and the extra domains that
//! routes each host name to its link in the hosts directory.
use std::fmt::Write as _;

use super::{INVITE_ADDR, INVITE_PATH_PREFIX as INVITE_PREFIX};
use super::{ProxyConfig, Tls};
use crate::paths::PROXY_HOSTS_DIR;

pub fn render(cfg: &ProxyConfig, extra: &[String]) -> String {
    let mut out = String::new();
    out.push_str(&super::header(
        cfg,
        &format!(
            "{} includes it with:\n#     import {}",
            cfg.caddy_config.display(),
            cfg.caddy_include.display()
        ),
    ));
    let mut sites = vec![format!("*.{}", cfg.domain)];
    sites.extend(extra.iter().cloned());
    writeln!(out, "{} {{", sites.join(", ")).unwrap();
    if !cfg.listen.is_empty() {
        writeln!(out, "\tbind {}", cfg.listen.join(" ")).unwrap();
    }
    match cfg.tls {
        Tls::Internal => writeln!(out, "\ttls internal").unwrap(),
        // A certificate per host name when it is first asked for: a wildcard
        // would need a DNS challenge, which Debian's Caddy cannot do.
        Tls::Acme => writeln!(out, "\ttls {{\n\t\ton_demand\n\t}}").unwrap(),
        Tls::Files => writeln!(out, "\ttls {} {}", cfg.cert_file, cfg.key_file).unwrap(),
    }
    write!(
        out,
        "\t@tenant file {{\n\
         \t\troot {PROXY_HOSTS_DIR}\n\
         \t\ttry_files {{host}}/gateway.sock\n\
         \t}}\n\
         \t# WebSocket upgrades pass as they are; X-Forwarded-For names the\n\
         \t# client, and each gateway trusts it from loopback (gateway.trustedProxies).\n\
         \thandle @tenant {{\n\
         \t\t# Invite links (`ocusers invite`): ocusers-invite.socket.\n\
         \t\thandle {INVITE_PREFIX}* {{\n\
         \t\t\treverse_proxy {INVITE_ADDR}\n\
         \t\t}}\n\
         \t\thandle {{\n\
         \t\t\treverse_proxy unix/{PROXY_HOSTS_DIR}/{{host}}/gateway.sock\n\
         \t\t}}\n\
         \t}}\n\
         \thandle {{\n\
         \t\trespond \"no OpenClaw tenant at this address\" 404\n\
         \t}}\n\
         }}\n"
    )
    .unwrap();
    out
}

//! The Caddy include: one site for `*.DOMAIN` and the extra domains that
//! routes each host name to its link in the hosts directory.
use std::fmt::Write as _;

use super::{ProxyConfig, Tls};
use crate::paths::PROXY_HOSTS_DIR;

pub fn render(cfg: &ProxyConfig, extra: &[String]) -> String {
    let mut out = String::new();
    let include = cfg.caddy_include.display();
    let main = cfg.caddy_config.display();
    writeln!(
        out,
        "# Written by ocusers from its tenant registry (`ocusers proxy sync`); do not\n\
         # edit, changes are overwritten. {main} includes it with:\n\
         #     import {include}\n\
         #\n\
         # Tenant TENANT answers at TENANT.{domain} and its extra domains: each host\n\
         # name HOST is a link {PROXY_HOSTS_DIR}/HOST.sock to the tenant's\n\
         # socket /run/ocusers/proxy/TENANT.sock (openclaw-proxy@TENANT.socket), which\n\
         # relays to the tenant's gateway on loopback. Adding or removing a tenant\n\
         # changes the links, not this file, so Caddy is not reloaded for it.",
        domain = cfg.domain
    )
    .unwrap();
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
         \t\ttry_files {{host}}.sock\n\
         \t}}\n\
         \t# WebSocket upgrades pass as they are; X-Forwarded-For names the\n\
         \t# client, and each gateway trusts it from loopback (gateway.trustedProxies).\n\
         \treverse_proxy @tenant unix/{PROXY_HOSTS_DIR}/{{host}}.sock\n\
         \trespond \"no OpenClaw tenant at this address\" 404\n\
         }}\n"
    )
    .unwrap();
    out
}

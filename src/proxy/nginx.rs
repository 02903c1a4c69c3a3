//! The nginx include (`conf.d`, inside `http {}`): HTTPS for `.DOMAIN` and
//! the extra domains with the operator's certificate, each host name
//! proxied to its link in the hosts directory; plain HTTP redirects.
use std::fmt::Write as _;

use super::ProxyConfig;
use super::{INVITE_ADDR, INVITE_PATH_PREFIX as INVITE_PREFIX};
use crate::paths::PROXY_HOSTS_DIR;

pub fn render(cfg: &ProxyConfig, extra: &[String]) -> String {
    let mut out = String::new();
    out.push_str(&super::header(
        cfg,
        "Debian's nginx.conf includes conf.d/*.conf.",
    ));
    out.push('\n');
    out.push_str(
        "map $http_upgrade $ocusers_connection_upgrade {\n\tdefault upgrade;\n\t''      close;\n}\n\n",
    );
    let mut names = vec![format!(".{}", cfg.domain)];
    names.extend(extra.iter().cloned());
    let names = names.join(" ");
    let listen = |port: &str, ssl: &str| -> String {
        let mut s = String::new();
        if cfg.listen.is_empty() {
            writeln!(s, "\tlisten {port}{ssl};\n\tlisten [::]:{port}{ssl};").unwrap();
        } else {
            for a in &cfg.listen {
                let a = if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.clone()
                };
                writeln!(s, "\tlisten {a}:{port}{ssl};").unwrap();
            }
        }
        s
    };
    write!(
        out,
        "server {{\n{listen_tls}\
         \tserver_name {names};\n\
         \tssl_certificate {cert};\n\
         \tssl_certificate_key {key};\n\
         \tif (!-d {PROXY_HOSTS_DIR}/$host) {{\n\
         \t\treturn 404;\n\
         \t}}\n\
         \t# Invite links (`ocusers invite`): ocusers-invite.socket.\n\
         \tlocation {INVITE_PREFIX} {{\n\
         \t\tproxy_pass http://{INVITE_ADDR};\n\
         \t\tproxy_http_version 1.1;\n\
         \t\tproxy_set_header Host $host;\n\
         \t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \t\tproxy_set_header X-Forwarded-Proto $scheme;\n\
         \t\tproxy_read_timeout 90s;\n\
         \t}}\n\
         \tlocation / {{\n\
         \t\tproxy_pass http://unix:{PROXY_HOSTS_DIR}/$host/gateway.sock:;\n\
         \t\tproxy_http_version 1.1;\n\
         \t\tproxy_set_header Host $host;\n\
         \t\tproxy_set_header Upgrade $http_upgrade;\n\
         \t\tproxy_set_header Connection $ocusers_connection_upgrade;\n\
         \t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \t\tproxy_set_header X-Forwarded-Proto $scheme;\n\
         \t\tproxy_buffering off;\n\
         \t\tproxy_read_timeout 1d;\n\
         \t\tproxy_send_timeout 1d;\n\
         \t}}\n\
         }}\n\n\
         server {{\n{listen_plain}\
         \tserver_name {names};\n\
         \treturn 301 https://$host$request_uri;\n\
         }}\n",
        listen_tls = listen("443", " ssl"),
        listen_plain = listen("80", ""),
        cert = cfg.cert_file,
        key = cfg.key_file,
    )
    .unwrap();
    out
}

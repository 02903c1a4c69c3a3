//! The proxy's admin API (host-wide): with Caddy's admin on TCP any local
//! process, a tenant's agent included, can replace the proxy's whole
//! configuration and so read every tenant's traffic. See
//! [`crate::proxy::admin`].
use crate::config::HostConfig;

/// The failure line, naming the fix, while Caddy's admin API is on TCP.
pub(super) fn admin_failure(cfg: &HostConfig) -> Option<String> {
    crate::proxy::admin::problem(&cfg.proxy)
        .map(|(detail, fix)| format!("proxy admin: {detail}: {fix}"))
}

//! The audit's look inside each tenant's state: what root will not follow
//! or open (links that point outside, FIFOs, sockets, devices, hard links to
//! others' files). A warning, not a failure: it is the tenant's own
//! directory, and ocusers acts on it only through descriptors that do not
//! follow these (see src/safefs.rs). The scan is bounded in entries and time
//! and says when it was cut.
use crate::paths::Paths;

use super::Tenant;

/// One warning line for the tenant, or nothing.
pub(super) fn warning(paths: &Paths, t: &Tenant) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let account = t.account.as_ref()?;
    let line = crate::statedir::hazards(
        paths,
        &t.record.name,
        account,
        crate::statedir::scan_limits().max_time,
    )?;
    Some(format!(
        "{}: state: {line} (the tenant's own files; remove them as the tenant if unwanted: `sudo ocusers exec {} -- rm PATH`)",
        t.record.name, t.record.name
    ))
}

//! The privilege check every changing command makes before touching the host.
use caps::{CapSet, Capability};

use crate::error::Error;

/// What creating users, chowning state and talking to systemd needs.
const NEEDED: [Capability; 4] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_SETUID,
];

/// Fail with a one-line error unless we are root with the capabilities that
/// the change needs.
pub fn require_root(command: &str) -> Result<(), Error> {
    let is_root = nix::unistd::geteuid().is_root();
    let has_caps = NEEDED
        .iter()
        .all(|cap| caps::has_cap(None, CapSet::Effective, *cap).unwrap_or(false));
    if is_root && has_caps {
        Ok(())
    } else {
        Err(Error::NotRoot {
            command: command.to_string(),
        })
    }
}

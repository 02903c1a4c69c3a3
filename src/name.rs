//! Tenant names: what a tenant may be called, checked once
//! ([`TenantName::parse`]) so every path, user and unit built from one is
//! safe. It depends on nothing but the error type, so `paths`, `tenant` and
//! `policy` all use it without importing each other in a circle.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Prefix of every tenant's system user and group (`oc-alice`). Fixed: the
/// shipped template unit says `User=oc-%i`.
pub const USER_PREFIX: &str = "oc-";
/// Linux user names are at most 32 bytes (useradd's limit).
pub const MAX_USER_NAME: usize = 32;

/// Names a tenant may not take: system accounts, names that read as roles
/// or services, and ocusers' and OpenClaw's own names.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "admin",
    "administrator",
    "www",
    "www-data",
    "web",
    "api",
    "localhost",
    "host",
    "default",
    "all",
    "none",
    "self",
    "system",
    "systemd",
    "messagebus",
    "sshd",
    "postmaster",
    "hostmaster",
    "webmaster",
    "support",
    "security",
    "staff",
    "users",
    "operator",
    "caddy",
    "nginx",
    "openclaw",
    "ocusers",
    "oc",
    "tenant",
    "tenants",
    "runtime",
    "runtimes",
    "by-tenant",
    "archive",
    // Command words (see COMMAND_WORDS) reserved before tenants could exist
    // under them.
    "verify",
    "help",
];

/// Words the CLI reads as a subcommand where a tenant name may stand, and
/// the commands that read them: a tenant by such a name could never be
/// invited, backed up or shown its devices. New tenants may not take them
/// ([`TenantName::check_new`]); `cli::tests` checks this list against
/// clap's own command tree. `list`, `verify` and `help` were reserved from
/// the start (see RESERVED); an existing tenant named `revoke` or
/// `approve`, made before those words were commands, still loads and can be
/// addressed by every other command.
const COMMAND_WORDS: &[(&str, &str)] = &[
    ("list", "`ocusers invite list`, `ocusers devices NAME list`"),
    (
        "revoke",
        "`ocusers invite revoke`, `ocusers devices NAME revoke`",
    ),
    ("approve", "`ocusers devices NAME approve`"),
    ("verify", "`ocusers backup verify`"),
    ("help", "`ocusers invite help`, `ocusers backup help`, ..."),
];

/// Why `raw` may not name a new tenant, if it is a command word.
fn command_word(raw: &str) -> Option<String> {
    COMMAND_WORDS
        .iter()
        .find(|(w, _)| *w == raw)
        .map(|(w, used)| format!("'{w}' is reserved as a subcommand ({used}); choose another name"))
}

/// A validated tenant name: a DNS label that also makes a valid Linux user
/// name with the `oc-` prefix and a systemd instance name that needs no
/// escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    pub fn max_len() -> usize {
        MAX_USER_NAME - USER_PREFIX.len()
    }

    pub fn parse(raw: &str) -> Result<TenantName, Error> {
        let bad = |reason: String| Error::InvalidName {
            name: raw.to_string(),
            reason,
        };
        let rule = "use lower-case letters, digits and '-', starting with a letter (like alice or bob-smith)";
        if raw.is_empty() {
            return Err(bad(format!("the name is empty; {rule}")));
        }
        if raw.len() > Self::max_len() {
            return Err(bad(format!(
                "longer than {} characters (the user name {USER_PREFIX}NAME must fit in {MAX_USER_NAME}); choose a shorter name",
                Self::max_len()
            )));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            let what = if c.is_ascii_uppercase() {
                "upper-case letters are not allowed".to_string()
            } else {
                format!("character {c:?} is not allowed")
            };
            return Err(bad(format!("{what}; {rule}")));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(bad(format!("it must start with a letter; {rule}")));
        }
        if raw.ends_with('-') {
            return Err(bad(format!("it must not end with '-'; {rule}")));
        }
        if raw.contains("--") {
            return Err(bad(format!("'--' is not allowed; {rule}")));
        }
        if RESERVED.contains(&raw) || raw.starts_with(USER_PREFIX) {
            return Err(bad(command_word(raw).unwrap_or_else(|| {
                "this name is reserved (a system account, role or ocusers' own name); choose another"
                    .to_string()
            })));
        }
        Ok(TenantName(raw.to_string()))
    }

    /// For a tenant about to be made (`add`, `apply`, `restore` of a name
    /// not registered yet): refuse the words the CLI reads as subcommands
    /// where a tenant name may stand (`ocusers invite list`).
    pub fn check_new(&self) -> Result<(), Error> {
        match command_word(&self.0) {
            Some(reason) => Err(Error::InvalidName {
                name: self.0.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The command words new tenants may not take (for tests).
    #[cfg(test)]
    pub(crate) fn command_words() -> impl Iterator<Item = &'static str> {
        COMMAND_WORDS.iter().map(|(w, _)| *w)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        TenantName::parse(&s)
    }
}

impl From<TenantName> for String {
    fn from(n: TenantName) -> String {
        n.0
    }
}

//! The plans that change a tenant's environment file alone: `secret set`,
//! `secret unset` and `token rotate` (each may end with the restart step).
use anyhow::{Context, Result};

use super::push_restart;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::secrets::{self, EnvFile};
use crate::systemd::Systemd;
use crate::tenant::{Record, TenantName};

/// The tenant's env file; missing is an error naming `repair`.
pub fn load_env(paths: &Paths, name: &TenantName) -> Result<EnvFile> {
    let path = paths.secrets_file(name);
    EnvFile::load(&path)?.with_context(|| {
        format!(
            "{} is missing: run `sudo ocusers repair` to recreate it",
            path.display()
        )
    })
}

/// Set `key` to `value` (both checked by the caller) in the env file.
pub fn set<'a>(paths: &'a Paths, record: &'a Record, key: &'a str, value: String) -> Plan<'a> {
    let name = &record.name;
    let path = paths.secrets_file(name);
    let mut plan = Plan::new(name.as_str(), "secret-set");
    let wanted = value.clone();
    plan.push(Step::new(
        format!("set {key} in {}", path.display()),
        move || Ok(load_env(paths, name)?.get(key) == Some(wanted.as_str())),
        move || {
            let mut env = load_env(paths, name)?;
            env.set(key, &value)?;
            env.store(&path, name.as_str())
        },
    ));
    plan
}

/// Remove `key` (checked by the caller) from the env file.
pub fn unset<'a>(paths: &'a Paths, record: &'a Record, key: &'a str) -> Plan<'a> {
    let name = &record.name;
    let path = paths.secrets_file(name);
    let mut plan = Plan::new(name.as_str(), "secret-unset");
    plan.push(Step::new(
        format!("remove {key} from {}", path.display()),
        move || Ok(load_env(paths, name)?.get(key).is_none()),
        move || {
            let mut env = load_env(paths, name)?;
            env.unset(key);
            env.store(&path, name.as_str())
        },
    ));
    plan
}

/// `token rotate`: the env file as it is and the fresh token, read before
/// the bus is opened.
pub struct Rotation {
    old: Option<EnvFile>,
    new_token: String,
}

impl Rotation {
    pub fn new(paths: &Paths, record: &Record) -> Result<Rotation> {
        Ok(Rotation {
            old: EnvFile::load(&paths.secrets_file(&record.name))?,
            new_token: secrets::new_token()?,
        })
    }

    /// The new token in the env file, then the restart; a failure puts the
    /// old file back (see [`after_failed_rotation`]).
    pub fn plan<'a>(self, paths: &'a Paths, sd: &'a dyn Systemd, record: &'a Record) -> Plan<'a> {
        let Rotation { old, new_token } = self;
        let name = &record.name;
        let path = paths.secrets_file(name);
        let mut plan = Plan::new(name.as_str(), "token-rotate");
        let (p_apply, p_revert) = (path.clone(), path.clone());
        plan.push(
            Step::new(
                format!("write a new {} into {}", secrets::TOKEN_KEY, path.display()),
                || Ok(false),
                move || {
                    let mut env = EnvFile::load(&p_apply)?.unwrap_or_default();
                    env.set(secrets::TOKEN_KEY, &new_token)?;
                    env.store(&p_apply, name.as_str())
                },
            )
            .revert(move || match &old {
                Some(env) => env.store(&p_revert, name.as_str()),
                None => Ok(()),
            }),
        );
        push_restart(&mut plan, paths, sd, record);
        plan
    }
}

/// After a failed rotation the old token is back in the file: start the
/// gateway with it (best effort; the plan's error is what the operator
/// sees).
pub fn after_failed_rotation(sd: &dyn Systemd, name: &TenantName) {
    let unit = paths::unit_name(name);
    let _ = sd.reset_failed(&unit);
    let _ = sd.restart(&unit);
}

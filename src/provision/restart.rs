//! The restart-and-wait step: `secret --restart`, `token rotate`, `restore`
//! and `repair` end with it.
use crate::error::Error;
use crate::paths::{self, Paths};
use crate::plan::{Plan, Step};
use crate::systemd::Systemd;
use crate::tenant::Record;

/// Restart the tenant's gateway and wait until it answers ready.
pub fn push_restart<'a>(
    plan: &mut Plan<'a>,
    paths: &'a Paths,
    sd: &'a dyn Systemd,
    record: &'a Record,
) {
    let unit = paths::unit_name(&record.name);
    let timeout = crate::config::HostConfig::load(paths)
        .map(|c| c.tenants.ready_timeout)
        .unwrap_or(180);
    plan.push(Step::new(
        format!("restart {unit} and wait until it is ready (at most {timeout} s)"),
        || Ok(false),
        move || {
            sd.reset_failed(&unit)?;
            if crate::sleep::is_sleeper(paths, &record.name) {
                // A sleeper's gateway runs only while its relay needs it.
                crate::sleep::restart(paths, sd, &record.name)?;
            } else {
                sd.restart(&unit)?;
            }
            crate::health::wait_unit_ready(
                sd,
                &unit,
                record.port,
                std::time::Duration::from_secs(timeout),
            )
            .map(|_| ())
            .map_err(|detail| {
                Error::NotReady {
                    name: record.name.to_string(),
                    seconds: timeout,
                    detail,
                }
                .into()
            })
        },
    ));
}

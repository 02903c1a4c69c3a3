//! ocusers: one hardened OpenClaw gateway per tenant on one Linux host.
//!
//! Each tenant is a dedicated system user with its own state directory,
//! secrets file and port block, and an instance of the `openclaw@.service`
//! template. systemd is the source of truth for runtime state; ocusers keeps
//! only what systemd does not know (see [`tenant::Record`]).
//!
//! Three layers; every `use crate::` points down, never up, and no two
//! modules import each other (`farm-studio look` draws it):
//! - [`cli`]: arguments, the host lock, printing, exit codes. It opens the
//!   system's systemd (the one place that does) and hands it down.
//! - The domain: [`provision`] (the plans that add, converge, remove,
//!   restore and repair a tenant), the read commands' logic ([`status`],
//!   [`doctor`], [`audit`], [`metrics`], [`history`]) and one module per
//!   concern a plan's steps touch ([`backup`], [`invite`], [`proxy`],
//!   [`firewall`], [`runtime`], [`upgrade`], [`statedir`], [`secrets`],
//!   [`ports`], [`capacity`], [`policy`], [`config`], [`tenant`]).
//! - Adapters to the OS: [`systemd`] (D-Bus), [`identity`] (users),
//!   [`safefs`] and [`fsutil`] (files, by descriptor under a tenant's
//!   tree), [`process`], [`tenant_exec`] (running as the tenant),
//!   [`cgroup`], [`lock`], [`logging`]; under everything the plain facts:
//!   [`paths`] (every path), [`name`] (the tenant name), [`plan`],
//!   [`error`], [`display`].
//!
//! A new command: its file in `src/cli/` (arguments and printing only),
//! its logic in the domain module it belongs to, a new plan in
//! `src/provision/`. A new path goes in [`paths::Paths`]; a new fact about
//! the host gets one definition here that the others call.
pub mod audit;
pub mod backup;
pub mod capacity;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod devices;
pub mod display;
pub mod doctor;
pub mod error;
pub mod firewall;
pub mod fsutil;
pub mod health;
pub mod history;
pub mod identity;
pub mod invite;
pub mod isolation;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod name;
pub mod onetenant;
pub mod openclaw_config;
pub mod paths;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod privilege;
pub mod process;
pub mod provision;
pub mod proxy;
pub mod runtime;
pub mod safefs;
pub mod secrets;
pub mod sleep;
pub mod startgate;
pub mod statedir;
pub mod status;
pub mod systemd;
pub mod tenant;
pub mod tenant_exec;
pub mod upgrade;

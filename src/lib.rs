//! ocusers: one hardened OpenClaw gateway per tenant on one Linux host.
//!
//! Each tenant is a dedicated system user with its own state directory,
//! secrets file and port block, and an instance of the `openclaw@.service`
//! template. systemd is the source of truth for runtime state; ocusers keeps
//! only what systemd does not know (see [`tenant::Record`]).
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
pub mod statedir;
pub mod status;
pub mod systemd;
pub mod tenant;
pub mod tenant_exec;
pub mod upgrade;

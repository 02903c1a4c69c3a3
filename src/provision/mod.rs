//! Provisioning: a tenant's desired state and the plans that make the host
//! match it. Each plan is a list of idempotent [`crate::plan::Step`]s; a
//! step's check and action call the domain module it touches (identity,
//! statedir, secrets, runtime, systemd, firewall, proxy, backup, process),
//! as `proxy/steps.rs` does for the proxy.
//!
//! - [`add`]: [`Ctx`], the tenant as it should be (one constructor from the
//!   record and the host config), and the add plan, which creates a tenant
//!   and converges an existing one (`add`, `apply`, `set`, `domain`,
//!   `restore`, `repair`).
//! - [`request`]: what `add` asks ([`request::Request`]), checked
//!   ([`request::resolve`]) and made into the record ([`request::prepare`]).
//! - [`converge`]: `apply`'s run over many tenants' plans (`set` and
//!   `domain` use it for one).
//! - [`remove`]: the remove plan, and [`remove::remove`], the whole removal
//!   (`remove`, `restore --force`, `repair --remove-orphans`).
//! - [`restore`]: a tenant from a backup: its record on this host and the
//!   steps after the add plan.
//! - [`repair`]: what drifted on a tenant and the steps after its add plan
//!   that put it back (`repair`).
//! - [`secret`]: `secret set`/`unset` and `token rotate`, the plans that
//!   change the env file alone.
//! - [`restart`]: the restart-and-wait step (`secret --restart`, `token`,
//!   `restore`, `repair`).
//!
//! A new plan goes in its own file here, built from the domain modules'
//! functions; `src/cli/` only parses the arguments, takes the host lock,
//! prints and picks the exit code. Nothing here depends on the command line.
//! Each plan's steps, as `--dry-run` prints them, are a golden file in
//! `tests/golden/plans/` (see `tests.rs`), and the tree and the systemd and
//! account calls the plan leaves when applied against a temporary root are
//! one in `tests/golden/applied/` (see `tests/applied.rs`, with
//! `systemd::fake` and `identity::fake`): a new plan adds one to each.
pub mod add;
pub mod converge;
pub mod remove;
pub mod repair;
pub mod request;
pub mod restart;
pub mod restore;
pub mod secret;

pub use add::{Ctx, Start, check_identity};
pub use restart::push_restart;

#[cfg(test)]
mod tests;

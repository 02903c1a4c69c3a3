//! The one test harness of this crate: every test and bench binary includes it once, as
//! `#[path = "../support/mod.rs"] mod support;` (from `tests/NAME/main.rs`; `mod support;`
//! from `tests/NAME.rs`, `#[path = "../tests/support/mod.rs"]` from `bench/`), and uses its
//! parts by name (`support::nspawn::Container`, `support::assert::ensure`, ...).
//!
//! * [`process`]: host commands with a timeout, logs, signals, `/proc`, describing an output.
//! * [`assert`]: what a check returns ([`assert::R`]), `ensure`, `wait_for`, golden files.
//! * [`trials`]: a heavy tier's `main`: trial selection (`OCUSERS_TRIALS`), one shared fixture,
//!   `[time]` and `[figures]` lines.
//! * [`deb`]: the .deb of this tree, built once for all tiers and benches.
//! * [`rootfs`]: the cached Debian 12 root; [`nspawn`]: containers booted from it;
//!   [`vm`]: the qemu guest image and machine.
//! * [`stub_runtime`]: the stub OpenClaw runtime; [`craft`]: hand-made backup archives.
//!
//! The next helper that two binaries need goes here, in the module of its concern (a new
//! module if none fits, listed above), never copied into a tier.

// Each binary uses a different subset of the harness; the rest is dead code there.
#![allow(dead_code)]

pub mod assert;
pub mod craft;
pub mod deb;
pub mod nspawn;
pub mod process;
pub mod rootfs;
pub mod stub_runtime;
pub mod trials;
pub mod vm;

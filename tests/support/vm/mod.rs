//! The VM tier's machine: a qemu guest (TCG; `/dev/kvm` hangs guests on these hosts) with a real
//! kernel and cgroup v2, where memory, task and CPU limits, systemd's BPF socket-bind filter and
//! nftables are enforced — none of which a systemd-nspawn container on this host can show.
//!
//! * [`ensure_guest_image`] builds (once, cached under [`CACHE_DIR`], keyed, flock-guarded) a raw
//!   ext4 disk from the system tier's cached Debian 12 root ([`ensure_base_root`], reused, not
//!   copied): upgraded in place to Debian 13 ("trixie", systemd 257 built with `+BPF_FRAMEWORK`,
//!   kernel 6.12) — Debian 12's systemd 252 is built without the BPF framework, so
//!   `SocketBindAllow=` is accepted there but not enforced — plus nftables, the kernel and a
//!   command runner. The kernel and initrd are kept next to the disk and booted directly.
//! * [`Vm::boot`] starts qemu on that disk with `snapshot=on` (the cached disk is never written),
//!   no network card (`-nic none`) and a 9p share as the command channel: the host drops
//!   `q/N.sh`, the guest's runner executes it as root and writes `q/N.out`, `q/N.err`, `q/N.rc`.
//! * Dropping a [`Vm`] powers the guest off (bounded wait), kills qemu if needed and deletes the
//!   share; qemu also gets a parent-death signal, so no VM outlives the test binary.
//!
//! [`image`] builds and caches the disk; [`guest`] boots and drives it.
pub mod guest;
pub mod image;

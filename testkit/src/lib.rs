//! Test helpers shared by colo's crates.
//!
//! * [`host_lock`] serialises tests that need KVM, cgroups or steady timing across every test
//!   binary on the machine (a `flock` on one file), so two timing-sensitive checks never fight
//!   for the two cores of a CI machine.
//! * [`TestCgroup`] creates a uniquely named cgroup subtree `colo-test-<pid>-<n>` at the root of
//!   each cgroup v1 hierarchy it needs (or under the v2 root), always with a memory limit, and
//!   removes it on drop, also when the test panics.
//! * [`kvm_or_skip`] tells a test whether `/dev/kvm` is usable, and says loudly when it is not
//!   (or fails the test when `COLO_REQUIRE_KVM=1`).
//! * [`TestCa`] makes a throwaway CA and issues certificates from it with the `openssl`
//!   command, for TLS tests.
//! * [`busybox_rootfs`] builds a busybox root filesystem for container tests.
//! * [`workspace_binary`] finds another package's binary (colo-agent, coloctl) in the target
//!   directory, for tests that run both.
//!
//! The crate also builds `colo-vmm-standin` (`src/bin/vmm_standin/`), a test-only stand-in for
//! `colo-vmm run` that runs the guest in QEMU with TCG, for hosts whose KVM cannot run Linux
//! guest user space (docs/vmm.md).

mod binaries;
mod cgroup;
mod kvm;
mod lock;
mod pki;
mod rootfs;

pub use binaries::workspace_binary;
pub use cgroup::{CgroupError, CgroupVersion, TestCgroup, cgroup_version};
pub use kvm::{kvm_or_skip, root_or_skip};
pub use lock::{HostLock, host_lock};
pub use pki::{CertFiles, TestCa};
pub use rootfs::{BUSYBOX, busybox_or_skip, busybox_rootfs};

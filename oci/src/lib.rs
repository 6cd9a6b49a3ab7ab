//! OCI containers for colo, independent of colo's jobs: what the agent's container sandbox
//! needs from the OCI world.
//!
//! | module | what |
//! |---|---|
//! | [`bundle`] | a bundle's `config.json` (the OCI runtime spec) from a plain description |
//! | [`seccomp`] | the container ecosystem's default seccomp profile (containers-common's `seccomp.json`) turned into the runtime spec's form |
//! | [`image`] | root filesystems: a directory used in place, or an OCI image layout / `docker save` tarball unpacked once into a content-addressed store |
//! | [`runtime`] | the OCI runtime's command line (runc or crun): create, start, state, pause, resume, kill, delete |

pub mod bundle;
pub mod image;
pub mod runtime;
pub mod seccomp;

/// The OCI runtime and image spec types, in the one version colo builds against.
pub use oci_spec;

//! The workspace's binaries, for tests of another package: cargo hands a test only its own
//! package's binaries (`CARGO_BIN_EXE_<name>`), so a coloctl test that needs a colo-agent (or an
//! agent test that runs coloctl) finds it in the target directory the test was built into.

use std::path::{Path, PathBuf};

/// `target/<profile>/<name>`, the binary `name` of this workspace, built into the same target
/// directory and profile as the running test.
///
/// # Panics
///
/// When it is not there, naming the command that builds it (`cargo build -p <name>`;
/// `cargo test --workspace` builds every binary before it runs the tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p {name}` (same profile as the tests), or run \
         `cargo test --workspace`",
        path.display()
    );
    path
}

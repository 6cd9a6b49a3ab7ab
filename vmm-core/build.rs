//! Builds colo's workload guest (`guest/workload/`) from source: GNU assembler and ld through
//! the C compiler driver the `cc` crate finds, no extra Rust target needed.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = dir.join("guest/workload/workload.S");
    let script = dir.join("guest/workload/workload.ld");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", script.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"))
        .join("colo-workload-guest.elf");

    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .warnings(false)
        .get_compiler();
    let mut cmd = Command::new(compiler.path());
    cmd.args(["-m64", "-nostdlib", "-static", "-no-pie"])
        .arg(format!("-Wl,-T,{}", script.display()))
        .args([
            "-Wl,--build-id=none",
            "-Wl,-n",
            "-Wl,--no-warn-rwx-segments",
            "-o",
        ])
        .arg(&out)
        .arg(&src);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {:?}: {e}", compiler.path()));
    assert!(
        status.success(),
        "building the workload guest failed ({status}): {cmd:?}; install gcc and binutils"
    );
    println!(
        "cargo:rustc-env=COLO_WORKLOAD_GUEST_BUILT={}",
        out.display()
    );
}

//! The real `colo-bench headline` against a nginx that serves and one that does not, with an
//! `--out` of mode 0700 and a umask of 077 (what `mktemp -d` gives a new user):
//!
//! * nginx with its document root removed (a wrapper ahead of it on `PATH` deletes the root,
//!   then runs the real nginx): the run is reported invalid with its cause, the bench exits
//!   non-zero, and no goal reads `— met`;
//! * the real nginx: its workers read the document root under that `--out`, the run is valid.
//!
//! Runs are short (3 s, 1 s of it warm-up, 500 req/s) and only mode (1), the first in the
//! rotation, needs to run, so no VM starts; the bench's cgroups and port are host-wide, hence
//! the host lock.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BENCH: &str = env!("CARGO_BIN_EXE_colo-bench");

/// The real nginx, as the bench would find it.
fn nginx() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file())
}

/// Whether this host can run the test; says loudly why not.
fn runnable(test: &str) -> Option<PathBuf> {
    if !colo_testkit::root_or_skip(test) {
        return None;
    }
    let found = nginx();
    if found.is_none() {
        eprintln!("\n*** SKIPPED {test}: nginx not found (apt-get install nginx-light) ***\n");
    }
    found
}

/// A private results directory, as `mktemp -d` makes it.
fn private_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    d
}

/// Runs a short headline under umask 077 with `path_first` ahead on `PATH`.
fn headline(out: &Path, modes: &str, path_first: Option<&Path>) -> Output {
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(p) = path_first {
        path = format!("{}:{path}", p.display());
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(BENCH)
        .args(["headline", "--scenarios", "cpu", "--modes", modes])
        .args(["--repeats", "1", "--duration", "3", "--warmup", "1"])
        .args(["--rate", "500", "--out"])
        .arg(out)
        .env("PATH", path)
        .output()
        .expect("run colo-bench");
    eprintln!(
        "--- colo-bench stdout:\n{}\n--- colo-bench stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_run_where_nginx_serves_nothing_is_invalid_and_fails_the_bench() {
    let Some(real) = runnable("a_run_where_nginx_serves_nothing_is_invalid_and_fails_the_bench")
    else {
        return;
    };
    let _lock = colo_testkit::host_lock();
    let dir = private_dir();
    let bin = tempfile::tempdir().expect("tempdir");
    let wrapper = bin.path().join("nginx");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# nginx without its document root: remove <prefix>/www, then run nginx.\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = -p ]; then rm -rf \"$a/www\"; fi\n  prev=$a\ndone\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = headline(dir.path(), "alone,colo", Some(bin.path()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the bench must fail: {:?}",
        out.status
    );
    assert!(
        stderr.contains("headline cpu alone rep 0 (attempt 1 of 3): INVALID run"),
        "the invalid run is reported"
    );
    assert!(
        stderr.contains("the service answered 0 req/s of the 500 asked"),
        "with its cause"
    );
    assert!(stderr.contains("× HTTP 404"), "the load generator's counts");
    assert!(
        stderr.contains("nginx's error log") && stderr.contains("No such file or directory"),
        "nginx's own words"
    );
    assert!(
        stderr.contains("the online service was not measured; stopping"),
        "the bench stops"
    );
    for text in [&*stdout, &*stderr] {
        assert!(!text.contains("— met"), "no goal is met on nothing");
    }
    assert!(
        stdout.contains("- latency goal p99(4) ≤ 1.05 × p99(1) — NOT measured"),
        "the goals say so"
    );
    let md = std::fs::read_to_string(dir.path().join("headline.md")).expect("headline.md");
    assert!(md.contains("NOT measured") && !md.contains("— met"), "{md}");
    let csv = std::fs::read_to_string(dir.path().join("runs.csv")).expect("runs.csv");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("cpu,alone,0,") && l.contains(",false,\"")),
        "{csv}"
    );
}

#[test]
fn nginx_serves_from_a_private_out_directory() {
    if runnable("nginx_serves_from_a_private_out_directory").is_none() {
        return;
    }
    let _lock = colo_testkit::host_lock();
    let dir = private_dir();
    let out = headline(dir.path(), "alone", None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the bench must pass: {:?}",
        out.status
    );
    assert!(!stderr.contains("INVALID"), "the run is valid");
    assert!(stdout.contains("| (1) alone | "), "{stdout}");
    assert!(!stdout.contains("NOT measured"), "{stdout}");
}

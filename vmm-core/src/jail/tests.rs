use super::*;

fn jail(uid: u32, gid: u32, writable: &[&str]) -> Jail {
    Jail {
        uid,
        gid,
        writable: writable.iter().map(PathBuf::from).collect(),
        max_threads: 4,
    }
}

#[test]
fn root_ids_and_relative_paths_are_refused_with_the_fix() {
    let e = check(&jail(0, 5, &["/a"])).unwrap_err().to_string();
    assert!(e.contains("must not be 0"), "{e}");
    let e = check(&jail(5, 0, &["/a"])).unwrap_err().to_string();
    assert!(e.contains("must not be 0"), "{e}");
    let e = check(&jail(5, 5, &["/a", "rel/dir"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rel/dir is relative") && e.contains("absolute"),
        "{e}"
    );
    check(&jail(5, 5, &["/a"])).unwrap();
}

#[test]
fn capabilities_are_read_back() {
    let [eff, perm, _] = capabilities().unwrap();
    // Whatever this process holds, the effective set is part of the permitted one.
    assert_eq!(eff & !perm, 0, "{eff:x} {perm:x}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(eff, 0, "root without capabilities");
    }
}

#[test]
fn the_parent_directory_of_a_bare_name_is_the_current_one() {
    assert_eq!(parent_dir(Path::new("/a/b/c.sock")), PathBuf::from("/a/b"));
    assert_eq!(parent_dir(Path::new("c.sock")), PathBuf::from("."));
}

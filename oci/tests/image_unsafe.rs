//! Hostile layer entries: nothing is ever written, linked or removed outside the rootfs.

mod image_fixtures;

use std::fs;
use std::path::Path;

use colo_oci::image::{ImageError, ImageStore, RootFs};
use image_fixtures::{Item, docker_save, layer, tree};

const MIB: u64 = 1 << 20;

/// A temp dir with a store and a host directory `outside` holding `victim`.
struct Scene {
    dir: tempfile::TempDir,
    store: ImageStore,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("outside")).expect("mkdir");
        fs::write(dir.path().join("outside/victim"), b"host data").expect("victim");
        let store = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("open");
        Scene { dir, store }
    }

    fn outside(&self) -> std::path::PathBuf {
        self.dir.path().join("outside")
    }

    fn resolve(&self, layers: &[Vec<u8>]) -> Result<RootFs, ImageError> {
        let tarball = self.dir.path().join("image.tar");
        docker_save(&tarball, layers, false);
        self.store.resolve(&tarball, &[])
    }

    /// The host side is as it was.
    fn assert_host_untouched(&self) {
        assert_eq!(
            tree(&self.outside()),
            ["victim"],
            "nothing added or removed outside"
        );
        assert_eq!(
            fs::read(self.outside().join("victim")).expect("victim"),
            b"host data"
        );
        assert!(!self.dir.path().join("escape").exists());
    }

    fn assert_store_empty(&self) {
        assert!(tree(&self.dir.path().join("store/sha256")).is_empty());
        assert!(tree(&self.dir.path().join("store/tmp")).is_empty());
    }
}

#[test]
fn dot_dot_entries_are_refused() {
    let scene = Scene::new();
    // rootfs is store/tmp/<x>/rootfs: four levels up is the test's temp dir.
    let err = scene
        .resolve(&[layer(&[Item::RawFile(b"../../../../escape", b"x")])])
        .unwrap_err();
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("../../../../escape"), "{err}");
    scene.assert_host_untouched();
    scene.assert_store_empty();
}

#[test]
fn absolute_entries_land_inside_the_rootfs() {
    let scene = Scene::new();
    let host_path = format!("/tmp/colo-oci-abs-{}", std::process::id());
    let rootfs = scene
        .resolve(&[layer(&[Item::RawFile(host_path.as_bytes(), b"inside")])])
        .expect("resolve");
    assert!(
        !Path::new(&host_path).exists(),
        "nothing written at the host path"
    );
    let inside = rootfs.path.join(host_path.trim_start_matches('/'));
    assert_eq!(fs::read(inside).expect("inside"), b"inside");
}

#[test]
fn symlinked_parents_resolve_inside_the_rootfs() {
    let scene = Scene::new();
    let outside = scene.outside().display().to_string();
    let rootfs = scene
        .resolve(&[
            layer(&[
                Item::Symlink("evil", &outside),
                Item::Symlink("up", "../../../../.."),
                Item::Symlink("target", &format!("{outside}/victim")),
            ]),
            layer(&[
                Item::File("evil/pwned", b"x"),
                Item::File("up/pwned2", b"x"),
                Item::File("evil/.wh.victim", b""),
                Item::File("evil/.wh..wh..opq", b""),
                Item::File("target", b"replaced inside"),
            ]),
        ])
        .expect("resolve");
    scene.assert_host_untouched();
    let root = &rootfs.path;
    assert!(
        root.join(outside.trim_start_matches('/'))
            .join("pwned")
            .is_file(),
        "link followed inside"
    );
    assert!(
        root.join("pwned2").is_file(),
        "`..` stopped at the rootfs top"
    );
    let target = fs::symlink_metadata(root.join("target")).expect("target");
    assert!(
        target.is_file(),
        "the link was replaced, not written through"
    );
    assert_eq!(
        fs::read(root.join("target")).expect("read"),
        b"replaced inside"
    );
}

#[test]
fn hard_links_must_point_at_files_inside() {
    let scene = Scene::new();
    let outside = scene.outside().display().to_string();
    for (items, why) in [
        (
            vec![Item::RawHardLink("h", b"../../../../outside/victim")],
            "climbing out",
        ),
        (
            vec![Item::HardLink("h", "etc/passwd")],
            "not a regular file",
        ),
        (
            vec![
                Item::Symlink("s", &format!("{outside}/victim")),
                Item::HardLink("h", "s"),
            ],
            "not a regular file",
        ),
        (
            vec![
                Item::Symlink("d", &outside),
                Item::HardLink("h", "d/victim"),
            ],
            "not a regular file",
        ),
    ] {
        let err = scene.resolve(&[layer(&items)]).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        scene.assert_host_untouched();
        scene.assert_store_empty();
    }
}

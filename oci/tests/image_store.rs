//! The image store on real tarballs and layouts: formats, layers and whiteouts, digests, the
//! cap, garbage collection and reuse.

mod image_fixtures;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use colo_oci::image::{ImageError, ImageStore};
use image_fixtures::{
    Item, docker_save, gzip, layer, oci_layout_dir, oci_layout_files, sha256_hex, tree, write_tar,
};

const MIB: u64 = 1 << 20;

fn base_layer() -> Vec<u8> {
    layer(&[
        Item::Dir("etc/"),
        Item::File("etc/keep", b"keep"),
        Item::File("etc/gone", b"gone"),
        Item::Dir("opt/"),
        Item::Dir("opt/old/"),
        Item::File("opt/old/a", b"a"),
        Item::Dir("opt/old/sub/"),
        Item::File("opt/old/sub/deep", b"deep"),
        Item::Dir("usr/"),
        Item::Dir("usr/lib/"),
        Item::Symlink("lib", "/usr/lib"),
        Item::File("bin/tool", b"#!/bin/sh\n"),
        Item::HardLink("bin/tool-link", "bin/tool"),
        Item::Fifo("run/fifo"),
    ])
}

fn upper_layer() -> Vec<u8> {
    layer(&[
        Item::File("etc/.wh.gone", b""),
        Item::Dir("opt/old/"),
        Item::File("opt/old/.wh..wh..opq", b""),
        Item::File("opt/old/new", b"new"),
        Item::Dir("opt/old/sub/"),
        Item::File("lib/libx.so", b"elf"),
        Item::File("etc/keep", b"kept and changed"),
    ])
}

#[test]
fn a_docker_save_tarball_with_gzip_layers_applies_whiteouts_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarball = dir.path().join("image.tar");
    let config_hex = docker_save(&tarball, &[base_layer(), upper_layer()], true);
    let store = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("open");

    let rootfs = store.resolve(&tarball, &[]).expect("resolve");
    assert_eq!(
        rootfs.digest.as_deref(),
        Some(&*format!("sha256:{config_hex}"))
    );
    assert_eq!(
        rootfs.path,
        dir.path().join(format!("store/sha256/{config_hex}/rootfs"))
    );
    let root = &rootfs.path;
    assert_eq!(
        fs::read(root.join("etc/keep")).expect("keep"),
        b"kept and changed"
    );
    assert!(!root.join("etc/gone").exists(), "whiteout removed etc/gone");
    assert!(root.join("opt/old/new").exists());
    assert!(
        !root.join("opt/old/a").exists(),
        "opaque dir hides lower files"
    );
    assert!(
        root.join("opt/old/sub").is_dir(),
        "a dir the upper layer made is kept"
    );
    assert!(
        !root.join("opt/old/sub/deep").exists(),
        "but not the lower content under it"
    );
    assert_eq!(
        fs::read(root.join("usr/lib/libx.so")).expect("lib"),
        b"elf",
        "absolute link followed inside"
    );
    let (a, b) = (
        fs::metadata(root.join("bin/tool")).expect("m"),
        fs::metadata(root.join("bin/tool-link")).expect("m"),
    );
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert!(!root.join("run/fifo").exists(), "fifos are skipped");
    for d in ["proc", "dev", "sys", "tmp"] {
        assert!(root.join(d).is_dir(), "mount point {d} created");
    }
    colo_oci::image::check_mount_points(root, &[]).expect("mount points exist");
    // The image configuration's defaults come with it, also when the store is reused.
    assert_eq!(rootfs.defaults.cmd, ["/bin/sh"]);
    let reopened = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("reopen");
    let again = reopened.resolve(&tarball, &[]).expect("resolve again");
    assert_eq!(again, rootfs);
    assert!(
        fs::read_dir(dir.path().join("store/tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "tmp cleaned"
    );
}

#[test]
fn an_oci_layout_directory_and_its_tarball_unpack_once_to_the_same_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = [gzip(&base_layer()), gzip(&upper_layer())];
    let layout = dir.path().join("layout");
    let manifest_hex = oci_layout_dir(&layout, &layers);
    let store = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("open");

    let first = store.resolve(&layout, &[]).expect("resolve dir");
    assert_eq!(
        first.digest.as_deref(),
        Some(&*format!("sha256:{manifest_hex}"))
    );
    assert!(first.path.join("usr/lib/libx.so").is_file());
    // A marker in the unpacked tree shows whether a later resolve unpacked again.
    fs::write(first.path.join("marker"), b"1").expect("marker");

    let tarball = dir.path().join("layout.tar");
    let (files, hex) = oci_layout_files(&layers);
    assert_eq!(hex, manifest_hex);
    write_tar(&tarball, &files);
    for _ in 0..2 {
        let again = store.resolve(&tarball, &[]).expect("resolve tarball");
        assert_eq!(again, first, "same digest, same place");
        assert!(again.path.join("marker").exists(), "not unpacked again");
        let dir_again = store.resolve(&layout, &[]).expect("resolve dir again");
        assert_eq!(dir_again, first);
    }
    assert_eq!(
        tree(&dir.path().join("store/sha256"))
            .iter()
            .filter(|p| !p.contains('/'))
            .count(),
        1
    );
}

#[test]
fn a_tarball_is_not_rescanned_while_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tarball = dir.path().join("image.tar");
    docker_save(&tarball, &[base_layer()], false);
    let store = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("open");
    let first = store.resolve(&tarball, &[]).expect("resolve");
    // Corrupt the tarball in place without changing its size or mtime: the cached digest is used.
    let meta = fs::metadata(&tarball).expect("meta");
    let mut bytes = fs::read(&tarball).expect("read");
    bytes[..512].fill(0);
    fs::write(&tarball, &bytes).expect("write");
    let mtime = fs::File::options()
        .write(true)
        .open(&tarball)
        .expect("open");
    mtime
        .set_modified(meta.modified().expect("mtime"))
        .expect("set mtime");
    let again = store
        .resolve(&tarball, &[])
        .expect("served from the cache without reading the tarball");
    assert_eq!(again, first);
}

#[test]
fn a_corrupt_layer_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let good = gzip(&base_layer());
    oci_layout_dir(&layout, std::slice::from_ref(&good));
    // Same size, different content, under the good digest's name.
    let blob = layout.join(format!("blobs/sha256/{}", sha256_hex(&good)));
    let mut bad = fs::read(&blob).expect("read");
    let last = bad.len() - 9;
    bad[last] ^= 0xff;
    fs::write(&blob, &bad).expect("write");
    let store = ImageStore::open(&dir.path().join("store"), 64 * MIB).expect("open");
    let err = store.resolve(&layout, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::DigestMismatch { .. } | ImageError::BadManifest { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&layout.display().to_string()),
        "{err}"
    );
    assert!(tree(&dir.path().join("store/sha256")).is_empty());
    assert!(tree(&dir.path().join("store/tmp")).is_empty());

    // A docker layer whose content does not match its diff_id.
    let tarball = dir.path().join("docker.tar");
    docker_save(&tarball, &[base_layer()], false);
    let mut bytes = fs::read(&tarball).expect("read");
    let at = bytes
        .windows(9)
        .position(|w| w == b"#!/bin/sh")
        .expect("content");
    bytes[at] = b'K';
    fs::write(&tarball, &bytes).expect("write");
    let err = store.resolve(&tarball, &[]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("layer0/layer.tar"), "{err}");
}

#[test]
fn an_image_over_the_cap_is_refused_mid_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = vec![7u8; 300_000];
    let tarball = dir.path().join("big.tar");
    docker_save(
        &tarball,
        &[layer(&[Item::File("a", &big), Item::File("b", &big)])],
        true,
    );
    let store = ImageStore::open(&dir.path().join("store"), 400_000).expect("open");
    let err = store.resolve(&tarball, &[]).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                bytes: 600_000,
                cap: 400_000,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("offline.container.image_store"), "{text}");
    assert!(tree(&dir.path().join("store/sha256")).is_empty());
    assert!(
        tree(&dir.path().join("store/tmp")).is_empty(),
        "the partial unpack is removed"
    );
}

/// An image of one file of `bytes` bytes named after `tag`.
fn sized_image(dir: &Path, tag: &str, bytes: usize) -> std::path::PathBuf {
    let path = dir.join(format!("{tag}.tar"));
    docker_save(
        &path,
        &[layer(&[Item::File(tag, &vec![1u8; bytes])])],
        false,
    );
    path
}

#[test]
fn unused_images_make_room_least_recently_used_first_and_gc_keeps_those_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&dir.path().join("store"), 250_000).expect("open");
    let a = store
        .resolve(&sized_image(dir.path(), "a", 100_000), &[])
        .expect("a");
    let b = store
        .resolve(&sized_image(dir.path(), "b", 100_000), &[])
        .expect("b");
    store
        .resolve(&sized_image(dir.path(), "a", 100_000), &[])
        .expect("a again: b is now least recently used");
    assert_eq!(store.used_bytes().expect("used"), 200_000);

    let c = store
        .resolve(&sized_image(dir.path(), "c", 100_000), &[])
        .expect("c fits once b is gone");
    assert!(a.path.is_dir(), "a was used more recently");
    assert!(!b.path.exists(), "b was evicted");
    assert_eq!(store.used_bytes().expect("used"), 200_000);

    // With a and c in use, d cannot fit.
    let in_use = [
        a.digest.as_deref().expect("a"),
        c.digest.as_deref().expect("c"),
    ];
    let err = store
        .resolve(&sized_image(dir.path(), "d", 100_000), &in_use)
        .unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                in_use: 200_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(a.path.is_dir() && c.path.is_dir());

    let report = store.gc(&in_use[1..]).expect("gc");
    assert_eq!((report.removed, report.freed_bytes), (1, 100_000));
    assert!(!a.path.exists() && c.path.is_dir());
    let report = store.gc(&[]).expect("gc all");
    assert_eq!((report.removed, report.freed_bytes), (1, 100_000));
    assert_eq!(store.used_bytes().expect("used"), 0);
    assert!(
        tree(&dir.path().join("store/sources")).is_empty(),
        "cache entries of removed images go too"
    );
    // A removed image unpacks again on demand.
    let again = store
        .resolve(&sized_image(dir.path(), "a", 100_000), &[])
        .expect("a once more");
    assert_eq!(again, a);
    assert!(again.path.join("a").is_file());
}

#[test]
fn directories_are_used_in_place_and_bad_paths_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&dir.path().join("store"), MIB).expect("open");
    let plain = dir.path().join("rootdir");
    fs::create_dir(&plain).expect("mkdir");
    let rootfs = store.resolve(&plain, &[]).expect("plain dir");
    assert_eq!((rootfs.path, rootfs.digest), (plain.clone(), None));
    let err = colo_oci::image::check_mount_points(&plain, &[]).unwrap_err();
    assert!(err.to_string().contains("/proc does not exist"), "{err}");

    let missing = dir.path().join("nope");
    let err = store.resolve(&missing, &[]).unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");

    let text = dir.path().join("notes.txt");
    fs::write(&text, "not an image at all").expect("write");
    let err = store.resolve(&text, &[]).unwrap_err();
    assert!(matches!(err, ImageError::Unrecognized { .. }), "{err}");

    let gz = dir.path().join("image.tar.gz");
    fs::write(&gz, gzip(b"whatever")).expect("write");
    let err = store.resolve(&gz, &[]).unwrap_err();
    assert!(err.to_string().contains("gunzip"), "{err}");

    let empty_tar = dir.path().join("empty.tar");
    write_tar(&empty_tar, &[("readme".into(), b"hi".to_vec())]);
    let err = store.resolve(&empty_tar, &[]).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

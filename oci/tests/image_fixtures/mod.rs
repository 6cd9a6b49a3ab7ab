//! Builders of real image tarballs and layouts for the image store's tests.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of a layer.
pub enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    Fifo(&'a str),
    /// A file whose name is written into the header as is, bypassing the builder's checks.
    RawFile(&'a [u8], &'a [u8]),
    /// A hard link whose target is written as is.
    RawHardLink(&'a str, &'a [u8]),
}

fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let gnu = header.as_gnu_mut().expect("gnu header");
    gnu.name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// An uncompressed layer tar of `items`.
pub fn layer(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::Dir(path) => {
                let mut header = raw_header(path.as_bytes(), tar::EntryType::Directory, 0);
                header.set_mode(0o755);
                header.set_cksum();
                builder.append(&header, &[][..]).expect("dir");
            }
            Item::File(path, data) => {
                let mut header =
                    raw_header(path.as_bytes(), tar::EntryType::Regular, data.len() as u64);
                header.set_cksum();
                builder.append(&header, *data).expect("file");
            }
            Item::Symlink(path, target) | Item::HardLink(path, target) => {
                let kind = match item {
                    Item::Symlink(..) => tar::EntryType::Symlink,
                    _ => tar::EntryType::Link,
                };
                let mut header = raw_header(path.as_bytes(), kind, 0);
                header.as_gnu_mut().expect("gnu").linkname[..target.len()]
                    .copy_from_slice(target.as_bytes());
                header.set_cksum();
                builder.append(&header, &[][..]).expect("link");
            }
            Item::RawHardLink(path, target) => {
                let mut header = raw_header(path.as_bytes(), tar::EntryType::Link, 0);
                header.as_gnu_mut().expect("gnu").linkname[..target.len()].copy_from_slice(target);
                header.set_cksum();
                builder.append(&header, &[][..]).expect("link");
            }
            Item::Fifo(path) => {
                let mut header = raw_header(path.as_bytes(), tar::EntryType::Fifo, 0);
                header.set_cksum();
                builder.append(&header, &[][..]).expect("fifo");
            }
            Item::RawFile(name, data) => {
                let mut header = raw_header(name, tar::EntryType::Regular, data.len() as u64);
                header.set_cksum();
                builder.append(&header, *data).expect("raw");
            }
        }
    }
    builder.into_inner().expect("finish")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Writes a tarball at `path` holding `files` (name, content).
pub fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(fs::File::create(path).expect("create"));
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, &data[..])
            .expect("append");
    }
    builder.finish().expect("finish");
}

/// A `docker save` tarball of `layers` (each a plain tar, stored gzip-compressed when `gz`).
/// Gives the config's hex digest.
pub fn docker_save(path: &Path, layers: &[Vec<u8>], gz: bool) -> String {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let config_hex = sha256_hex(&config);
    let mut files = vec![(format!("{config_hex}.json"), config)];
    let mut names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        files.push((name.clone(), if gz { gzip(layer) } else { layer.clone() }));
        names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["test:latest"],
        "Layers": names,
    }]);
    files.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    write_tar(path, &files);
    config_hex
}

/// The files of an OCI image layout of `layers` (stored as given). Gives them and the
/// manifest's hex digest.
pub fn oci_layout_files(layers: &[Vec<u8>]) -> (Vec<(String, Vec<u8>)>, String) {
    let mut files = Vec::new();
    let mut blob = |data: Vec<u8>| {
        let hex = sha256_hex(&data);
        let size = data.len();
        files.push((format!("blobs/sha256/{hex}"), data));
        (hex, size)
    };
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let (hex, size) = blob(l.clone());
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{hex}"), "size": size})
        })
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}});
    let (config_hex, config_size) = blob(config.to_string().into_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_hex}"), "size": config_size},
        "layers": layer_descs,
    });
    let (manifest_hex, manifest_size) = blob(manifest.to_string().into_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"), "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    files.push(("index.json".into(), index.to_string().into_bytes()));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
    ));
    (files, manifest_hex)
}

/// Writes an OCI image layout directory at `dir`; gives the manifest's hex digest.
pub fn oci_layout_dir(dir: &Path, layers: &[Vec<u8>]) -> String {
    let (files, hex) = oci_layout_files(layers);
    for (name, data) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, data).expect("write");
    }
    hex
}

/// The names under `dir` (recursively, relative), sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            out.push(
                path.strip_prefix(dir)
                    .expect("prefix")
                    .display()
                    .to_string(),
            );
            if fs::symlink_metadata(&path).expect("meta").is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

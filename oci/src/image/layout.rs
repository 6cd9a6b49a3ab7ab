//! What to unpack: an image's digest and its layers in order, read from an OCI image layout
//! (`index.json` → manifest → layers) or a `docker save` archive (`manifest.json` → config and
//! layer tarballs).
//!
//! The OCI digest is the image manifest's (what `podman images --digests` shows); the docker
//! digest is the config's (the image ID `docker images` shows). Every digest the format gives
//! is checked: OCI manifests and configs here, layer blobs while they are unpacked; a docker
//! config against its file name, layers against the config's `rootfs.diff_ids`.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::defaults::ImageDefaults;
use super::source::Source;

/// An image ready to unpack.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Hex sha256 naming the image in the store.
    pub(crate) digest: String,
    /// The layers, lowest first.
    pub(crate) layers: Vec<Layer>,
    /// What the image's configuration says its container runs by default.
    pub(crate) defaults: ImageDefaults,
}

impl Plan {
    /// The layers' stored bytes: the least room an unpack is expected to need.
    pub(crate) fn blob_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// One layer: where it is and what its content must hash to.
#[derive(Debug)]
pub(crate) struct Layer {
    /// The member name inside the image.
    pub(crate) name: String,
    /// Its stored size.
    pub(crate) size: u64,
    /// The digest to verify.
    pub(crate) check: Check,
}

/// The digest a layer is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Hex sha256 of the stored (possibly compressed) blob.
    Blob(String),
    /// Hex sha256 of the uncompressed tar (a docker diff ID).
    Uncompressed(String),
}

/// The hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex of a `sha256:<64 hex>` digest, `None` for any other algorithm or shape.
pub(crate) fn parse_sha256(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    let ok = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| hex.to_owned())
}

fn bad(source: &Source, detail: impl Into<String>) -> ImageError {
    ImageError::BadManifest {
        image: source.image().to_path_buf(),
        detail: detail.into(),
    }
}

/// Reads the plan of the image `source` holds.
pub(crate) fn plan(source: &Source) -> Result<Plan, ImageError> {
    if source.has("oci-layout") && source.has("index.json") {
        oci_plan(source)
    } else if source.has("manifest.json") {
        docker_plan(source)
    } else {
        Err(ImageError::Unrecognized {
            image: source.image().to_path_buf(),
            detail: "has neither oci-layout with index.json nor a docker manifest.json".into(),
        })
    }
}

/// Reads the blob a descriptor names and checks its digest and size.
fn read_blob(source: &Source, desc: &Descriptor) -> Result<(String, Vec<u8>), ImageError> {
    let digest = desc.digest().to_string();
    let hex = parse_sha256(&digest).ok_or_else(|| {
        bad(
            source,
            format!("digest {digest:?} is not sha256:<64 hex digits>"),
        )
    })?;
    let name = format!("blobs/sha256/{hex}");
    let bytes = source.read(&name)?;
    let actual = sha256_hex(&bytes);
    if actual != hex {
        return Err(ImageError::DigestMismatch {
            image: source.image().to_path_buf(),
            blob: name,
            expected: digest,
            actual,
        });
    }
    if bytes.len() as u64 != desc.size() {
        return Err(bad(
            source,
            format!(
                "{name} has {} bytes, its descriptor says {}",
                bytes.len(),
                desc.size()
            ),
        ));
    }
    Ok((hex, bytes))
}

/// The host's platform as OCI spells it.
fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

/// Picks the manifest (or nested index) for this host among an index's entries.
fn choose(source: &Source, index: &ImageIndex) -> Result<Descriptor, ImageError> {
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| !matches!(d.media_type(), MediaType::Other(t) if t.contains("attestation")))
        .collect();
    if let [only] = candidates.as_slice() {
        return Ok((*only).clone());
    }
    let (os, arch) = host_platform();
    candidates
        .iter()
        .find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
        })
        .map(|d| (*d).clone())
        .ok_or_else(|| {
            bad(
                source,
                format!(
                    "index lists {} manifests and none for {os}/{arch}",
                    candidates.len()
                ),
            )
        })
}

fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(t) => t.contains("manifest.list"),
        _ => false,
    }
}

fn oci_plan(source: &Source) -> Result<Plan, ImageError> {
    let index_bytes = source.read("index.json")?;
    let mut index = ImageIndex::from_reader(&index_bytes[..])
        .map_err(|e| bad(source, format!("index.json: {e}")))?;
    // A nested index (a multi-platform image) is followed to this host's manifest.
    for _ in 0..4 {
        let desc = choose(source, &index)?;
        let (hex, bytes) = read_blob(source, &desc)?;
        if is_index(desc.media_type()) {
            index = ImageIndex::from_reader(&bytes[..])
                .map_err(|e| bad(source, format!("index {hex}: {e}")))?;
            continue;
        }
        let manifest = ImageManifest::from_reader(&bytes[..])
            .map_err(|e| bad(source, format!("manifest {hex}: {e}")))?;
        let (_, config) = read_blob(source, manifest.config())?;
        let defaults = ImageDefaults::from_config_json(&config).map_err(|e| bad(source, e))?;
        let layers = manifest
            .layers()
            .iter()
            .map(|layer| {
                let digest = layer.digest().to_string();
                let blob = parse_sha256(&digest).ok_or_else(|| {
                    bad(
                        source,
                        format!("layer digest {digest:?} is not sha256:<64 hex digits>"),
                    )
                })?;
                Ok(Layer {
                    name: format!("blobs/sha256/{blob}"),
                    size: layer.size(),
                    check: Check::Blob(blob),
                })
            })
            .collect::<Result<_, ImageError>>()?;
        return Ok(Plan {
            digest: hex,
            layers,
            defaults,
        });
    }
    Err(bad(source, "index.json nests indexes more than 4 deep"))
}

/// One image of a `docker save` manifest.json.
#[derive(Deserialize)]
struct DockerImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    rootfs: DockerRootFs,
}

#[derive(Deserialize)]
struct DockerRootFs {
    diff_ids: Vec<String>,
}

fn docker_plan(source: &Source) -> Result<Plan, ImageError> {
    let bytes = source.read("manifest.json")?;
    let images: Vec<DockerImage> =
        serde_json::from_slice(&bytes).map_err(|e| bad(source, format!("manifest.json: {e}")))?;
    let [image] = images.as_slice() else {
        return Err(bad(
            source,
            format!(
                "manifest.json lists {} images, not one; save one image per tarball",
                images.len()
            ),
        ));
    };
    let config_bytes = source.read(&image.config)?;
    let digest = sha256_hex(&config_bytes);
    // The config's name carries its digest: `<hex>.json` (classic) or `blobs/sha256/<hex>`.
    let base = image.config.rsplit('/').next().unwrap_or_default();
    let named = parse_sha256(&format!("sha256:{}", base.trim_end_matches(".json")));
    if let Some(expected) = named.filter(|expected| *expected != digest) {
        return Err(ImageError::DigestMismatch {
            image: source.image().to_path_buf(),
            blob: image.config.clone(),
            expected: format!("sha256:{expected}"),
            actual: digest,
        });
    }
    let config: DockerConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad(source, format!("config {}: {e}", image.config)))?;
    if config.rootfs.diff_ids.len() != image.layers.len() {
        return Err(bad(
            source,
            format!(
                "manifest.json lists {} layers but the config's rootfs.diff_ids {}",
                image.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    for (name, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
        let diff = parse_sha256(diff_id).ok_or_else(|| {
            bad(
                source,
                format!("diff_id {diff_id:?} is not sha256:<64 hex digits>"),
            )
        })?;
        let (_, size) = source.open(name)?;
        layers.push(Layer {
            name: name.clone(),
            size,
            check: Check::Uncompressed(diff),
        });
    }
    let defaults = ImageDefaults::from_config_json(&config_bytes).map_err(|e| bad(source, e))?;
    Ok(Plan {
        digest,
        layers,
        defaults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_sha256_digests_parse() {
        let hex = "a".repeat(64);
        assert_eq!(parse_sha256(&format!("sha256:{hex}")), Some(hex.clone()));
        assert_eq!(parse_sha256(&format!("sha512:{hex}")), None);
        assert_eq!(parse_sha256("sha256:abc"), None);
        assert_eq!(parse_sha256(&format!("sha256:{}", "A".repeat(64))), None);
        assert_eq!(parse_sha256(&format!("sha256:../{}", "a".repeat(61))), None);
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

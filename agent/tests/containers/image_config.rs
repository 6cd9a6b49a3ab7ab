//! An OCI image layout whose configuration supplies the command, environment, working directory
//! and user of a container job.

use std::path::Path;

use super::*;

/// The hex sha256 of a file (coreutils' `sha256sum`).
fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Writes an OCI image layout at `dir`: one uncompressed layer holding `rootfs`, and an image
/// configuration whose `config` object is `config`.
fn oci_image(rootfs: &Path, dir: &Path, config: serde_json::Value) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |path: &Path| -> serde_json::Value {
        let hex = sha256_file(path);
        let size = std::fs::metadata(path).unwrap().len();
        std::fs::rename(path, blobs.join(&hex)).unwrap();
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": size})
    };
    let layer = dir.join("layer.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar");
    let mut layer_desc = put(&layer);
    layer_desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
    let cfg = dir.join("config.json");
    let image = serde_json::json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}});
    std::fs::write(&cfg, image.to_string()).unwrap();
    let mut cfg_desc = put(&cfg);
    cfg_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = dir.join("manifest.json");
    let m = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg_desc, "layers": [layer_desc]});
    std::fs::write(&manifest, m.to_string()).unwrap();
    let mut m_desc = put(&manifest);
    m_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    m_desc["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m_desc]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
}

#[test]
fn an_image_configuration_supplies_the_command_environment_workdir_and_user() {
    let test = "an_image_configuration_supplies_the_command_environment_workdir_and_user";
    let Some((_lock, busybox)) = container_guard(test) else {
        return;
    };
    let agent = start_agent();
    let scratch = tempfile::tempdir().unwrap();
    let rootfs = scratch.path().join("rootfs");
    colo_testkit::busybox_rootfs(&busybox, &rootfs, &["srv/app"]).expect("busybox rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\napp:x:1234:4321::/:/bin/sh\n",
    )
    .unwrap();
    let img = agent.images_dir().join("configured");
    oci_image(
        &rootfs,
        &img,
        serde_json::json!({
            "Env": ["PATH=/bin", "GREETING=from-image", "WHO=image"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo \"$GREETING $WHO $(pwd) $(id -u):$(id -g)\"; exit 3"],
            "WorkingDir": "/srv/app",
            "User": "app",
        }),
    );
    rt().block_on(async {
        let mut c = agent.client().await;
        // No command: the image's Entrypoint and Cmd; the job's env over the image's.
        let mut spec = container("configured", &img, "", &[]);
        if let Some(pb::job_spec::Sandbox::Container(ct)) = spec.sandbox.as_mut() {
            ct.env.insert("WHO".into(), "job".into());
        }
        let j = submit(&mut c, spec).await;
        let end = wait_end(&mut c, &j.id, Duration::from_secs(60)).await;
        assert_eq!(end.exit_code, Some(3), "{end:?}");
        let serial = std::fs::read_to_string(
            agent
                .state_dir()
                .join("jobs")
                .join(&j.id)
                .join("sandbox/serial.log"),
        )
        .unwrap();
        assert!(
            serial.contains("from-image job /srv/app 1234:4321"),
            "{serial}"
        );

        // The job's arguments replace the image's Cmd after its Entrypoint.
        let j = submit(&mut c, container("args", &img, "", &["exit 5"])).await;
        let end = wait_end(&mut c, &j.id, Duration::from_secs(60)).await;
        assert_eq!(end.exit_code, Some(5), "{end:?}");

        // A directory image has no configuration: no command is refused at submit, by name
        // (`bad_container_requests_are_refused_naming_the_cause_and_leave_nothing`).
    });
}

//! A bundle's `config.json`: the OCI runtime spec of one container, built from a plain
//! [`BundleSpec`] with colo's default confinement.
//!
//! The defaults are those of the container ecosystem: pid, mount, ipc, uts and network
//! namespaces (the network one left out only when the operator allows host networking), the
//! default capability set ([`DEFAULT_CAPABILITIES`]), `noNewPrivileges`, the usual masked and
//! read-only kernel paths, a read-only root filesystem, and a seccomp profile when one is given.
//! Writable places are the ones the spec lists: a size-bounded tmpfs at `/tmp` and read-write
//! volumes.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxNamespaceType, LinuxSeccomp, Mount,
    PosixRlimitBuilder, PosixRlimitType, Root, Spec, User,
};

/// The capabilities a container's process gets unless told otherwise: the container
/// ecosystem's default set (containers-common's `default_capabilities`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Errors building or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A capability name the runtime spec does not know.
    #[error("unknown capability {0:?} (expected a name such as CAP_CHOWN)")]
    Capability(String),
    /// The runtime spec refused a value.
    #[error("invalid runtime spec: {0}")]
    Spec(String),
    /// The spec could not be serialised.
    #[error("cannot serialise config.json: {0}")]
    Json(#[from] serde_json::Error),
    /// The bundle directory or its `config.json` could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A host directory mounted into the container with `bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host directory.
    pub source: PathBuf,
    /// Where it appears inside.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// What a container runs and sees.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// The host name inside (its UTS namespace).
    pub hostname: String,
    /// The root filesystem, mounted read-only.
    pub rootfs: PathBuf,
    /// The program and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// The working directory inside.
    pub cwd: String,
    /// User and group id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Bind mounts (the volumes), in order.
    pub mounts: Vec<BindMount>,
    /// The size of the writable scratch directory `/tmp` (a tmpfs, so its pages are charged to
    /// the container's memory limit and it never fills a host disk); 0: no scratch directory.
    pub scratch_bytes: u64,
    /// The container's cgroup, absolute from the root of each hierarchy (`/colo/offline/j/vcpu`).
    pub cgroups_path: String,
    /// Share the host's network namespace instead of an empty one.
    pub host_network: bool,
    /// The seccomp filter, if any.
    pub seccomp: Option<LinuxSeccomp>,
    /// The capabilities of the process (bounding, effective, permitted; none inheritable or
    /// ambient).
    pub capabilities: Vec<String>,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub open_files: u64,
    /// The container process's `oom_score_adj` (`None`: inherited from the runtime's caller).
    pub oom_score_adj: Option<i32>,
}

fn capabilities(names: &[String]) -> Result<Capabilities, BundleError> {
    names
        .iter()
        .map(|n| {
            let short = n.strip_prefix("CAP_").unwrap_or(n);
            Capability::from_str(short).map_err(|_| BundleError::Capability(n.clone()))
        })
        .collect()
}

/// The runtime spec of `b`.
pub fn config(b: &BundleSpec) -> Result<Spec, BundleError> {
    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_hostname(Some(b.hostname.clone()));
    let mut root = Root::default();
    root.set_path(b.rootfs.clone());
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_annotations(None);

    let mut mounts = oci_spec::runtime::get_default_mounts();
    if b.scratch_bytes > 0 {
        let mut tmp = Mount::default();
        tmp.set_destination(PathBuf::from("/tmp"));
        tmp.set_typ(Some("tmpfs".into()));
        tmp.set_source(Some(PathBuf::from("tmpfs")));
        tmp.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
            format!("size={}k", b.scratch_bytes.div_ceil(1024)),
        ]));
        mounts.push(tmp);
    }
    for m in &b.mounts {
        let mut mount = Mount::default();
        mount.set_destination(PathBuf::from(&m.target));
        mount.set_typ(Some("bind".into()));
        mount.set_source(Some(m.source.clone()));
        let mut opts = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
        opts.push(if m.read_only { "ro" } else { "rw" }.into());
        mount.set_options(Some(opts));
        mounts.push(mount);
    }
    spec.set_mounts(Some(mounts));

    let caps = capabilities(&b.capabilities)?;
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(None);
    lc.set_ambient(None);
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
        p.set_args(Some(b.args.clone()));
        p.set_env(Some(b.env.clone()));
        p.set_cwd(PathBuf::from(&b.cwd));
        let mut user = User::default();
        user.set_uid(b.uid);
        user.set_gid(b.gid);
        p.set_user(user);
        p.set_no_new_privileges(Some(true));
        p.set_capabilities(Some(lc));
        let nofile = PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(b.open_files)
            .hard(b.open_files)
            .build()
            .map_err(|e| BundleError::Spec(e.to_string()))?;
        p.set_rlimits(Some(vec![nofile]));
        p.set_oom_score_adj(b.oom_score_adj);
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(&b.cgroups_path)));
        // The cgroup namespace is left out: on cgroup v1 runc would need every hierarchy mounted
        // inside, and the job's limits are the agent's, not the container's, to read.
        let keep = |t: LinuxNamespaceType| match t {
            LinuxNamespaceType::Cgroup => false,
            LinuxNamespaceType::Network => !b.host_network,
            _ => true,
        };
        let namespaces = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| keep(n.typ()))
            .collect();
        linux.set_namespaces(Some(namespaces));
        linux.set_seccomp(b.seccomp.clone());
        // Every device is refused but the runtime's defaults (null, zero, full, random, urandom,
        // tty, ptmx), which runc and crun always allow.
        let mut deny = oci_spec::runtime::LinuxDeviceCgroup::default();
        deny.set_allow(false);
        deny.set_access(Some("rwm".into()));
        if let Some(r) = linux.resources_mut() {
            r.set_devices(Some(vec![deny]));
        }
    }
    Ok(spec)
}

/// Writes `dir/config.json` (mode 0600) for `b`; creates `dir` if needed.
pub fn write(dir: &Path, b: &BundleSpec) -> Result<PathBuf, BundleError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let path = dir.join("config.json");
    let text = serde_json::to_vec_pretty(&config(b)?)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(werr(&path))?;
    f.write_all(&text).map_err(werr(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BundleSpec {
        BundleSpec {
            hostname: "j1".into(),
            rootfs: "/img/bb".into(),
            args: vec!["sh".into(), "-c".into(), "exit 7".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 7,
            gid: 8,
            mounts: vec![BindMount {
                source: "/data/in".into(),
                target: "/in".into(),
                read_only: true,
            }],
            scratch_bytes: 1 << 20,
            cgroups_path: "/colo/offline/j1/vcpu".into(),
            host_network: false,
            seccomp: None,
            capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            open_files: 1024,
            oom_score_adj: Some(0),
        }
    }

    fn json(b: &BundleSpec) -> serde_json::Value {
        serde_json::to_value(config(b).unwrap()).unwrap()
    }

    #[test]
    fn the_default_confinement_is_in_the_spec() {
        let v = json(&spec());
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["user"]["uid"], 7);
        assert_eq!(v["process"]["args"][2], "exit 7");
        assert_eq!(v["linux"]["cgroupsPath"], "/colo/offline/j1/vcpu");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for want in ["pid", "mount", "ipc", "uts", "network"] {
            assert!(ns.contains(&want), "{ns:?}");
        }
        assert!(!ns.contains(&"cgroup"), "{ns:?}");
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(caps.contains(&"CAP_SYS_CHROOT".into()), "{caps:?}");
        assert!(v["process"]["capabilities"].get("ambient").is_none());
        let vol = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/in")
            .unwrap();
        assert!(vol["options"].as_array().unwrap().contains(&"ro".into()));
        let tmp = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/tmp")
            .unwrap();
        assert_eq!(tmp["type"], "tmpfs");
        assert!(
            tmp["options"]
                .as_array()
                .unwrap()
                .contains(&"size=1024k".into())
        );
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
    }

    #[test]
    fn host_networking_drops_only_the_network_namespace() {
        let mut b = spec();
        b.host_network = true;
        let v = json(&b);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().all(|n| n["type"] != "network"));
        assert!(ns.iter().any(|n| n["type"] == "pid"));
    }

    #[test]
    fn an_unknown_capability_is_named() {
        let mut b = spec();
        b.capabilities.push("CAP_FLY".into());
        let e = config(&b).unwrap_err().to_string();
        assert!(e.contains("CAP_FLY"), "{e}");
    }

    #[test]
    fn the_file_is_written_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = write(&d.path().join("b"), &spec()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back: Spec = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back.hostname().as_deref(), Some("j1"));
    }
}

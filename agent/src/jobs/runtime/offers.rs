//! What sandboxes this node offers, and why not when it lacks one: found at start, shown by
//! `coloctl node`, carried in the node report and the metrics.

use std::path::Path;

use colo_config::agent::CgroupVersion;
use colo_config::job::SandboxKind;

use crate::jobs::config::ManagerConfig;

/// One kind of sandbox on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The kind.
    pub kind: SandboxKind,
    /// Jobs of this kind are admitted.
    pub available: bool,
    /// What backs it, or why it is missing and how to fix that.
    pub detail: String,
}

/// How this host runs KVM guests.
fn kvm(dev: &Path) -> Result<&'static str, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("{} cannot be opened ({e})", dev.display()))?;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    Ok(if hw {
        "KVM with hardware virtualization"
    } else if Path::new("/sys/module/kvm_pvm").exists() {
        "KVM-PVM (no VMX/SVM): a Linux guest boots its kernel, its user space cannot run here"
    } else {
        "KVM"
    })
}

/// The sandboxes of a node configured as `cfg`, whose cgroups are `version`.
pub fn offers(cfg: &ManagerConfig, version: CgroupVersion) -> Vec<Offer> {
    let vmm = if cfg.vmm_binary.is_file() {
        kvm(Path::new("/dev/kvm"))
            .map(|how| format!("colo-vmm ({}); {how}", cfg.vmm_binary.display()))
    } else {
        Err(format!(
            "colo-vmm not found at {} (offline.vmm)",
            cfg.vmm_binary.display()
        ))
    };
    let container = match &cfg.containers {
        Ok(h) => {
            let seccomp = match &h.seccomp {
                Some(s) => format!(
                    "seccomp: the containers-common profile ({} rules)",
                    s.syscalls().as_ref().map_or(0, Vec::len)
                ),
                None => "no seccomp filter".into(),
            };
            let io = match version {
                CgroupVersion::V2 => "IO limits: io.max",
                _ => "IO limits bind direct IO only (cgroup v1 blkio)",
            };
            Ok(format!(
                "{} ({}); {seccomp}; {io}",
                h.runtime.version_or_name(),
                h.runtime.binary().display()
            ))
        }
        Err(why) => Err(why.clone()),
    };
    // A Linux guest is offered when it can run a program (a bare kernel boot is a check, not
    // a job a scheduler places).
    let linux = match (&vmm, &cfg.linux) {
        (Err(e), _) => Err(e.clone()),
        (Ok(_), Err(why)) => Err(why.clone()),
        (Ok(v), Ok(h)) => Ok(format!(
            "{v}; programs run by colo's in-guest agent{}",
            if h.assumed {
                " (guest user space assumed: offline.linux.user_space is assume)"
            } else {
                ""
            }
        )),
    };
    SandboxKind::ALL
        .into_iter()
        .map(|kind| {
            let r = match kind {
                SandboxKind::Workload => &vmm,
                SandboxKind::Linux => &linux,
                SandboxKind::Container => &container,
            };
            Offer {
                kind,
                available: r.is_ok(),
                detail: r.clone().unwrap_or_else(|e| e),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::config::Budget;

    #[test]
    fn a_node_without_its_binaries_says_why() {
        let cfg = ManagerConfig::new(
            "/nonexistent/colo-vmm".into(),
            "/nonexistent/guest".into(),
            Budget {
                cpu_millicores: 1000,
                memory_bytes: 1 << 30,
            },
        );
        let o = offers(&cfg, CgroupVersion::V1);
        assert_eq!(o.len(), 3);
        assert!(o.iter().all(|x| !x.available), "{o:?}");
        assert!(o[0].detail.contains("colo-vmm not found"), "{o:?}");
        assert!(o[2].detail.contains("not configured"), "{o:?}");
    }
}

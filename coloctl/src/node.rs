//! `coloctl node`: the node, the sandboxes it offers, its offline budget, and the throttle
//! state of each VM and why.

use colo_proto::agent as pb;

use super::connect::{ConnectArgs, connect};
use super::json::state_name;
use super::table::{age, bytes, render};
use super::{CliError, Done, Output, outln, print_json};

/// One line summing up what the QoS loop does to a VM.
pub fn throttle_summary(t: &pb::ThrottleState) -> String {
    let mut parts = Vec::new();
    if t.paused {
        parts.push("paused".to_string());
    }
    if t.vcpu_quota_millicores > 0 {
        parts.push(format!("cpu {}m", t.vcpu_quota_millicores));
    }
    if t.sched_idle {
        parts.push("idle".into());
    }
    if t.io_bandwidth_bps > 0 {
        parts.push(format!("io {}/s", bytes(t.io_bandwidth_bps)));
    }
    if t.io_iops > 0 {
        parts.push(format!("{} iops", t.io_iops));
    }
    if t.memory_limit_bytes > 0 {
        parts.push(format!("mem {}", bytes(t.memory_limit_bytes)));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The memory budget for humans: `u64::MAX` means `offline.budget.memory: null`.
pub fn memory_cap(b: u64) -> String {
    if b == u64::MAX {
        "no memory cap".into()
    } else {
        bytes(b)
    }
}

/// `coloctl node`'s lines for the sandboxes the node offers, one a kind:
/// `sandbox:      container  yes  runc 1.1.5 (/usr/sbin/runc)` (none from an agent that does
/// not report them).
pub fn sandbox_lines(offers: &[pb::SandboxOffer]) -> Vec<String> {
    let width = offers
        .iter()
        .map(|o| o.kind.chars().count())
        .max()
        .unwrap_or(0);
    offers
        .iter()
        .map(|o| {
            let line = format!(
                "sandbox:      {:<width$}  {}  {}",
                o.kind,
                if o.available { "yes" } else { "no " },
                o.detail
            );
            line.trim_end().to_string()
        })
        .collect()
}

/// Runs `coloctl node`.
pub async fn run(conn: &ConnectArgs, output: Output) -> Result<Done, CliError> {
    let mut client = connect(conn).await?;
    let n = client
        .node_status(pb::NodeStatusRequest {})
        .await?
        .into_inner();
    if output == Output::Json {
        print_json(&super::json::node(&n))?;
        return Ok(Done::Ok);
    }
    let quota = if n.offline_cpu_quota_millicores == 0 {
        "unlimited".to_string()
    } else {
        format!("{}m", n.offline_cpu_quota_millicores)
    };
    outln!(
        "node:         {} (colo-agent {}, up {})",
        n.node_name,
        n.agent_version,
        age(n.uptime_seconds * 1000)
    )?;
    outln!(
        "host:         {} CPUs, {}; cgroup {}",
        n.cpus,
        bytes(n.memory_bytes),
        n.cgroup_version
    )?;
    for line in sandbox_lines(&n.sandboxes) {
        outln!("{line}")?;
    }
    outln!("policy:       {} (hash {})", n.policy_mode, n.policy_hash)?;
    outln!(
        "budget:       {}m / {} reserved of {}m / {} by {} jobs",
        n.offline_reserved_millicores,
        bytes(n.offline_reserved_memory_bytes),
        n.offline_budget_millicores,
        memory_cap(n.offline_budget_memory_bytes),
        n.offline_reserved_jobs
    )?;
    outln!(
        "offline cpu:  {quota}; interference score {:.0}",
        n.interference_score
    )?;
    let mut states: Vec<_> = n.jobs_by_state.iter().filter(|(_, v)| **v > 0).collect();
    states.sort();
    outln!(
        "jobs:         {}",
        if states.is_empty() {
            "none".to_string()
        } else {
            states
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    if !n.vms.is_empty() {
        outln!()?;
        let rows: Vec<Vec<String>> = n
            .vms
            .iter()
            .map(|v| {
                let t = v.throttle.clone().unwrap_or_default();
                vec![
                    v.job_id.clone(),
                    state_name(v.state),
                    throttle_summary(&t),
                    if t.reason.is_empty() {
                        "-".into()
                    } else {
                        t.reason.clone()
                    },
                ]
            })
            .collect();
        super::out(format_args!(
            "{}",
            render(&["JOB", "STATE", "THROTTLE", "WHY"], &rows)
        ))?;
    }
    Ok(Done::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_line_up_and_say_why_one_is_missing() {
        let offer = |kind: &str, available: bool, detail: &str| pb::SandboxOffer {
            kind: kind.into(),
            available,
            detail: detail.into(),
        };
        let lines = sandbox_lines(&[
            offer("workload", true, "colo-vmm on KVM"),
            offer(
                "linux",
                false,
                "KVM-PVM: a Linux guest's user space cannot run",
            ),
            offer("container", true, "runc 1.1.5 (/usr/sbin/runc)"),
        ]);
        assert_eq!(
            lines,
            [
                "sandbox:      workload   yes  colo-vmm on KVM",
                "sandbox:      linux      no   KVM-PVM: a Linux guest's user space cannot run",
                "sandbox:      container  yes  runc 1.1.5 (/usr/sbin/runc)",
            ]
        );
        assert!(sandbox_lines(&[]).is_empty());
    }
}

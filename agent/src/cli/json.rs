//! JSON views of the API messages for `--output json` (enum values by name, not number).

use colo_proto::agent as pb;
use serde_json::{Value, json};

/// `running`, `succeeded`, ... for a wire state.
pub fn state_name(v: i32) -> String {
    pb::JobState::try_from(v)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("JOB_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| v.to_string())
}

/// `completed`, `guest_exit_nonzero`, ... for a wire end reason ("" when unset).
pub fn reason_name(v: i32) -> String {
    match pb::EndReason::try_from(v) {
        Ok(pb::EndReason::Unspecified) => String::new(),
        Ok(r) => r
            .as_str_name()
            .trim_start_matches("END_REASON_")
            .to_lowercase(),
        Err(_) => v.to_string(),
    }
}

/// A job spec.
pub fn spec(s: &pb::JobSpec) -> Value {
    let guest = match &s.guest {
        Some(pb::job_spec::Guest::Workload(w)) => json!({"workload": {
            "cpu_units": w.cpu_units, "mem_mib": w.mem_mib, "hold_seconds": w.hold_seconds,
            "exit_code": w.exit_code, "io": w.io, "cpu_forever": w.cpu_forever}}),
        Some(pb::job_spec::Guest::Linux(l)) => json!({"linux": {
            "kernel": l.kernel_path, "rootfs": l.rootfs_path, "cmdline": l.cmdline}}),
        None => Value::Null,
    };
    json!({
        "idempotency_key": s.idempotency_key,
        "name": s.name,
        "guest": guest,
        "vcpus": s.vcpus,
        "memory_mib": s.memory_mib,
        "disks": s.disks.iter().map(|d| json!({"path": d.path, "read_only": d.read_only,
            "bandwidth_bps": d.bandwidth_bps, "iops": d.iops})).collect::<Vec<_>>(),
        "qos_class": pb::QosClass::try_from(s.qos_class).map(|q| q.as_str_name().trim_start_matches("QOS_CLASS_").to_lowercase()).unwrap_or_default(),
        "priority": s.priority,
        "labels": s.labels,
        "deadline_seconds": s.deadline_seconds,
    })
}

/// A throttle state.
pub fn throttle(t: &pb::ThrottleState) -> Value {
    json!({
        "vcpu_quota_millicores": t.vcpu_quota_millicores,
        "sched_idle": t.sched_idle,
        "io_bandwidth_bps": t.io_bandwidth_bps,
        "io_iops": t.io_iops,
        "memory_limit_bytes": t.memory_limit_bytes,
        "paused": t.paused,
        "reason": t.reason,
        "changed_unix_ms": t.changed_unix_ms,
    })
}

/// A job.
pub fn job(j: &pb::Job) -> Value {
    json!({
        "id": j.id,
        "state": state_name(j.state),
        "end_reason": reason_name(j.end_reason),
        "exit_code": j.exit_code,
        "message": j.message,
        "created_unix_ms": j.created_unix_ms,
        "started_unix_ms": j.started_unix_ms,
        "ended_unix_ms": j.ended_unix_ms,
        "vmm_pid": j.vmm_pid,
        "progress": j.progress,
        "cpu_seconds": j.cpu_seconds,
        "throttle": j.throttle.as_ref().map(throttle),
        "spec": j.spec.as_ref().map(spec),
    })
}

/// A memory budget in bytes, `null` for "no cap" (sent as `u64::MAX`).
fn memory_cap(bytes: u64) -> Value {
    if bytes == u64::MAX {
        Value::Null
    } else {
        bytes.into()
    }
}

/// Node status.
pub fn node(n: &pb::NodeStatusResponse) -> Value {
    json!({
        "node_name": n.node_name,
        "agent_version": n.agent_version,
        "cgroup_version": n.cgroup_version,
        "policy_mode": n.policy_mode,
        "policy_hash": n.policy_hash,
        "cpus": n.cpus,
        "memory_bytes": n.memory_bytes,
        "offline_budget_millicores": n.offline_budget_millicores,
        "offline_budget_memory_bytes": memory_cap(n.offline_budget_memory_bytes),
        "offline_reserved_millicores": n.offline_reserved_millicores,
        "offline_reserved_memory_bytes": n.offline_reserved_memory_bytes,
        "offline_reserved_jobs": n.offline_reserved_jobs,
        "offline_cpu_quota_millicores": n.offline_cpu_quota_millicores,
        "interference_score": n.interference_score,
        "jobs_by_state": n.jobs_by_state,
        "uptime_seconds": n.uptime_seconds,
        "vms": n.vms.iter().map(|v| json!({
            "job_id": v.job_id,
            "state": state_name(v.state),
            "throttle": v.throttle.as_ref().map(throttle),
        })).collect::<Vec<_>>(),
    })
}

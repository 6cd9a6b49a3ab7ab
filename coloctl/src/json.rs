//! JSON views of the API messages for `--output json` (enum values by name, not number).

use colo_config::job::JobSpec;
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

/// A job spec: colo's job model as it serializes (the agent's `job.json` spells it the same).
/// The sandbox is under `guest`, by its kind (`{"container": {"image": ...}}`). A Linux guest
/// without a root filesystem shows `"rootfs": ""`, as the wire carries it; a spec the model
/// cannot hold (no sandbox, an unknown QoS class: never sent by an agent) is `null`.
pub fn spec(s: &pb::JobSpec) -> Value {
    let Some(mut v) = JobSpec::try_from(s)
        .ok()
        .and_then(|m| serde_json::to_value(m).ok())
    else {
        return Value::Null;
    };
    if let Some(rootfs) = v.pointer_mut("/guest/linux/rootfs")
        && rootfs.is_null()
    {
        *rootfs = "".into();
    }
    v
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
        "sandboxes": n.sandboxes.iter().map(|o| json!({
            "kind": o.kind,
            "available": o.available,
            "detail": o.detail,
        })).collect::<Vec<_>>(),
        "vms": n.vms.iter().map(|v| json!({
            "job_id": v.job_id,
            "state": state_name(v.state),
            "throttle": v.throttle.as_ref().map(throttle),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_view_keeps_its_fields() {
        let mut s = pb::JobSpec {
            idempotency_key: "k".into(),
            name: "n".into(),
            sandbox: Some(pb::job_spec::Sandbox::Linux(pb::LinuxGuest {
                kernel_path: "/i/vmlinux".into(),
                ..Default::default()
            })),
            vcpus: 2,
            memory_mib: 64,
            disks: vec![pb::Disk {
                path: "/v/d.img".into(),
                read_only: true,
                bandwidth_bps: 1,
                iops: 2,
            }],
            qos_class: pb::QosClass::Mid as i32,
            priority: -1,
            labels: [("team".to_string(), "data".to_string())].into(),
            deadline_seconds: 9,
        };
        assert_eq!(
            spec(&s),
            json!({
                "idempotency_key": "k", "name": "n",
                "guest": {"linux": {"kernel": "/i/vmlinux", "rootfs": "", "cmdline": ""}},
                "vcpus": 2, "memory_mib": 64,
                "disks": [{"path": "/v/d.img", "read_only": true, "bandwidth_bps": 1, "iops": 2}],
                "qos_class": "mid", "priority": -1, "labels": {"team": "data"},
                "deadline_seconds": 9,
            })
        );
        s.sandbox = Some(pb::job_spec::Sandbox::Workload(pb::WorkloadGuest {
            cpu_units: 5,
            io: "read:1".into(),
            ..Default::default()
        }));
        assert_eq!(
            spec(&s)["guest"],
            json!({"workload": {"cpu_units": 5, "mem_mib": 0, "hold_seconds": 0, "exit_code": 0,
                "io": "read:1", "cpu_forever": false}})
        );
        s.sandbox = Some(pb::job_spec::Sandbox::Container(pb::ContainerJob {
            image: "/img/bb".into(),
            command: "sort".into(),
            args: vec!["/in/f".into()],
            volumes: vec![pb::VolumeMount {
                source: "/d/in".into(),
                target: "/in".into(),
                read_only: true,
            }],
            ..Default::default()
        }));
        s.disks.clear();
        assert_eq!(
            spec(&s)["guest"],
            json!({"container": {"image": "/img/bb", "command": "sort", "args": ["/in/f"],
                "env": {}, "workdir": "", "user": null,
                "volumes": [{"source": "/d/in", "target": "/in", "read_only": true}]}})
        );
    }
}

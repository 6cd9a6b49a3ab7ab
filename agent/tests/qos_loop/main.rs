//! The QoS loop against the real thing: a colo-agent process, an online process in its own test
//! cgroup whose threads wait for the CPU when the VMs burn, and workload-guest VMs.
//!
//! * run delay above the threshold → the offline quota drops; calm again → it rises after the
//!   cool-down; no VM's vCPU quota and not the group's ever goes below the policy minimum;
//! * a latency breach pushed with `coloctl report-sli` (the only signal switched on) throttles
//!   the VMs' vCPUs; when the pushes stop, the throttle is lifted;
//! * `mode: observe` decides the same but changes no cgroup file.
//!
//! Timing bounds here are generous (the reaction benchmark in `bench/` measures them).

mod busy;
#[path = "../common/mod.rs"]
mod common;
mod containers;
mod observe;
mod run_delay;
mod sli;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colo_proto::agent as pb;
use colo_testkit::TestCgroup;
use common::{Options, TestAgent, rt};

/// When set, the `online_helper` test runs as the online process.
const HELPER_ENV: &str = "COLO_QOS_ONLINE_HELPER";

/// The online process: two threads that work 2 ms and sleep 2 ms, so they are runnable often
/// and wait for the CPU when offline work takes it. Runs only when re-executed by a test.
#[test]
#[ignore = "helper process, started by the other tests"]
fn online_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                loop {
                    let t = Instant::now();
                    let mut x = 0u64;
                    while t.elapsed() < Duration::from_millis(2) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

pub(crate) struct Online {
    child: Option<Child>,
    cg: TestCgroup,
    rel: String,
}

impl Online {
    pub(crate) fn start() -> Self {
        let mut o = Self::idle();
        o.load();
        o
    }

    /// The service's cgroup with nothing running in it yet (no online load).
    pub(crate) fn idle() -> Self {
        let cg = TestCgroup::new(&["cpu", "cpuacct"], 256 << 20).expect("online test cgroup");
        let rel = format!("/{}", cg.name());
        Self {
            child: None,
            cg,
            rel,
        }
    }

    /// Starts the online process in the service's cgroup.
    pub(crate) fn load(&mut self) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "online_helper",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the online helper");
        let pid = child.id();
        self.child = Some(child);
        self.cg
            .add_pid(pid)
            .expect("move the helper into its cgroup");
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Online {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn ready(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) || !colo_testkit::kvm_or_skip(test) {
        return None;
    }
    let waited = Instant::now();
    let lock = colo_testkit::host_lock();
    eprintln!(
        "{test}: host lock after {:.1} s",
        waited.elapsed().as_secs_f64()
    );
    assert!(
        common::vmm_binary().is_some(),
        "{test}: the colo-vmm binary is not built next to this test (cargo build -p colo-vmm, or set COLO_VMM_BIN)"
    );
    Some(lock)
}

/// Root and the host lock for a test of container jobs only (no VM): it runs without KVM, e.g.
/// on the cgroup v2 TCG host of `scripts/tcg-v2-suite.sh`.
pub(crate) fn ready_without_kvm(test: &str) -> Option<colo_testkit::HostLock> {
    if !colo_testkit::root_or_skip(test) {
        return None;
    }
    Some(colo_testkit::host_lock())
}

/// A test agent watching `online` with `policy` (run delay is the CPU signal: the system-wide
/// PSI of a v1 host also counts the VMs' own waits, so it is switched off here).
pub(crate) fn agent(online: &Online, policy: &str) -> TestAgent {
    agent_with(online, policy, "", "")
}

/// [`agent`] with extra lines for the service (e.g. its `slo:`) and for the policy's
/// `interference:` section.
pub(crate) fn agent_with(
    online: &Online,
    policy: &str,
    service: &str,
    interference: &str,
) -> TestAgent {
    agent_with_policy(
        online,
        &format!(
            "apiVersion: colo/v1\nkind: Policy\n{policy}\ninterference:\n  psi:\n    cpu_some: null\n    io_some: null\n    io_full: null\n  io_latency: null\n  io_utilisation: null\n{interference}"
        ),
        service,
    )
}

/// A test agent watching `online` with exactly `policy` (a whole policy file).
pub(crate) fn agent_with_policy(online: &Online, policy: &str, service: &str) -> TestAgent {
    // The common agent names the guest only when $COLO_WORKLOAD_GUEST is set.
    // Without KVM (container-only tests) the workload guest may not exist: no VM needs it.
    let workload = match common::workload_guest() {
        Some(_) => String::new(),
        None => colo_vmm::workload_guest_path()
            .map(|p| format!("  workload: {}\n", p.display()))
            .unwrap_or_default(),
    };
    TestAgent::start(Options {
        budget_cpu: 2.0,
        extra_offline: workload,
        extra: format!(
            "services:\n  - name: online\n    selector:\n      cgroups: [{}]\n{service}loop:\n  period: 50ms\n  psi_triggers: false\n",
            online.rel
        ),
        policy: Some(policy.to_string()),
        ..Options::default()
    })
}

/// Submits `n` one-vCPU VMs that burn until cancelled; waits until they run.
pub(crate) fn burn(agent: &TestAgent, n: usize) -> Vec<String> {
    let t = Instant::now();
    let ids = rt().block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for i in 0..n {
            let j = common::submit(
                &mut c,
                common::workload(&format!("burn-{i}"), 1_000_000_000, 0, 0),
            )
            .await;
            ids.push(j.id);
        }
        for id in &ids {
            common::wait_for(&mut c, id, Duration::from_secs(20), |j| {
                common::state(j) == pb::JobState::Running
            })
            .await;
        }
        ids
    });
    eprintln!("{n} VMs running after {:.1} s", t.elapsed().as_secs_f64());
    ids
}

/// Submits `n` one-core container jobs (a busybox shell loop) that burn until cancelled; waits
/// until they run. `None` (with a loud skip) without busybox-static or an OCI runtime.
pub(crate) fn burn_containers(agent: &TestAgent, n: usize, test: &str) -> Option<Vec<String>> {
    burn_containers_with(agent, n, 0, test)
}

/// [`burn_containers`] at eviction `priority`.
pub(crate) fn burn_containers_with(
    agent: &TestAgent,
    n: usize,
    priority: i32,
    test: &str,
) -> Option<Vec<String>> {
    let keys: Vec<String> = (0..n).map(|i| format!("burn-container-{i}")).collect();
    burn_containers_as(agent, &keys, priority, test)
}

/// One burning container job with idempotency `key` at eviction `priority`.
pub(crate) fn burn_containers_keyed(
    agent: &TestAgent,
    key: &str,
    priority: i32,
    test: &str,
) -> Option<String> {
    burn_containers_as(agent, &[key.to_string()], priority, test)?.pop()
}

/// One burning container job per idempotency key; waits until they run.
fn burn_containers_as(
    agent: &TestAgent,
    keys: &[String],
    priority: i32,
    test: &str,
) -> Option<Vec<String>> {
    let busybox = colo_testkit::busybox_or_skip(test)?;
    if !common::oci_runtime_or_skip(test) {
        return None;
    }
    let image = agent.images_dir().join("busybox");
    if !image.join("bin").exists() {
        colo_testkit::busybox_rootfs(&busybox, &image, &[]).expect("busybox rootfs");
    }
    let ids = rt().block_on(async {
        let mut c = agent.client().await;
        let mut ids = Vec::new();
        for key in keys {
            let spec = pb::JobSpec {
                idempotency_key: key.clone(),
                sandbox: Some(pb::job_spec::Sandbox::Container(pb::ContainerJob {
                    image: image.display().to_string(),
                    command: "sh".into(),
                    args: vec!["-c".into(), "while :; do :; done".into()],
                    ..Default::default()
                })),
                vcpus: 1,
                memory_mib: 32,
                priority,
                ..Default::default()
            };
            ids.push(common::submit(&mut c, spec).await.id);
        }
        for id in &ids {
            // An upper bound for slow hosts (TCG emulation); a normal host takes well under 1 s.
            common::wait_for(&mut c, id, Duration::from_secs(150), |j| {
                common::state(j) == pb::JobState::Running
            })
            .await;
        }
        ids
    });
    Some(ids)
}

pub(crate) fn cancel(agent: &TestAgent, ids: &[String]) {
    let t = Instant::now();
    rt().block_on(async {
        let mut c = agent.client().await;
        for id in ids {
            let _ = c
                .cancel_job(pb::CancelJobRequest {
                    id: id.clone(),
                    reason: "test over".into(),
                })
                .await;
        }
        for id in ids {
            common::wait_end(&mut c, id, Duration::from_secs(30)).await;
        }
    });
    eprintln!(
        "{} jobs ended {:.1} s after cancel",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
}

/// `cpu.cfs_quota_us / cpu.cfs_period_us` of a cgroup directory (v1) or `cpu.max` (v2), cores.
pub(crate) fn quota(dir: &Path) -> Option<f64> {
    if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
        let mut it = max.split_whitespace();
        let q = it.next()?;
        let p: f64 = it.next()?.parse().ok()?;
        return q.parse::<f64>().ok().map(|q| q / p);
    }
    let q: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let p: f64 = std::fs::read_to_string(dir.join("cpu.cfs_period_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (q > 0).then(|| q as f64 / p)
}

pub(crate) fn offline_dir(agent: &TestAgent) -> PathBuf {
    agent.cgroup.dir("cpu").join("offline")
}

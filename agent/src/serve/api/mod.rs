//! The gRPC API (`colo.agent.v1.Agent`): validation, then the job manager.

pub mod access;
pub mod convert;
mod stream;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use colo_proto::agent as pb;
use tonic::{Request, Response, Status};

use self::access::{Caller, TcpAccess};
use crate::jobs::validate::{self, FieldError, SpecLimits};
use crate::jobs::{JobFilter, JobManager};
use crate::qos::policy_store::PolicyStore;
use crate::qos::view::{QosView, SliInbox};

/// Facts about the node for NodeStatus.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Physical memory.
    pub memory_bytes: u64,
    /// When the agent started.
    pub started: Instant,
    /// Online services configured in agent.yaml (ReportSli accepts only these).
    pub services: Vec<String>,
}

/// The service behind the gRPC API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentService {
    /// The job manager.
    pub jobs: JobManager,
    /// The policy in force.
    pub policy: PolicyStore,
    /// The node.
    pub node: Arc<NodeInfo>,
    /// What the QoS loop shows.
    pub qos: Arc<RwLock<QosView>>,
    /// Pushed SLIs.
    pub sli: Arc<SliInbox>,
    /// The node's latest report, published by the QoS loop.
    pub latest: crate::qos::LatestSnapshot,
    /// Job size limits.
    pub limits: SpecLimits,
    /// Who may change things over TCP.
    pub tcp_access: Arc<TcpAccess>,
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Most latency values in one `ReportSli` call.
pub const MAX_SLI_VALUES_PER_REPORT: usize = 16_384;

impl AgentService {
    fn caller<T>(&self, req: &Request<T>) -> Caller {
        access::caller(req, &self.tcp_access)
    }

    /// Audits a read that was refused (reads that succeed are not audited).
    fn read<R>(
        who: &Caller,
        op: &str,
        job: Option<&str>,
        r: Result<R, Status>,
    ) -> Result<R, Status> {
        if let Err(s) = &r {
            access::refused(who, op, job, s.message());
        }
        r
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let who = self.caller(&request);
        access::require_full(&who, "submit")?;
        let req = request.into_inner();
        let limits = self.limits.clone();
        // Validation opens the files the job names (beneath the operator's roots): blocking IO.
        let spec =
            tokio::task::spawn_blocking(move || validate::job_spec(req.spec.as_ref(), &limits))
                .await
                .map_err(|e| Status::internal(e.to_string()))
                .and_then(|r| r.map_err(invalid));
        let r = match spec {
            Ok(spec) => self.jobs.submit(spec).await.map_err(convert::status),
            Err(e) => Err(e),
        };
        let id = r.as_ref().ok().map(|(rec, _)| rec.id.clone());
        access::outcome(&who, "submit", id.as_deref(), &r);
        let (rec, existing) = r?;
        Ok(Response::new(pb::SubmitJobResponse {
            job: Some(convert::job(&rec, None)),
            existing,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let who = self.caller(&request);
        let id = request.into_inner().id;
        Self::read(
            &who,
            "get",
            Some(&id),
            validate::check_job_id("id", &id).map_err(invalid),
        )?;
        let mut rec = Self::read(
            &who,
            "get",
            Some(&id),
            self.jobs.get(&id).map_err(convert::status),
        )?;
        let cgroup = self.jobs.job_cgroup(&id);
        if let Some(cg) = cgroup {
            rec.cpu_seconds = cg.stats().cpu_usage_ns as f64 / 1e9;
            // Fresh progress from the VMM, if it answers quickly.
            if let Ok(st) = self.jobs.control(&id, |c| c.stats()).await {
                rec.progress = st.progress;
            }
        }
        let t = self.jobs.throttle(&id);
        Ok(Response::new(convert::job(&rec, t.as_ref())))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let req = request.into_inner();
        let mut filter = JobFilter::default();
        for (i, s) in req.states.iter().enumerate() {
            let st = convert::state_from(*s).ok_or_else(|| {
                invalid(FieldError {
                    field: format!("states[{i}]"),
                    rule: format!("must be a JobState other than UNSPECIFIED, got {s}"),
                })
            })?;
            filter.states.push(st);
        }
        filter.labels = req.labels.into_iter().collect();
        let jobs = self
            .jobs
            .list(&filter)
            .iter()
            .map(|r| convert::job(r, self.jobs.throttle(&r.id).as_ref()))
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let who = self.caller(&request);
        access::require_full(&who, "cancel")?;
        let req = request.into_inner();
        let r = validate::check_job_id("id", &req.id)
            .and_then(|()| validate::check_text("reason", &req.reason, 1024))
            .map_err(invalid)
            .and_then(|()| {
                self.jobs
                    .cancel(&req.id, &req.reason)
                    .map_err(convert::status)
            });
        access::outcome(&who, "cancel", Some(&req.id), &r);
        Ok(Response::new(convert::job(&r?, None)))
    }

    type WatchJobStream = stream::EventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let who = self.caller(&request);
        let req = request.into_inner();
        let r = validate::check_job_id("id", &req.id)
            .map_err(invalid)
            .and_then(|()| stream::watch(&self.jobs, &req.id, req.serial).map_err(convert::status));
        let s = Self::read(&who, "watch", Some(&req.id), r)?;
        Ok(Response::new(s))
    }

    type GetJobLogsStream = stream::LogStream;

    async fn get_job_logs(
        &self,
        request: Request<pb::GetJobLogsRequest>,
    ) -> Result<Response<Self::GetJobLogsStream>, Status> {
        let who = self.caller(&request);
        let req = request.into_inner();
        Self::read(
            &who,
            "logs",
            Some(&req.id),
            validate::check_job_id("id", &req.id).map_err(invalid),
        )?;
        let source = pb::LogSource::try_from(req.source).map_err(|_| {
            invalid(FieldError {
                field: "source".into(),
                rule: format!(
                    "must be LOG_SOURCE_SERIAL or LOG_SOURCE_VMM, got {}",
                    req.source
                ),
            })
        })?;
        let s = stream::logs(&self.jobs, &req.id, source, req.follow).map_err(convert::status)?;
        Ok(Response::new(s))
    }

    async fn node_status(
        &self,
        _request: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let u = self.jobs.budget_use();
        let qos = self.qos.read().unwrap_or_else(|p| p.into_inner()).clone();
        let policy = self.policy.current();
        let vms = self
            .jobs
            .live_jobs()
            .into_iter()
            .map(|j| pb::VmThrottle {
                job_id: j.record.id.clone(),
                state: convert::state(j.record.state) as i32,
                throttle: Some(convert::throttle(&j.throttle)),
            })
            .collect();
        let jobs_by_state = self
            .jobs
            .counts_by_state()
            .into_iter()
            .map(|(s, n)| (s.name().to_string(), n))
            .collect();
        Ok(Response::new(pb::NodeStatusResponse {
            node_name: self.node.name.clone(),
            agent_version: crate::AGENT_VERSION.into(),
            cgroup_version: self.jobs.cgroups().version().to_string(),
            policy_mode: policy.mode.clone(),
            cpus: self.node.cpus,
            memory_bytes: self.node.memory_bytes,
            offline_budget_millicores: u.budget.cpu_millicores,
            offline_budget_memory_bytes: u.budget.memory_bytes,
            offline_reserved_millicores: u.reserved_millicores,
            offline_reserved_memory_bytes: u.reserved_memory_bytes,
            jobs_by_state,
            interference_score: qos.interference_score,
            vms,
            offline_cpu_quota_millicores: qos.offline_cpu_quota_millicores,
            uptime_seconds: i64::try_from(self.node.started.elapsed().as_secs()).unwrap_or(0),
            policy_hash: policy.hash.clone(),
            offline_reserved_jobs: u.jobs,
            node_report: self.latest.get().map(|s| s.report.clone()),
            sandboxes: self
                .jobs
                .sandbox_offers()
                .iter()
                .map(|o| pb::SandboxOffer {
                    kind: o.kind.name().into(),
                    available: o.available,
                    detail: o.detail.clone(),
                })
                .collect(),
        }))
    }

    async fn report_sli(
        &self,
        request: Request<pb::ReportSliRequest>,
    ) -> Result<Response<pb::ReportSliResponse>, Status> {
        let who = self.caller(&request);
        let refuse = |s: Status| {
            access::refused(&who, "report_sli", None, s.message());
            s
        };
        access::require_full(&who, "report_sli")?;
        let req = request.into_inner();
        if req.service.is_empty() {
            return Err(refuse(invalid(FieldError {
                field: "service".into(),
                rule: "is required (an online service name from agent.yaml)".into(),
            })));
        }
        // Values are kept only for the services the loop reads (and drains); anything else
        // would pile up.
        if !self.node.services.contains(&req.service) {
            let known = if self.node.services.is_empty() {
                "none configured".to_string()
            } else {
                self.node.services.join(", ")
            };
            return Err(refuse(Status::not_found(format!(
                "service: must name an online service of agent.yaml ({known}), got {:?}",
                access::truncate(&req.service)
            ))));
        }
        if req.latency_us.len() > MAX_SLI_VALUES_PER_REPORT {
            return Err(refuse(invalid(FieldError {
                field: "latency_us".into(),
                rule: format!(
                    "at most {MAX_SLI_VALUES_PER_REPORT} values per report, got {}",
                    req.latency_us.len()
                ),
            })));
        }
        self.sli.push(&req.service, &req.latency_us);
        Ok(Response::new(pb::ReportSliResponse {
            accepted: req.latency_us.len() as u64,
        }))
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        let who = self.caller(&request);
        access::require_full(&who, "reload_policy")?;
        let store = self.policy.clone();
        let r = tokio::task::spawn_blocking(move || store.reload())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match &r {
            Ok(p) => access::done(&who, "reload_policy", Some(&p.hash)),
            Err(e) => access::refused(&who, "reload_policy", None, e),
        }
        Ok(Response::new(match r {
            Ok(p) => pb::ReloadPolicyResponse {
                applied: true,
                error: String::new(),
                policy_hash: p.hash.clone(),
            },
            Err(e) => pb::ReloadPolicyResponse {
                applied: false,
                error: e,
                policy_hash: self.policy.current().hash.clone(),
            },
        }))
    }
}

//! colo's gRPC contracts: the node agent's job API (`colo.agent.v1`) and the node reports that
//! agents stream to colo-scheduler (`colo.report.v1`). The `.proto` sources are in `proto/colo/`.
//! [`job`] converts the wire's job spec to and from colo's job model (`colo_config::job`).

/// The generated code, nested as the protobuf packages are (agent.proto refers to
/// `colo.report.v1` types through that nesting).
mod generated {
    pub mod colo {
        pub mod agent {
            #[allow(missing_docs, clippy::all, missing_debug_implementations)]
            pub mod v1 {
                tonic::include_proto!("colo.agent.v1");
            }
        }
        pub mod report {
            #[allow(missing_docs, clippy::all, missing_debug_implementations)]
            pub mod v1 {
                tonic::include_proto!("colo.report.v1");
            }
        }
    }
}

/// The node agent API (`proto/colo/agent.proto`).
pub use generated::colo::agent::v1 as agent;
/// Node reports to colo-scheduler (`proto/colo/report.proto`).
pub use generated::colo::report::v1 as report;

pub mod job;

impl agent::JobState {
    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Preempted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::agent::JobState;
    use prost::Message;

    #[test]
    fn terminal_states() {
        assert!(JobState::Succeeded.is_terminal());
        assert!(JobState::Preempted.is_terminal());
        assert!(!JobState::Running.is_terminal());
        assert!(!JobState::Paused.is_terminal());
    }

    #[test]
    fn report_round_trips_on_the_wire() {
        let r = super::report::NodeReport {
            node_name: "n1".into(),
            seq: 42,
            sandboxes: vec!["workload".into(), "container".into()],
            ..Default::default()
        };
        let bytes = r.encode_to_vec();
        let back = super::report::NodeReport::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, r);
    }
}

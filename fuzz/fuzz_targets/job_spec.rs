//! Job spec validation from the wire: a protobuf `colo.agent.v1.JobSpec` as `SubmitJob`
//! carries it, decoded, converted (`JobSpec::try_from`) and validated (`JobSpec::validate`), the
//! two steps the agent's `validate::job_spec` runs, with a node that lets clients name files
//! under `/srv/` only. A spec that passes must survive the wire back and pass again unchanged.
#![no_main]

use std::path::Path;

use colo_config::job::{JobSpec, PathAccess, PathKind, SpecLimits};
use colo_proto::agent as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[derive(Debug, Default, Clone, Copy)]
struct UnderSrv;

impl PathAccess for UnderSrv {
    fn check(&self, kind: PathKind, path: &Path, write: bool) -> Result<(), String> {
        if path.starts_with("/srv") {
            Ok(())
        } else {
            Err(format!(
                "{kind:?} {} is not under /srv (write: {write})",
                path.display()
            ))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = pb::JobSpec::decode(data) else {
        return;
    };
    let limits = SpecLimits::<UnderSrv>::default();
    match JobSpec::try_from(&wire).and_then(|s| s.validate(&limits)) {
        Ok(spec) => {
            let again = JobSpec::try_from(&pb::JobSpec::from(&spec))
                .and_then(|s| s.validate(&limits))
                .expect("a valid spec survives the wire");
            assert_eq!(again, spec);
        }
        Err(e) => drop(e.to_string()),
    }
});

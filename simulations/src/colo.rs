//! colo's modes: every node runs the real `colo_policy` engine on a sample of its modelled state.
//!
//! The engine is not on main yet; until it lands these modes refuse to run rather than
//! pretend.

use crate::cluster::{Progress, RunError, RunResult, SimConfig};
use crate::compare::{Mode, ModeSettings};
use crate::trace::TraceSource;

/// Runs `mode` (colo or colo-observe).
///
/// # Errors
/// Always, for now: [`RunError::Config`] saying the engine is missing.
pub fn run(
    mode: Mode,
    _trace: &mut dyn TraceSource,
    _cfg: &SimConfig,
    _settings: &ModeSettings,
    _progress: &dyn Progress,
) -> Result<RunResult, RunError> {
    Err(RunError::Config(format!(
        "mode {}: colo_policy's engine is not available in this build yet",
        mode.name()
    )))
}

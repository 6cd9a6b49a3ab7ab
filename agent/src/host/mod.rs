//! What the agent reads and writes of the host kernel, shared by the job and QoS sides: the
//! cgroup hierarchies and the agent's subtree ([`cgroup`]), kernel files kept open for cheap
//! re-reads ([`statfile`]), and the wall clock in the agent's records ([`clock`]). Nothing here knows jobs, policies or the API.

pub mod cgroup;
pub mod clock;
pub mod statfile;

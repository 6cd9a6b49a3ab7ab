//! What the agent reads and writes of the host kernel, shared by the job and QoS sides: the
//! cgroup hierarchies and the agent's subtree ([`cgroup`]), and kernel files kept open for
//! cheap re-reads ([`statfile`]). Nothing here knows jobs, policies or the API.

pub mod cgroup;
pub mod statfile;

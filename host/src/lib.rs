//! The plugin host: runs plugin workers as child processes, each confined and supervised.
//!
//! - [`confine`]: what a worker process may consume and see: memory, CPU and process-count
//!   limits through cgroups (v2, or v1 where that is what the machine has; rlimits only as the
//!   last fallback), open files, no new privileges, a private working directory and a minimal
//!   environment. [`confine::Confinement::detect`] says which mechanism is in force.
//!
//! - [`supervise`]: one worker instance under supervision: restarts with exponential backoff,
//!   a crash loop called and given up on, its output kept (bounded), a graceful stop.
//!
//! The host's placement and health checks build on these pieces (docs/host.md).

pub mod confine;
pub mod supervise;

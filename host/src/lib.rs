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
//! - [`place`]: where each plugin's instances run: hosts register themselves with heartbeats,
//!   and every host computes the same placement from the live ones.
//!
//! - [`run`]: `switchyard host` itself ([`run::run_host`]): the instances placed on this host,
//!   prepared from their packages, confined, supervised and reported ([`report`]), their
//!   output published ([`logs`]).

pub mod confine;
pub mod logs;
pub mod place;
pub mod report;
pub mod run;
pub mod supervise;

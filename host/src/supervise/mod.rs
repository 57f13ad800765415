//! Supervising worker instances: each started confined, started again with exponential
//! backoff when it ends, given up on when it crash-loops, its output kept (bounded), stopped
//! with SIGTERM and, after a grace period, SIGKILL.

mod instance;
mod output;
mod restarts;

pub(crate) use instance::signal_group;
pub use instance::{supervise, InstanceEvent, Supervision};
pub use output::{Line, OutputLog, Stream, MAX_LINE_BYTES};
pub use restarts::{Decision, RestartPolicy, Restarts};

//! The delivery path, as small pieces with one job each, composed by [`deliver`]:
//!
//! ```text
//! pulled message ─ screen ─ version check ─┬─ presence ─ circuit breaker ─ rate limit ─ request ─┬─ decide ─ ack / nak(delay) / dead-letter
//!                                               └────────── all under keep-alive (in-progress acks) ──┘
//! ```

pub mod breaker;
pub mod decision;
mod deliver;
pub mod in_hand;
pub mod keepalive;
pub mod metrics;
pub mod presence;
pub mod rate;
pub mod replies;
pub mod screen;
pub mod stats;

pub use deliver::{deliver, DeliveryPath, Settled};

//! Switchyard dispatcher.

pub mod local_nats;

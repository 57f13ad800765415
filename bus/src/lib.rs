//! Switchyard bus.

//! Switchyard plugin SDK.

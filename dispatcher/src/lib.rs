//! Switchyard dispatcher.

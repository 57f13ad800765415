//! A plugin's lifecycle: what it asks for and its approval ([`approval`]), whether it fits
//! beside the others ([`compat`]), its announcements ([`events`]), and marking it failed
//! ([`failure`]).

pub mod approval;
pub mod compat;
pub mod events;
pub mod failure;
pub mod install;
pub mod operate;
pub mod rollback;

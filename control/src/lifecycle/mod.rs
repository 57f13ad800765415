//! A plugin's lifecycle: what it asks for and its approval ([`approval`]), and whether it
//! fits beside the others ([`compat`]).

pub mod approval;
pub mod compat;
pub mod events;

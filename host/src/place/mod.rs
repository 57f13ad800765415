//! Where each plugin's instances run: the hosts register themselves with heartbeats
//! ([`HostDirectory`]), and every host computes the same placement from the same list of live
//! hosts ([`placement`]), so that no host has to lead.

mod directory;
mod placement;

pub use directory::{HostDirectory, HostRecord, LiveHost, PlaceError};
pub use placement::{hosts_for, Slot};

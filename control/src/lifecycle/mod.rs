//! A plugin's lifecycle beside the others: whether it fits ([`compat`]).

pub mod compat;

//! What a system put on the wire: messages and payload bytes over all its connections, as
//! async-nats counts them (protocol operations such as SUB and UNSUB are not counted).

use std::sync::atomic::Ordering;

/// Totals over a set of connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// Messages sent plus received.
    pub messages: u64,
    /// Payload and header bytes sent plus received.
    pub bytes: u64,
}

impl Wire {
    /// The totals of `clients` so far.
    pub fn of(clients: &[async_nats::Client]) -> Self {
        clients.iter().fold(Self::default(), |total, client| {
            let stats = client.statistics();
            // async-nats' counters are `portable_atomic` types; read them alike.
            Self {
                messages: total.messages
                    + stats.in_messages.load(Ordering::Relaxed)
                    + stats.out_messages.load(Ordering::Relaxed),
                bytes: total.bytes
                    + stats.in_bytes.load(Ordering::Relaxed)
                    + stats.out_bytes.load(Ordering::Relaxed),
            }
        })
    }

    /// What was added since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            messages: self.messages.saturating_sub(earlier.messages),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

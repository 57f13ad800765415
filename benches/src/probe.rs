//! What travels in the benchmarks: a sequence number and the publish time, padded to the
//! payload size under test. Switchyard carries it as a typed MessagePack event; the raw
//! baseline as 16 plain bytes plus padding.

use bytes::{BufMut, Bytes, BytesMut};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, TypedEvent};

/// The event Switchyard publishes and the benchmark plugins handle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// The position in the run, from 0.
    pub seq: u64,
    /// When it was published, in [`crate::clock::now_ns`] time.
    pub sent_ns: u64,
    /// Filler that brings the encoded body to the payload size under test.
    pub pad: String,
}

impl TypedEvent for Probe {
    const TYPE: &'static str = "bench.probe";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

impl Probe {
    /// A probe whose MessagePack body is about `body_size` bytes (within the few bytes by
    /// which the encoding of the two numbers varies).
    pub fn sized(seq: u64, sent_ns: u64, body_size: usize) -> Self {
        Self {
            seq,
            sent_ns,
            pad: "x".repeat(pad_for(body_size)),
        }
    }
}

/// The padding that brings a [`Probe`]'s body to `body_size` bytes (0 when even an empty
/// pad is larger). Measured with large numbers, so real bodies are never bigger.
pub fn pad_for(body_size: usize) -> usize {
    let size = |pad: usize| {
        let probe = Probe {
            seq: u64::MAX,
            sent_ns: u64::MAX,
            pad: "x".repeat(pad),
        };
        ContentType::MessagePack
            .encode(&probe)
            .map_or(usize::MAX, |body| body.len())
    };
    // The string's length prefix grows at 32 and 256 bytes; a few steps settle it.
    let mut pad = 0;
    for _ in 0..4 {
        let overhead = size(pad).saturating_sub(pad);
        pad = body_size.saturating_sub(overhead);
    }
    pad
}

/// Length of the raw baseline's header: sequence and publish time, little-endian.
const RAW_HEADER: usize = 16;

/// The raw baseline's payload: sequence, publish time, then zeros up to `size` bytes.
pub fn raw_payload(seq: u64, sent_ns: u64, size: usize) -> Bytes {
    let mut payload = BytesMut::with_capacity(size.max(RAW_HEADER));
    payload.put_u64_le(seq);
    payload.put_u64_le(sent_ns);
    payload.resize(size.max(RAW_HEADER), 0);
    payload.freeze()
}

/// Reads the sequence and publish time back from a raw payload.
pub fn read_raw(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = payload.get(..8)?.try_into().ok()?;
    let sent = payload.get(8..16)?.try_into().ok()?;
    Some((u64::from_le_bytes(seq), u64::from_le_bytes(sent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_come_out_at_the_asked_size() {
        for size in [128, 1024] {
            let probe = Probe::sized(7, 1_000_000, size);
            let body = ContentType::MessagePack.encode(&probe).unwrap();
            assert!(
                body.len() <= size && body.len() + 16 >= size,
                "{}",
                body.len()
            );
        }
    }

    #[test]
    fn raw_payloads_round_trip() {
        let payload = raw_payload(3, 42, 128);
        assert_eq!(payload.len(), 128);
        assert_eq!(read_raw(&payload), Some((3, 42)));
        assert_eq!(read_raw(b"short"), None);
    }
}

//! The explain protocol's two decoders: a dispatcher reading a query (anyone with publish
//! rights on the control subject can send one), and `explain` reading answers (anyone who can
//! publish to its inbox can send one). Neither may panic, and a query read is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_dispatcher::explain::held::{read_query, HeldAnswer, MAX_SEQUENCES};

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = read_query(data) {
        assert!(query.sequences.len() <= MAX_SEQUENCES);
    }
    let _ = serde_json::from_slice::<HeldAnswer>(data);
});

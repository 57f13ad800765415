//! A registration as the dispatcher reads it from the registry bucket (JSON holding a manifest,
//! which is validated again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_control::registry::Registration;

fuzz_target!(|data: &[u8]| {
    if let Ok(registration) = serde_json::from_slice::<Registration>(data) {
        let json = serde_json::to_vec(&registration).expect("serializes");
        let again: Registration = serde_json::from_slice(&json).expect("reads back");
        assert_eq!(again, registration);
    }
});

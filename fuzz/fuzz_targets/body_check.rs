//! The body well-formedness check, against serde_json and rmp-serde as oracles: what it
//! accepts they read, and (for JSON) what serde_json reads it accepts unless too deep.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use switchyard_schemas::{check_body, BodyErrorKind, ContentType};

fuzz_target!(|data: &[u8]| {
    let json = check_body(ContentType::Json, data);
    if json.is_ok() {
        serde_json::from_slice::<IgnoredAny>(data).expect("checked JSON reads as any value");
    }
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        if let Err(error) = json {
            assert!(
                matches!(error.kind, BodyErrorKind::TooDeep { .. }),
                "serde_json reads what the check refuses: {error}"
            );
        }
    }
    if check_body(ContentType::MessagePack, data).is_ok() {
        rmp_serde::from_slice::<IgnoredAny>(data).expect("checked MessagePack reads as any value");
    }
});

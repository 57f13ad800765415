//! An event from a message's headers and body, as the dispatcher, the SDK and the redrive
//! tools read one (`switchyard_bus::decode_event`), then its body check, its trace context and
//! its data.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_schemas::telemetry;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = switchyard_fuzz::message(data);
    let map = switchyard_fuzz::header_map(&headers);
    let _ = telemetry::extract(switchyard_fuzz::lookup(&headers));
    if let Ok(event) = switchyard_bus::decode_event(Some(&map), Bytes::copy_from_slice(body)) {
        let checked = event.check_body();
        let data = event
            .attributes
            .content_type
            .decode::<serde_json::Value>(&event.data);
        // Whatever decodes was well-formed first.
        assert!(data.is_err() || checked.is_ok());
        let _ = event.headers();
    }
});

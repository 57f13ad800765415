//! A dead letter's failure headers (`Failure::from_headers`), read by `switchyard dlq` and the
//! redrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_dispatcher::dead_letter::Failure;

fuzz_target!(|data: &[u8]| {
    let (headers, _) = switchyard_fuzz::message(data);
    let map = switchyard_fuzz::header_map(&headers);
    if let Ok(failure) = Failure::from_headers(&map) {
        let _ = failure.dead_letter_id();
    }
});

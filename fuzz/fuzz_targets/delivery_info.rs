//! The `switchyard-delivery` header a worker reads (`DeliveryInfo::decode`). What reads must
//! write back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::delivery::{header, DeliveryInfo};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let headers = [(header::DELIVERY.to_owned(), value.into_owned())];
    if let Ok(info) = DeliveryInfo::decode(switchyard_fuzz::lookup(&headers)) {
        let written = [(header::DELIVERY.to_owned(), info.header_value())];
        let again = DeliveryInfo::decode(switchyard_fuzz::lookup(&written))
            .expect("a written delivery header reads back");
        assert_eq!(again, info);
    }
});

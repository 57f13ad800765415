//! A worker's reply to a delivery, as the dispatcher reads it (`Outcome::from_reply`): what a
//! worker, possibly hostile, puts in its headers and body. What reads must write back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::delivery::Outcome;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = switchyard_fuzz::message(data);
    if let Ok(outcome) = Outcome::from_reply(switchyard_fuzz::lookup(&headers), body) {
        let (pairs, body) = outcome.to_reply();
        let pairs: Vec<(String, String)> =
            pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        let again = Outcome::from_reply(switchyard_fuzz::lookup(&pairs), &body)
            .expect("a written reply reads back");
        assert_eq!(again, outcome);
    }
});

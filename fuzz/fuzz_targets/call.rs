//! What a dispatcher and a worker read of a call: the caller's `switchyard-call` options, the
//! worker's `switchyard-call` header, an answer's error headers, and the call subject with its
//! reply. What reads must write back the same; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::call::{CallError, CallInfo, CallOptions};
use switchyard_schemas::Namespace;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            if let Ok(options) = CallOptions::decode(Some(&text)) {
                let written = options.header_value();
                let again = CallOptions::decode(Some(&written)).expect("written options read back");
                assert_eq!(again, options);
            }
        }
        1 => {
            if let Ok(info) = CallInfo::decode(Some(&text)) {
                let written = info.header_value();
                let again =
                    CallInfo::decode(Some(&written)).expect("a written call header reads back");
                assert_eq!(again, info);
            }
        }
        2 => {
            // Two headers, split at the first NUL: the error code and the reason.
            let (code, reason) = text.split_once('\0').unwrap_or((&text, ""));
            let headers = [
                ("switchyard-error-code".to_owned(), code.to_owned()),
                ("Nats-Service-Error".to_owned(), reason.to_owned()),
            ];
            if let Some(error) = CallError::from_headers(switchyard_fuzz::lookup(&headers)) {
                let written: Vec<(String, String)> = error
                    .headers()
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                let again = CallError::from_headers(switchyard_fuzz::lookup(&written))
                    .expect("written error headers read back");
                assert_eq!(again, error);
            }
        }
        _ => {
            let namespace = Namespace::default();
            let (subject, reply) = text.split_once(' ').unwrap_or((&text, ""));
            if let Some(call) = namespace.parse_operation_call(subject) {
                let written = namespace.operation_call(
                    &call.tenant,
                    &call.plugin,
                    &call.operation,
                    &call.caller,
                );
                assert_eq!(written, subject, "a call subject writes back as read");
                let _ = namespace.is_caller_reply(&call.caller, reply);
            }
        }
    }
});

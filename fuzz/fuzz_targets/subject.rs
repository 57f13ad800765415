//! Subjects read back into names: channel subjects (`Namespace::parse_channel`), channel reply
//! subjects, event and replay subjects; with the default prefix and another one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::Namespace;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A subject, optionally followed by a reply subject after a newline.
    let (subject, reply) = text.split_once('\n').unwrap_or((text, ""));
    for ns in [Namespace::default(), Namespace::new("acme-prod").unwrap()] {
        if let Some(on) = ns.parse_channel(subject) {
            assert_eq!(ns.channel(&on.tenant, &on.channel, &on.sender), subject);
            let _ = ns.is_channel_reply_for(reply, &on);
        }
        if let Ok((tenant, event_type)) = ns.parse_event(subject) {
            assert_eq!(ns.event(&tenant, &event_type), subject);
        }
        let _ = ns.parse_event_or_redrive(subject);
    }
});

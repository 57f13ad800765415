//! The rights answer a worker reads from the control plane before it subscribes to channels.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchyard_plugin_sdk::channels::fuzz_rights_answer(data);
});

//! What a host reads from the bus, where (without `switchyard auth`) anyone may write: other
//! hosts' records (`{PREFIX}_HOSTS`), instance reports (`{PREFIX}_INSTANCES`) and workers'
//! hellos and heartbeats. Whatever decodes must write back the same, and the placement computed
//! from any list of names must stay within it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_host::place::{hosts_for, HostRecord};
use switchyard_host::report::InstanceReport;
use switchyard_schemas::delivery::Hello;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<HostRecord>(data) {
        let json = serde_json::to_vec(&record).expect("serializes");
        assert_eq!(serde_json::from_slice::<HostRecord>(&json).unwrap(), record);
    }
    if let Ok(report) = serde_json::from_slice::<InstanceReport>(data) {
        let json = serde_json::to_vec(&report).expect("serializes");
        assert_eq!(
            serde_json::from_slice::<InstanceReport>(&json).unwrap(),
            report
        );
    }
    let hello = Hello::read(data);
    if let Some(instance) = hello.instance.as_deref() {
        let _ = instance.split(' ').next().and_then(|i| i.split_once('@'));
    }
    // Names from the bytes, split on newlines: every placement names only live hosts.
    let text = String::from_utf8_lossy(data);
    let live: Vec<&str> = text.lines().take(64).collect();
    let placed = hosts_for("plugin", 8, &live);
    assert!(placed.iter().all(|host| live.contains(host)));
    assert_eq!(placed.len(), if live.is_empty() { 0 } else { 8 });
});

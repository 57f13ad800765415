//! What a worker reads about its settings: an update on its settings subject
//! (`SettingsUpdate::read`) and a dispatcher's answer to its hello. Whatever is read must
//! write back the same, and checking its values against any setting type must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::delivery::{HelloAnswer, SettingsUpdate};
use switchyard_schemas::manifest::{SettingKind, SettingSpec};

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = SettingsUpdate::read(data) {
        let json = serde_json::to_vec(&update).expect("serializes");
        let again = SettingsUpdate::read(&json).expect("a written update reads back");
        assert_eq!(again, update);
        for kind in ["string", "integer", "float", "boolean", "array", "table"] {
            let mut spec = SettingSpec::of_kind(SettingKind::from_name(kind).unwrap());
            spec.min = Some(-1.0);
            spec.max = Some(1e9);
            spec.max_length = Some(8);
            for (name, value) in &update.settings {
                let _ = spec.check(name, value);
            }
        }
        assert!(!update.is_older_than(&update));
    }
    let _ = serde_json::from_slice::<HelloAnswer>(data);
});

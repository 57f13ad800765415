//! A plugin manifest (`Manifest::from_toml_str`), read by the command line, each worker and
//! the dispatcher's registry. A valid one must read back equal from both stored forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_schemas::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::from_toml_str(text) {
        let toml = manifest.to_toml_string();
        let again = Manifest::from_toml_str(&toml).expect("the canonical TOML reads back");
        assert_eq!(again, manifest);
        let json = serde_json::to_string(&manifest).expect("serializes");
        let again: Manifest = serde_json::from_str(&json).expect("the stored JSON reads back");
        assert_eq!(again, manifest);
    }
});

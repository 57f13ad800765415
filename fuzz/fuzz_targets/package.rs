//! A plugin package as `switchyard package verify|inspect|publish` and installing read it
//! (`Package::from_bytes`, then the verdict, the manifest and `verify_for_install`), and the
//! start of one as the catalog reads it from the store (`PackageHead::parse`). A package whose
//! manifest reads must give the same index and manifest through its head, and one written
//! again must read back with the same index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_control::package::{
    verify_for_install, Allowances, Package, PackageHead, TrustedKeys,
};

fuzz_target!(|data: &[u8]| {
    let total = data.len() as u64;
    // A prefix may ask for more bytes, or be refused; it must not panic.
    let _ = PackageHead::parse(&data[..data.len() / 2], total);
    let head = PackageHead::parse(data, total);
    let Ok(package) = Package::from_bytes(data.to_vec()) else {
        return;
    };
    let trust = TrustedKeys::none();
    let _ = package.verdict(&trust);
    let _ = verify_for_install(&package, &trust, &Allowances::none());
    if let Ok(manifest) = package.manifest() {
        let head = head
            .expect("a package whose manifest reads has a readable head")
            .expect("the whole package is enough for its head");
        assert_eq!(head.index, *package.index());
        assert_eq!(head.manifest, manifest);
    }
    let rewritten = package
        .with_signature(package.signature())
        .expect("a package that was read can be written again");
    assert_eq!(rewritten.index(), package.index());
    assert_eq!(rewritten.signature(), package.signature());
});

//! Plugin packages: one file holding a plugin's `plugin.toml` and its worker, with an index of
//! every part and a publisher's signature, and what decides whether a package may be installed.
//!
//! # The format
//!
//! A package is a ustar archive (the [`tar`] crate reads and writes its headers) whose entries
//! are, in this order and nothing else:
//!
//! 1. [`INDEX_ENTRY`] (`.package/index.json`): the [`PackageIndex`], in its canonical JSON
//!    form: every part with its size and SHA-256, and how the worker runs (a binary per target
//!    triple, or a command line).
//! 2. [`SIGNATURE_ENTRY`] (`.package/signature.json`), when signed: a [`PackageSignature`],
//!    an ed25519 signature by a publisher key over the index's bytes.
//! 3. The parts, in the index's order: first [`MANIFEST_PART`] (`plugin.toml`), then the
//!    worker's files under the paths they are installed at.
//!
//! The signature covers the index, and the index covers every part by its digest, so the
//! signature covers the whole package. Every package is treated as hostile: [`Package::from_bytes`]
//! bounds every size ([`MAX_PACKAGE_BYTES`], [`MAX_PART_BYTES`], [`MAX_INDEX_BYTES`],
//! [`MAX_PARTS`], ...) before reading it, refuses a path that could leave the directory it is
//! installed in, an entry that is not a regular file, an index that lies about a size or is not
//! in canonical form, and names the entry or part at fault.
//!
//! # Deciding
//!
//! [`verify_for_install`] is what installing calls: it checks the signature and every part,
//! and looks the publisher up among the operators' [`TrustedKeys`] (kept in a JetStream
//! key-value bucket by [`TrustStore`]). Its [`Verdict`] is `Trusted`, `Unsigned`,
//! `UntrustedKey`, `Tampered` or `BadSignature`; an unsigned package, or one signed by a key
//! the operators do not trust, is refused unless an [`Allowances`] entry allows it for that
//! plugin id; a tampered one or a bad signature never passes.
//!
//! [`PackageStore`] keeps published packages in a JetStream object store, one object per
//! plugin version (`{id}/{version}`), and lists them as a catalog.
//!
//! [`unpack`] writes a verified package's manifest and worker into a directory, for a host to
//! run: it verifies first, checks each part's digest again as it writes it, keeps every path
//! inside the directory, and makes the worker executable.
//!
//! The format, the commands and the limits are described for operators in
//! `docs/lifecycle.md`, "Packages and trust".

mod archive;
mod build;
mod error;
mod index;
mod key;
mod store;
#[cfg(test)]
mod tests;
mod trust;
mod unpack;
mod verify;

pub use self::archive::{Package, PackageHead, Part};
pub use self::build::{build_from_dir, build_from_dir_with_manifest, PackageSource, SOURCE_FILE};
pub use self::error::{PackageError, Tampering};
pub use self::index::{check_part_path, PackageIndex, PartEntry, Worker};
pub use self::key::{PackageSignature, PublisherKey, PublisherKeyPair, SIGNING_CONTEXT};
pub use self::store::{
    bucket_name as store_bucket_name, object_name, signer_of, CatalogEntry, CatalogQuery,
    PackageStore, PackageStoreOptions, Published, SignatureState, StoreError,
};
pub use self::trust::{
    bucket_name as trust_bucket_name, TrustEntry, TrustError, TrustStore, MAX_TRUST_NAME_BYTES,
};
pub use self::unpack::{host_target, unpack, UnpackError, Unpacked};
pub use self::verify::{
    verify_for_install, Allow, Allowances, InstallRefusal, Installable, TrustedKeys,
    TrustedPublisher, Verdict,
};

/// The package format this code reads and writes (`format` in the index).
pub const FORMAT: u32 = 1;

/// The archive entry holding the index.
pub const INDEX_ENTRY: &str = ".package/index.json";

/// The archive entry holding the signature, when the package is signed.
pub const SIGNATURE_ENTRY: &str = ".package/signature.json";

/// The first part of every package: the plugin's manifest.
pub const MANIFEST_PART: &str = "plugin.toml";

/// The largest package file, in bytes (256 MiB).
pub const MAX_PACKAGE_BYTES: u64 = 256 * 1024 * 1024;

/// The largest part, in bytes (128 MiB).
pub const MAX_PART_BYTES: u64 = 128 * 1024 * 1024;

/// The most parts a package may hold, the manifest included.
pub const MAX_PARTS: usize = 1024;

/// The largest index, in bytes (512 KiB): room for [`MAX_PARTS`] parts with long paths.
pub const MAX_INDEX_BYTES: u64 = 512 * 1024;

/// The largest signature entry, in bytes.
pub const MAX_SIGNATURE_BYTES: u64 = 1024;

/// The longest part path, in bytes.
pub const MAX_PATH_BYTES: usize = 255;

/// The longest component of a part path, in bytes (a ustar header's name field).
pub const MAX_PATH_COMPONENT_BYTES: usize = 100;

/// The most components a part path may have.
pub const MAX_PATH_DEPTH: usize = 16;

/// The most target triples a package may hold a binary for.
pub const MAX_TARGETS: usize = 32;

/// The most words of a worker's command line.
pub const MAX_COMMAND_ARGS: usize = 64;

/// The longest word of a worker's command line, in bytes.
pub const MAX_COMMAND_ARG_BYTES: usize = 1024;

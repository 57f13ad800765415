//! Reading and writing the package file: a ustar archive of the index, the signature and the
//! parts, in that order.
//!
//! The reader walks the archive's 512-byte blocks itself over bytes already in memory (so it
//! never reads or allocates beyond the input, whose size is bounded first), and lets the
//! [`tar`] crate decode each header (fields, octal and base-256 numbers, the ustar prefix).
//! Every header's checksum is checked, every entry must be a regular ustar file, and the bytes
//! after the last entry must be the end-of-archive zeros.

use std::io::Read as _;
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use switchyard_schemas::Manifest;

use super::error::{PackageError, Tampering};
use super::index::PackageIndex;
use super::key::PackageSignature;
use super::{INDEX_ENTRY, MANIFEST_PART, MAX_PACKAGE_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_ENTRY};

const BLOCK: usize = 512;

/// A package read from its bytes: its container, index and signature entry are well formed,
/// every part is where the index says with the size it says, and every path is safe. The
/// parts' digests and the signature are checked by [`Package::verdict`] and
/// [`verify_for_install`](super::verify_for_install), not here.
#[derive(Debug, Clone)]
pub struct Package {
    bytes: Bytes,
    index: PackageIndex,
    index_bytes: Bytes,
    signature: Option<PackageSignature>,
    parts: Vec<Range<usize>>,
}

/// One part of a package and its bytes.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// What the index says of it.
    pub entry: &'a super::PartEntry,
    /// Its bytes (shared with the package's, not copied).
    pub data: Bytes,
}

impl Part<'_> {
    /// Whether its bytes match the index.
    ///
    /// # Errors
    /// The [`Tampering`] naming the part and both digests.
    pub fn check(&self) -> Result<(), Tampering> {
        let actual = sha256_hex(&self.data);
        if actual == self.entry.sha256 {
            Ok(())
        } else {
            Err(Tampering {
                part: self.entry.path.clone(),
                expected_sha256: self.entry.sha256.clone(),
                actual_sha256: actual,
            })
        }
    }
}

/// The SHA-256 of `data` in lower-case hex.
pub(super) fn sha256_hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(data))
}

/// What the start of a package says: its index, signature and manifest, read without the
/// rest (see [`PackageHead::parse`]). The manifest's digest is checked against the index.
#[derive(Debug, Clone)]
pub struct PackageHead {
    /// The index.
    pub index: PackageIndex,
    /// The index's canonical bytes, as signed.
    pub index_bytes: Bytes,
    /// The signature entry, when there is one (not verified).
    pub signature: Option<PackageSignature>,
    /// The manifest, validated.
    pub manifest: Manifest,
}

impl Package {
    /// Reads a package from its bytes. Nothing is trusted: see the module's documentation.
    ///
    /// # Errors
    /// A [`PackageError`] naming the first problem: a size beyond a limit, a container that
    /// is not a package's, an entry out of place or of another type, a bad index or signature
    /// entry, a part whose size is not the index's, an unsafe path.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self, PackageError> {
        let bytes = bytes.into();
        let size = bytes.len() as u64;
        if size > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                "the package",
                size,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            ));
        }
        let mut walk = Walk::new(&bytes, true);
        let (index, index_bytes, signature) = read_head_entries(&mut walk)?;
        let mut parts = Vec::with_capacity(index.parts.len());
        for part in &index.parts {
            let entry = walk.next_entry()?.ok_or_else(|| {
                PackageError::index(format!(
                    "it lists part {:?}, which the package does not hold",
                    part.path
                ))
            })?;
            entry.expect_path(&part.path)?;
            if entry.size != part.size {
                return Err(PackageError::SizeMismatch {
                    part: part.path.clone(),
                    index_size: part.size,
                    actual_size: entry.size,
                });
            }
            parts.push(entry.data.clone());
        }
        if let Some(extra) = walk.next_entry()? {
            return Err(PackageError::Entry {
                position: extra.position,
                path: extra.path,
                reason: "the index does not list it".into(),
            });
        }
        walk.finish()?;
        Ok(Self {
            index_bytes: bytes.slice(index_bytes),
            bytes,
            index,
            signature,
            parts,
        })
    }

    /// Reads the package file at `path`, refusing one larger than [`MAX_PACKAGE_BYTES`]
    /// before reading it.
    ///
    /// # Errors
    /// [`PackageError::Io`] when it cannot be read; any error of [`Package::from_bytes`].
    pub fn read_file(path: &Path) -> Result<Self, PackageError> {
        let io = |source| PackageError::Io {
            action: "read the package",
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                format!("the package {}", path.display()),
                size,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Bounded again while reading: the file may grow in between.
        file.take(MAX_PACKAGE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_bytes(bytes)
    }

    /// Builds a package from an index and the bytes of each of its parts, in the index's
    /// order, signed or not.
    ///
    /// # Errors
    /// Any rule of [`PackageIndex::check`]; a part whose size or digest is not the index's;
    /// a path the archive cannot hold.
    pub fn assemble(
        index: &PackageIndex,
        signature: Option<&PackageSignature>,
        parts: &[&[u8]],
    ) -> Result<Self, PackageError> {
        index.check()?;
        if parts.len() != index.parts.len() {
            return Err(PackageError::index(format!(
                "it lists {} parts; {} were given",
                index.parts.len(),
                parts.len()
            )));
        }
        for (entry, data) in index.parts.iter().zip(parts) {
            let part = Part {
                entry,
                data: Bytes::copy_from_slice(data),
            };
            if data.len() as u64 != entry.size {
                return Err(PackageError::SizeMismatch {
                    part: entry.path.clone(),
                    index_size: entry.size,
                    actual_size: data.len() as u64,
                });
            }
            part.check()?;
        }
        let bytes = write_archive(&index.to_canonical_json(), signature, &index.parts, parts)?;
        Self::from_bytes(bytes)
    }

    /// This package signed by `publisher`, replacing any signature it had.
    pub fn signed(&self, publisher: &super::PublisherKeyPair) -> Result<Self, PackageError> {
        let signature = publisher.sign_index(&self.index_bytes);
        self.with_signature(Some(&signature))
    }

    /// This package with `signature` as its signature entry (or none), the rest unchanged.
    /// The signature is not checked here.
    ///
    /// # Errors
    /// [`PackageError`] when the archive cannot be written (not expected for a package that
    /// was read).
    pub fn with_signature(
        &self,
        signature: Option<&PackageSignature>,
    ) -> Result<Self, PackageError> {
        let parts: Vec<&[u8]> = self.parts.iter().map(|r| &self.bytes[r.clone()]).collect();
        let bytes = write_archive(&self.index_bytes, signature, &self.index.parts, &parts)?;
        Self::from_bytes(bytes)
    }

    /// The whole package file.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The SHA-256 of the whole package file, in lower-case hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }

    /// The index.
    pub fn index(&self) -> &PackageIndex {
        &self.index
    }

    /// The index's canonical bytes: what a signature signs.
    pub fn index_bytes(&self) -> &Bytes {
        &self.index_bytes
    }

    /// The signature entry, when the package is signed (not verified).
    pub fn signature(&self) -> Option<&PackageSignature> {
        self.signature.as_ref()
    }

    /// Every part with its bytes, in the index's order.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> + '_ {
        self.index
            .parts
            .iter()
            .zip(&self.parts)
            .map(|(entry, range)| Part {
                entry,
                data: self.bytes.slice(range.clone()),
            })
    }

    /// The part at `path`.
    pub fn part(&self, path: &str) -> Option<Part<'_>> {
        self.parts().find(|part| part.entry.path == path)
    }

    /// Checks every part's digest against the index, in order.
    ///
    /// # Errors
    /// The first part that does not match, with both digests.
    pub fn check_parts(&self) -> Result<(), Tampering> {
        self.parts().try_for_each(|part| part.check())
    }

    /// The manifest, read after its digest is checked against the index.
    ///
    /// # Errors
    /// [`PackageError::Tampered`] when `plugin.toml` does not match the index;
    /// [`PackageError::Manifest`] when it is not a valid manifest.
    pub fn manifest(&self) -> Result<Manifest, PackageError> {
        let part = self
            .part(MANIFEST_PART)
            .ok_or_else(|| PackageError::index("it lists no manifest"))?;
        part.check()?;
        parse_manifest(&part.data)
    }
}

impl PackageHead {
    /// Reads the start of a package (the index, the signature entry and the manifest) from
    /// `prefix`, the first bytes of a package of `total` bytes. `Ok(None)`: more bytes are
    /// needed. Used to list a store's packages without reading their workers.
    ///
    /// # Errors
    /// As [`Package::from_bytes`] for what the prefix holds, and
    /// [`PackageError::Tampered`] when the manifest does not match the index.
    pub fn parse(prefix: &[u8], total: u64) -> Result<Option<Self>, PackageError> {
        if total > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                "the package",
                total,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            ));
        }
        let complete = prefix.len() as u64 >= total;
        let mut walk = Walk::new(prefix, complete);
        let head = match read_head_entries(&mut walk) {
            Ok(head) => head,
            Err(_) if walk.short => return Ok(None),
            Err(err) => return Err(err),
        };
        let (index, index_range, signature) = head;
        let Some(first) = index.parts.first() else {
            return Err(PackageError::index("it lists no part"));
        };
        let entry = match walk.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                return Err(PackageError::index(format!(
                    "it lists part {MANIFEST_PART:?}, which the package does not hold"
                )))
            }
            Err(_) if walk.short => return Ok(None),
            Err(err) => return Err(err),
        };
        entry.expect_path(&first.path)?;
        if entry.size != first.size {
            return Err(PackageError::SizeMismatch {
                part: first.path.clone(),
                index_size: first.size,
                actual_size: entry.size,
            });
        }
        let data = &prefix[entry.data];
        let part = Part {
            entry: first,
            data: Bytes::copy_from_slice(data),
        };
        part.check()?;
        let manifest = parse_manifest(data)?;
        Ok(Some(Self {
            index_bytes: Bytes::copy_from_slice(&prefix[index_range]),
            index,
            signature,
            manifest,
        }))
    }
}

fn parse_manifest(data: &[u8]) -> Result<Manifest, PackageError> {
    let text = std::str::from_utf8(data).map_err(|_| PackageError::ManifestNotText)?;
    Manifest::from_toml_str(text).map_err(PackageError::Manifest)
}

type Head = (PackageIndex, Range<usize>, Option<PackageSignature>);

/// The index entry, then the signature entry if there is one.
fn read_head_entries(walk: &mut Walk<'_>) -> Result<Head, PackageError> {
    let first = walk
        .next_entry()?
        .ok_or_else(|| PackageError::container("it holds no entry (an empty archive)"))?;
    first.expect_path(INDEX_ENTRY)?;
    let index = PackageIndex::decode(walk.data(&first))?;
    let index_range = first.data.clone();
    let signature = if walk.peek_path().as_deref() == Some(SIGNATURE_ENTRY) {
        let entry = walk.next_entry()?.ok_or_else(|| {
            PackageError::container("the signature entry vanished (not expected)")
        })?;
        if entry.size > MAX_SIGNATURE_BYTES {
            return Err(PackageError::too_large(
                "the signature entry",
                entry.size,
                MAX_SIGNATURE_BYTES,
                "MAX_SIGNATURE_BYTES",
            ));
        }
        let signature: PackageSignature =
            serde_json::from_slice(walk.data(&entry)).map_err(|e| {
                PackageError::SignatureEntry {
                    reason: format!("not a signature ({e})"),
                }
            })?;
        Some(signature)
    } else {
        None
    };
    Ok((index, index_range, signature))
}

/// One entry of the archive.
#[derive(Debug)]
struct Entry {
    /// From 1.
    position: usize,
    path: String,
    size: u64,
    data: Range<usize>,
}

impl Entry {
    fn expect_path(&self, expected: &str) -> Result<(), PackageError> {
        if self.path == expected {
            Ok(())
        } else {
            Err(PackageError::Entry {
                position: self.position,
                path: self.path.clone(),
                reason: format!("expected {expected:?} here (the index's order)"),
            })
        }
    }
}

/// A walk over an archive's blocks.
struct Walk<'a> {
    bytes: &'a [u8],
    /// Whether `bytes` is the whole archive; if not, running out of bytes sets `short`.
    complete: bool,
    short: bool,
    pos: usize,
    entries: usize,
}

impl<'a> Walk<'a> {
    fn new(bytes: &'a [u8], complete: bool) -> Self {
        Self {
            bytes,
            complete,
            short: false,
            pos: 0,
            entries: 0,
        }
    }

    fn data(&self, entry: &Entry) -> &'a [u8] {
        &self.bytes[entry.data.clone()]
    }

    fn truncated(&mut self, what: String) -> PackageError {
        if !self.complete {
            self.short = true;
        }
        PackageError::container(format!("truncated: {what}"))
    }

    /// The path of the next entry, if there is one that can be read.
    fn peek_path(&mut self) -> Option<String> {
        let (pos, entries, short) = (self.pos, self.entries, self.short);
        let path = self.next_entry().ok().flatten().map(|entry| entry.path);
        (self.pos, self.entries, self.short) = (pos, entries, short);
        path
    }

    /// The next entry, or `None` at the end-of-archive block.
    fn next_entry(&mut self) -> Result<Option<Entry>, PackageError> {
        let position = self.entries + 1;
        let Some(block) = self.bytes.get(self.pos..self.pos + BLOCK) else {
            return Err(self.truncated(format!(
                "no end-of-archive block after entry {}",
                self.entries
            )));
        };
        if block.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(block);
        let path_bytes = header.path_bytes();
        let path = String::from_utf8_lossy(&path_bytes).into_owned();
        let bad = |reason: String| PackageError::Entry {
            position,
            path: path.clone(),
            reason,
        };
        let stored = header
            .cksum()
            .map_err(|_| bad("its header's checksum field is not a number".into()))?;
        let computed = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|b| u32::from(*b))
            .sum::<u32>()
            + 8 * u32::from(b' ');
        if stored != computed {
            return Err(bad(format!(
                "its header's checksum is {stored}, the header sums to {computed}"
            )));
        }
        if header.as_ustar().is_none() {
            return Err(bad(
                "not a ustar header (GNU and old tar headers are refused)".into(),
            ));
        }
        let kind = header.entry_type();
        if kind != tar::EntryType::Regular {
            return Err(bad(format!(
                "a {kind:?} entry; a package holds regular files only (no links, directories, \
                 devices, long-name or PAX extension entries)"
            )));
        }
        if std::str::from_utf8(&path_bytes).is_err() {
            return Err(bad("its path is not UTF-8".into()));
        }
        if path != INDEX_ENTRY && path != SIGNATURE_ENTRY {
            super::check_part_path(&path)?;
        }
        let size = header
            .entry_size()
            .map_err(|_| bad("its size field is not a number".into()))?;
        let start = self.pos + BLOCK;
        let available = (self.bytes.len() - start) as u64;
        if size > available {
            return Err(self.truncated(format!(
                "entry {position} ({path:?}) says {size} bytes; {available} follow its header"
            )));
        }
        // `size` fits in what follows, so in a usize.
        let end = start + size as usize;
        let padded = end.div_ceil(BLOCK) * BLOCK;
        self.pos = padded.min(self.bytes.len());
        self.entries = position;
        Ok(Some(Entry {
            position,
            path,
            size,
            data: start..end,
        }))
    }

    /// After the last entry: only the end-of-archive zeros may follow (at least two blocks).
    fn finish(&self) -> Result<(), PackageError> {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        if rest.len() < 2 * BLOCK {
            return Err(PackageError::container(
                "the end-of-archive blocks are missing (truncated)",
            ));
        }
        if let Some(offset) = rest.iter().position(|b| *b != 0) {
            return Err(PackageError::container(format!(
                "{} bytes of data after the end of the archive (from byte {})",
                rest.len() - offset,
                self.pos + offset
            )));
        }
        Ok(())
    }
}

/// Writes the archive: the index, the signature if any, then each part under its path.
/// Headers are ustar, with mode 0644, owner 0, time 0 and no user names: the same package
/// gives the same bytes.
fn write_archive(
    index: &[u8],
    signature: Option<&PackageSignature>,
    entries: &[super::PartEntry],
    parts: &[&[u8]],
) -> Result<Bytes, PackageError> {
    let capacity = parts.iter().map(|p| p.len() + 2 * BLOCK).sum::<usize>() + 4 * BLOCK;
    let mut builder = tar::Builder::new(Vec::with_capacity(capacity));
    let mut append = |path: &str, data: &[u8]| -> Result<(), PackageError> {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).map_err(|e| {
            PackageError::bad_path(path, format!("a ustar header cannot hold it: {e}"))
        })?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, data)
            .map_err(|e| PackageError::container(format!("cannot write {path:?}: {e}")))
    };
    append(INDEX_ENTRY, index)?;
    if let Some(signature) = signature {
        let json = serde_json::to_vec(signature).map_err(|e| PackageError::SignatureEntry {
            reason: e.to_string(),
        })?;
        append(SIGNATURE_ENTRY, &json)?;
    }
    for (entry, data) in entries.iter().zip(parts) {
        append(&entry.path, data)?;
    }
    let bytes = builder
        .into_inner()
        .map_err(|e| PackageError::container(format!("cannot finish the archive: {e}")))?;
    Ok(Bytes::from(bytes))
}

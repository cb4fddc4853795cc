//! Snapshot files: one state machine snapshot per file in `<data-dir>/snapshots/`.
//!
//! On disk: `snap-{last_index:020}.snap` = a 40-byte header (`KVSNAP\0` + format version, last
//! index u64 LE, last term u64 LE, payload length u64 LE, CRC32C u32 LE over the header's first
//! 32 bytes and the payload, 4 reserved zero bytes) followed by the postcard encoding of the
//! core's [`Snapshot`].
//!
//! Saving is crash-safe: write `snapshot.tmp`, fsync it, rename it to its final name, fsync the
//! directory, and only then delete older snapshot files. A crash at any point leaves either the
//! previous snapshot or the new one as the newest complete file, plus at most a stray `.tmp`
//! that the next start removes.
//!
//! Loading takes the newest file and refuses it (naming it) when it is truncated, fails its
//! checksum or does not decode. It never falls back to an older file: once the WAL prefix the
//! newest snapshot covers has been deleted, an older snapshot plus the WAL would have a hole;
//! and even while the WAL still holds it, a silently ignored damaged file is a disk problem the
//! operator must see. The WAL replay independently refuses a log that starts after the
//! snapshot, so a deleted newest snapshot is caught too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyval_core::{Index, Snapshot};

use crate::wal::io::{self as vfs, Vfs};

const MAGIC: [u8; 7] = *b"KVSNAP\0";
/// 2: the snapshot carries the whole membership (learners, joint state). 3: the membership
/// also says which learners are promoted once caught up. Version 1 files (a plain voter list)
/// and version 2 files (no promotion intent) are still read.
const FORMAT_VERSION: u8 = 3;
const FORMAT_VERSION_NO_PROMOTE: u8 = 2;
const FORMAT_VERSION_VOTERS_ONLY: u8 = 1;
pub const HEADER_BYTES: usize = 40;
const TMP_NAME: &str = "snapshot.tmp";
const PREFIX: &str = "snap-";
const EXTENSION: &str = ".snap";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot I/O error: failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The newest snapshot file is damaged: the node must not start on it.
    #[error("corrupt snapshot file {}: {reason}", file.display())]
    Corrupt { file: PathBuf, reason: String },
    #[error("failed to encode a snapshot: {0}")]
    Encode(#[from] postcard::Error),
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> SnapshotFileError {
    SnapshotFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub fn file_name(last_index: Index) -> String {
    format!("{PREFIX}{last_index:020}{EXTENSION}")
}

fn parse_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(EXTENSION)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..32]), payload)
}

/// Encodes a snapshot file image (header + payload).
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, SnapshotFileError> {
    let payload = postcard::to_allocvec(snapshot)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&snapshot.meta.last_index.to_le_bytes());
    out.extend_from_slice(&snapshot.meta.last_term.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = checksum(&out, &payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes and verifies a file image; `file` and `name_index` only label errors and cross-check.
pub fn decode(file: &Path, bytes: &[u8], name_index: Index) -> Result<Snapshot, SnapshotFileError> {
    let bad = |reason: String| SnapshotFileError::Corrupt {
        file: file.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_BYTES {
        return Err(bad(format!(
            "truncated: {} bytes, shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    if bytes[..7] != MAGIC {
        return Err(bad("not a KeyVal snapshot file (bad magic)".into()));
    }
    let version = bytes[7];
    if ![
        FORMAT_VERSION,
        FORMAT_VERSION_NO_PROMOTE,
        FORMAT_VERSION_VOTERS_ONLY,
    ]
    .contains(&version)
    {
        return Err(bad(format!(
            "unsupported format version {} (this build reads versions 1 to {FORMAT_VERSION})",
            bytes[7]
        )));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let last_index = u64_at(8);
    let last_term = u64_at(16);
    let len = u64_at(24);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[32..36]);
    let crc = u32::from_le_bytes(crc);
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(bad(format!(
            "truncated or extended: the header announces {len} payload bytes, the file holds {}",
            payload.len()
        )));
    }
    if checksum(bytes, payload) != crc {
        return Err(bad("checksum mismatch".into()));
    }
    if last_index != name_index {
        return Err(bad(format!(
            "the header says index {last_index} but the file name says {name_index}"
        )));
    }
    let snapshot: Snapshot = match version {
        FORMAT_VERSION_VOTERS_ONLY => {
            postcard::from_bytes::<legacy::SnapshotV1>(payload).map(Snapshot::from)
        }
        FORMAT_VERSION_NO_PROMOTE => {
            postcard::from_bytes::<legacy::SnapshotV2>(payload).map(Snapshot::from)
        }
        _ => postcard::from_bytes(payload),
    }
    .map_err(|e| bad(format!("undecodable payload: {e}")))?;
    if snapshot.meta.last_index != last_index || snapshot.meta.last_term != last_term {
        return Err(bad(format!(
            "the header says {last_index}@{last_term} but the snapshot is {}@{}",
            snapshot.meta.last_index, snapshot.meta.last_term
        )));
    }
    Ok(snapshot)
}

/// The payloads of older files: version 1 (the membership was a voter list) and version 2 (the
/// membership without the learners to promote).
mod legacy {
    use std::collections::{BTreeMap, BTreeSet};

    use keyval_core::snapshot::SnapshotMeta;
    use keyval_core::{Index, Membership, NodeId, Snapshot};
    use serde::Deserialize;

    /// `Membership` as version 2 encoded it: every field but `promote_when_caught_up`.
    #[derive(Deserialize)]
    pub struct MembershipV2 {
        voters: BTreeSet<NodeId>,
        outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        learners_next: BTreeSet<NodeId>,
        auto_leave: bool,
        addresses: BTreeMap<NodeId, String>,
        removed: BTreeSet<NodeId>,
    }

    impl From<MembershipV2> for Membership {
        fn from(m: MembershipV2) -> Membership {
            Membership {
                voters: m.voters,
                outgoing: m.outgoing,
                learners: m.learners,
                learners_next: m.learners_next,
                auto_leave: m.auto_leave,
                addresses: m.addresses,
                removed: m.removed,
                promote_when_caught_up: BTreeSet::new(),
            }
        }
    }

    #[derive(Deserialize)]
    pub struct MetaV2 {
        last_index: Index,
        last_term: u64,
        membership: MembershipV2,
    }

    #[derive(Deserialize)]
    pub struct SnapshotV2 {
        meta: MetaV2,
        data: Vec<u8>,
    }

    impl From<SnapshotV2> for Snapshot {
        fn from(s: SnapshotV2) -> Snapshot {
            Snapshot {
                meta: SnapshotMeta {
                    last_index: s.meta.last_index,
                    last_term: s.meta.last_term,
                    membership: s.meta.membership.into(),
                },
                data: s.data,
            }
        }
    }

    #[derive(Deserialize)]
    pub struct MetaV1 {
        last_index: Index,
        last_term: u64,
        voters: Vec<NodeId>,
    }

    #[derive(Deserialize)]
    pub struct SnapshotV1 {
        meta: MetaV1,
        data: Vec<u8>,
    }

    impl From<SnapshotV1> for Snapshot {
        fn from(s: SnapshotV1) -> Snapshot {
            Snapshot {
                meta: SnapshotMeta {
                    last_index: s.meta.last_index,
                    last_term: s.meta.last_term,
                    membership: Membership::bootstrap(s.meta.voters, Default::default()),
                },
                data: s.data,
            }
        }
    }
}

/// The snapshot directory of one node.
#[derive(Debug)]
pub struct SnapshotDir {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    fsync: bool,
}

/// What [`SnapshotDir::open`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<Snapshot>,
    pub file: Option<PathBuf>,
    /// Size of the newest snapshot file in bytes.
    pub file_bytes: u64,
    /// Stray temp files and superseded snapshot files removed.
    pub removed: Vec<PathBuf>,
}

impl SnapshotDir {
    /// Opens (creating) the directory, removes leftovers of an interrupted save and older
    /// snapshot files, and loads the newest snapshot.
    pub fn open(dir: &Path, fsync: bool) -> Result<(SnapshotDir, Loaded), SnapshotFileError> {
        SnapshotDir::open_with(vfs::std_fs(), dir, fsync)
    }

    /// [`SnapshotDir::open`] on the given file system (tests pass one that simulates crashes).
    pub fn open_with(
        fs: Arc<dyn Vfs>,
        dir: &Path,
        fsync: bool,
    ) -> Result<(SnapshotDir, Loaded), SnapshotFileError> {
        vfs::create_dir_durable(fs.as_ref(), dir, fsync)
            .map_err(|e| io("create directory", dir, e))?;
        let mut loaded = Loaded::default();
        let mut snaps = Vec::new();
        for name in fs.list(dir).map_err(|e| io("list", dir, e))? {
            let p = dir.join(&name);
            if name.ends_with(".tmp") {
                fs.remove(&p).map_err(|e| io("remove", &p, e))?;
                loaded.removed.push(p);
            } else if let Some(index) = parse_name(&name) {
                snaps.push((index, p));
            } else if name.ends_with(EXTENSION) {
                // Like the WAL: a snapshot-looking file we cannot place may matter; refuse.
                return Err(SnapshotFileError::Corrupt {
                    file: p,
                    reason: "unexpected file name in the snapshot directory".into(),
                });
            }
        }
        snaps.sort();
        if let Some((index, path)) = snaps.pop() {
            let bytes = fs.read(&path).map_err(|e| io("read", &path, e))?;
            let snapshot = decode(&path, &bytes, index)?;
            loaded.file_bytes = bytes.len() as u64;
            loaded.snapshot = Some(snapshot);
            loaded.file = Some(path);
        }
        for (_, old) in snaps {
            fs.remove(&old).map_err(|e| io("remove", &old, e))?;
            loaded.removed.push(old);
        }
        if !loaded.removed.is_empty() && fsync {
            sync_dir(fs.as_ref(), dir)?;
        }
        let me = SnapshotDir {
            fs,
            dir: dir.to_path_buf(),
            fsync,
        };
        Ok((me, loaded))
    }

    /// Makes `snapshot` the durable newest snapshot and deletes the older files. Returns the
    /// file's size. A file for the same index that is already in place was written durably by
    /// [`write_durable`] off the storage thread (the node's own snapshots): it is adopted as is.
    pub fn save(&mut self, snapshot: &Snapshot) -> Result<u64, SnapshotFileError> {
        let index = snapshot.meta.last_index;
        let final_path = self.dir.join(file_name(index));
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|e| io("list", &self.dir, e))?;
        let bytes = if names.iter().any(|n| parse_name(n) == Some(index)) {
            self.fs
                .open_append(&final_path)
                .and_then(|f| f.size())
                .map_err(|e| io("open", &final_path, e))?
        } else {
            write_file(self.fs.as_ref(), &self.dir, self.fsync, snapshot, TMP_NAME)?
        };
        // The new file is durable: older ones are superseded.
        let mut removed = false;
        for name in names {
            if let Some(older) = parse_name(&name)
                && older < index
            {
                let p = self.dir.join(&name);
                self.fs.remove(&p).map_err(|e| io("remove", &p, e))?;
                removed = true;
            }
        }
        if removed && self.fsync {
            sync_dir(self.fs.as_ref(), &self.dir)?;
        }
        Ok(bytes)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes `snapshot` durably under its final name in `dir` (temporary file, fsync, rename,
/// directory fsync) and returns the file's size. Older files stay: deleting them is
/// [`SnapshotDir::save`]'s, in the storage thread's order, after which the log is compacted.
///
/// Why off the storage thread: the WAL's appends queue behind whatever that thread does, and
/// writing a 100 MB snapshot there held every acknowledgement for longer than an election
/// timeout. A snapshot of applied (committed) state may become durable at any moment: recovery
/// takes the newest file and replays the WAL after it.
pub fn write_durable(
    dir: &Path,
    fsync: bool,
    snapshot: &Snapshot,
) -> Result<u64, SnapshotFileError> {
    // Its own temporary name: an installed snapshot may be saved by the storage thread meanwhile.
    let tmp = format!("{PREFIX}{:020}.local.tmp", snapshot.meta.last_index);
    write_file(vfs::std_fs().as_ref(), dir, fsync, snapshot, &tmp)
}

fn write_file(
    fs: &dyn Vfs,
    dir: &Path,
    fsync: bool,
    snapshot: &Snapshot,
    tmp_name: &str,
) -> Result<u64, SnapshotFileError> {
    let image = encode(snapshot)?;
    let tmp = dir.join(tmp_name);
    let final_path = dir.join(file_name(snapshot.meta.last_index));
    {
        let mut f = fs
            .create_truncate(&tmp)
            .map_err(|e| io("create", &tmp, e))?;
        f.write_all(&image).map_err(|e| io("write", &tmp, e))?;
        if fsync {
            f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
        }
    }
    fs.rename(&tmp, &final_path)
        .map_err(|e| io("rename", &tmp, e))?;
    if fsync {
        sync_dir(fs, dir)?;
    }
    Ok(image.len() as u64)
}

fn sync_dir(fs: &dyn Vfs, dir: &Path) -> Result<(), SnapshotFileError> {
    fs.sync_dir(dir).map_err(|e| io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct MetaV1 {
        last_index: u64,
        last_term: u64,
        voters: Vec<u64>,
    }

    #[derive(serde::Serialize)]
    struct SnapshotV1 {
        meta: MetaV1,
        data: Vec<u8>,
    }

    /// `Membership` as the version 2 build encoded it.
    #[derive(serde::Serialize)]
    struct MembershipV2 {
        voters: std::collections::BTreeSet<u64>,
        outgoing: std::collections::BTreeSet<u64>,
        learners: std::collections::BTreeSet<u64>,
        learners_next: std::collections::BTreeSet<u64>,
        auto_leave: bool,
        addresses: std::collections::BTreeMap<u64, String>,
        removed: std::collections::BTreeSet<u64>,
    }

    #[derive(serde::Serialize)]
    struct MetaV2 {
        last_index: u64,
        last_term: u64,
        membership: MembershipV2,
    }

    #[derive(serde::Serialize)]
    struct SnapshotV2 {
        meta: MetaV2,
        data: Vec<u8>,
    }

    fn file_image(version: u8, index: u64, term: u64, payload: &[u8]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.push(version);
        file.extend(index.to_le_bytes());
        file.extend(term.to_le_bytes());
        file.extend((payload.len() as u64).to_le_bytes());
        let crc = checksum(&file, payload);
        file.extend(crc.to_le_bytes());
        file.extend([0; 4]);
        file.extend(payload);
        file
    }

    /// A file written before the membership said which learners to promote still reads, with
    /// no learner to promote; a current file keeps them.
    #[test]
    fn a_version_2_file_reads_with_no_learner_to_promote() {
        let v2 = SnapshotV2 {
            meta: MetaV2 {
                last_index: 8,
                last_term: 3,
                membership: MembershipV2 {
                    voters: [1, 2, 3].into(),
                    outgoing: Default::default(),
                    learners: [4].into(),
                    learners_next: Default::default(),
                    auto_leave: false,
                    addresses: [(4, "h4:7004".to_string())].into(),
                    removed: [5].into(),
                },
            },
            data: b"state".to_vec(),
        };
        let payload = postcard::to_allocvec(&v2).unwrap();
        let file = file_image(FORMAT_VERSION_NO_PROMOTE, 8, 3, &payload);
        let s = decode(Path::new("snap-8.snap"), &file, 8).unwrap();
        let m = &s.meta.membership;
        assert_eq!(m.to_string(), "voters=[n1,n2,n3] learners=[n4]");
        assert_eq!(m.addresses.get(&4).map(String::as_str), Some("h4:7004"));
        assert_eq!(m.removed, std::collections::BTreeSet::from([5]));
        assert!(m.promote_when_caught_up.is_empty());
        assert_eq!(s.data, b"state");

        let mut current = s.clone();
        current.meta.membership.promote_when_caught_up.insert(4);
        let image = encode(&current).unwrap();
        assert_eq!(image[7], FORMAT_VERSION);
        let again = decode(Path::new("snap-8.snap"), &image, 8).unwrap();
        assert_eq!(
            again.meta.membership.promote_when_caught_up,
            std::collections::BTreeSet::from([4])
        );
        // The old layout cannot be mistaken for the new one: version 2 bytes under a version 3
        // header do not decode (postcard is not self-describing).
        let mislabelled = file_image(FORMAT_VERSION, 8, 3, &payload);
        assert!(decode(Path::new("snap-8.snap"), &mislabelled, 8).is_err());
    }

    /// A file written before snapshots carried the whole membership still reads.
    #[test]
    fn a_version_1_file_reads_with_its_voters_as_the_membership() {
        let v1 = SnapshotV1 {
            meta: MetaV1 {
                last_index: 5,
                last_term: 2,
                voters: vec![1, 2, 3],
            },
            data: b"abc".to_vec(),
        };
        let payload = postcard::to_allocvec(&v1).unwrap();
        let mut file = MAGIC.to_vec();
        file.push(FORMAT_VERSION_VOTERS_ONLY);
        file.extend(5u64.to_le_bytes());
        file.extend(2u64.to_le_bytes());
        file.extend((payload.len() as u64).to_le_bytes());
        let crc = checksum(&file, &payload);
        file.extend(crc.to_le_bytes());
        file.extend([0; 4]);
        file.extend(&payload);
        let s = decode(Path::new("snap-5.snap"), &file, 5).unwrap();
        assert_eq!(
            s.meta.membership,
            keyval_core::Membership::bootstrap([1, 2, 3], Default::default())
        );
        assert_eq!(s.data, b"abc");
        // And the current format round-trips.
        let again = decode(Path::new("snap-5.snap"), &encode(&s).unwrap(), 5).unwrap();
        assert_eq!(again, s);
    }
}

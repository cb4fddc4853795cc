//! Segment files: naming, the 16-byte header, and validating a segment's
//! byte image during recovery.
//!
//! Segments are read whole into memory for recovery because every record is
//! handed back to the caller anyway, and a byte slice makes bounds-checked,
//! panic-free parsing straightforward.

use std::path::{Path, PathBuf};

use super::WalError;
use super::io::{Vfs, VfsFile};
use super::record::{self, Decoded, MAX_RECORD_BYTES, RECORD_HEADER_BYTES};

/// Magic prefix identifying a KeyVal WAL segment; the eighth byte is the
/// format version so a future format can be refused with a clear message
/// instead of being misparsed.
const MAGIC_PREFIX: [u8; 7] = *b"KVWAL\0\0";
const FORMAT_VERSION: u8 = 1;
pub(super) const HEADER_BYTES: usize = 16;
const EXTENSION: &str = ".wal";
const NAME_DIGITS: usize = 20;

pub(super) fn file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{EXTENSION}")
}

pub(super) fn encode_header(first_lsn: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..7].copy_from_slice(&MAGIC_PREFIX);
    h[7] = FORMAT_VERSION;
    h[8..].copy_from_slice(&first_lsn.to_le_bytes());
    h
}

/// Writes a header into a freshly created or emptied segment file.
pub(super) fn write_header(
    file: &mut dyn VfsFile,
    path: &Path,
    first_lsn: u64,
) -> Result<(), WalError> {
    file.write_all(&encode_header(first_lsn))
        .map_err(|e| WalError::io("write header of", path, e))
}

/// Creates a new segment and makes both its contents and its directory
/// entry durable, so that after a crash recovery never finds records in a
/// later segment while the file that should hold them is missing.
pub(super) fn create(
    fs: &dyn Vfs,
    dir: &Path,
    first_lsn: u64,
    fsync: bool,
) -> Result<(Box<dyn VfsFile>, PathBuf), WalError> {
    let path = dir.join(file_name(first_lsn));
    let mut file = fs
        .create_new(&path)
        .map_err(|e| WalError::io("create", &path, e))?;
    write_header(file.as_mut(), &path, first_lsn)?;
    if fsync {
        file.sync_all()
            .map_err(|e| WalError::io("fsync", &path, e))?;
        sync_dir(fs, dir)?;
    }
    Ok((file, path))
}

/// Makes renames, creations and deletions inside `dir` durable; on Linux a
/// file's own fsync does not cover its directory entry.
pub(super) fn sync_dir(fs: &dyn Vfs, dir: &Path) -> Result<(), WalError> {
    fs.sync_dir(dir)
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

/// Returns the segments in `dir` ordered by first LSN.
///
/// Anything named `*.wal` that is not a well-formed segment name is treated
/// as corruption rather than skipped: a renamed or hand-copied segment could
/// hold committed entries, and ignoring it would drop them silently.
pub(super) fn list(fs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let entries = fs.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut segments = Vec::new();
    for name in entries {
        let Some(stem) = name.strip_suffix(EXTENSION) else {
            continue;
        };
        let path = dir.join(&name);
        let lsn = (stem.len() == NAME_DIGITS && stem.bytes().all(|b| b.is_ascii_digit()))
            .then(|| stem.parse::<u64>().ok())
            .flatten()
            .filter(|&lsn| lsn > 0);
        match lsn {
            Some(lsn) => segments.push((lsn, path)),
            None => {
                return Err(WalError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: format!(
                        "unexpected file name; segments are named by their first LSN (>= 1) as {NAME_DIGITS} digits plus {EXTENSION}"
                    ),
                });
            }
        }
    }
    segments.sort_unstable_by_key(|&(lsn, _)| lsn);
    Ok(segments)
}

/// How a segment's byte image ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tail {
    /// Every byte belongs to a verified record.
    Clean,
    /// The header itself is incomplete (the crash hit while rolling).
    TornHeader,
    /// The record starting at `offset` is a torn write.
    TornRecord { offset: usize },
}

#[derive(Debug)]
pub(super) struct Scan<'a> {
    pub records: Vec<&'a [u8]>,
    pub tail: Tail,
}

/// Validates one segment and extracts its records.
///
/// Only the last segment may end in a torn write: every earlier segment was
/// fsynced before its successor was created, so damage there is corruption.
/// Within the last segment a bad record counts as torn only when the damage
/// could be the unsynced tail of the final write (see the branches below);
/// anything else stops recovery, because guessing wrong would drop
/// committed entries.
pub(super) fn scan<'a>(
    path: &Path,
    bytes: &'a [u8],
    name_lsn: u64,
    is_last: bool,
) -> Result<Scan<'a>, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let torn_header = Scan {
        records: Vec::new(),
        tail: Tail::TornHeader,
    };

    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
        if is_last {
            return Ok(torn_header);
        }
        return Err(corrupt(
            0,
            format!(
                "segment is {} bytes, shorter than its {HEADER_BYTES}-byte header",
                bytes.len()
            ),
        ));
    };
    // Some filesystems expose a zero-filled extent after a crash when the
    // size update reached disk but the data did not.
    if is_last && all_zero(bytes) {
        return Ok(torn_header);
    }
    check_header(header, name_lsn).map_err(|reason| corrupt(0, reason))?;

    let mut records = Vec::new();
    let mut off = HEADER_BYTES;
    while off < bytes.len() {
        match record::decode_at(bytes, off) {
            Decoded::Record { payload, next } => {
                records.push(payload);
                off = next;
            }
            Decoded::PartialHeader => {
                if !is_last {
                    return Err(corrupt(off, "truncated record header".into()));
                }
                return Ok(torn_at(records, off));
            }
            // Zeroing or truncating a little-endian length can only shrink
            // it, so a torn write never produces an oversized one.
            Decoded::TooLarge { len } => {
                return Err(corrupt(
                    off,
                    format!("record length {len} exceeds the {MAX_RECORD_BYTES}-byte maximum"),
                ));
            }
            Decoded::PastEnd { len } => {
                if !is_last {
                    return Err(corrupt(
                        off,
                        format!("record length {len} runs past the end of the segment"),
                    ));
                }
                if let Some(p) =
                    record::intact_record_ending_at_eof(bytes, off + RECORD_HEADER_BYTES)
                {
                    return Err(corrupt(
                        off,
                        format!(
                            "record length {len} runs past the end of the segment, yet an intact record at offset {p} ends it, so the length field is damaged"
                        ),
                    ));
                }
                return Ok(torn_at(records, off));
            }
            Decoded::BadChecksum { next } => {
                // A failed final record is indistinguishable from a torn
                // write of it, and an all-zero remainder is an unwritten
                // extent; neither can hide a later, committed record.
                let is_tail = next == bytes.len() || bytes.get(off..).is_some_and(all_zero);
                if !is_last || !is_tail {
                    return Err(corrupt(off, "checksum mismatch".into()));
                }
                return Ok(torn_at(records, off));
            }
        }
    }
    Ok(Scan {
        records,
        tail: Tail::Clean,
    })
}

fn check_header(header: &[u8; HEADER_BYTES], name_lsn: u64) -> Result<(), String> {
    let Some((magic, lsn_le)) = header.split_first_chunk::<8>() else {
        return Err("truncated header".into());
    };
    if magic[..7] != MAGIC_PREFIX {
        return Err(format!("bad magic {magic:02x?}, not a KeyVal WAL segment"));
    }
    if magic[7] != FORMAT_VERSION {
        return Err(format!(
            "unsupported WAL format version {} (this build reads version {FORMAT_VERSION})",
            magic[7]
        ));
    }
    let Some(lsn_le) = lsn_le.first_chunk::<8>() else {
        return Err("truncated header".into());
    };
    let header_lsn = u64::from_le_bytes(*lsn_le);
    if header_lsn != name_lsn {
        return Err(format!(
            "header says first LSN {header_lsn} but the file name says {name_lsn}"
        ));
    }
    Ok(())
}

fn torn_at(records: Vec<&[u8]>, offset: usize) -> Scan<'_> {
    Scan {
        records,
        tail: Tail::TornRecord { offset },
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

//! Byte-level write-ahead log.
//!
//! The Raft layer persists its entries here before acknowledging them, so
//! the one property that matters above all is that recovery never silently
//! loses a record that was synced. Damage that a crash can explain (a torn
//! final write in the newest segment) is repaired by truncation; anything
//! else is reported as [`WalError::Corrupt`] and the node refuses to start.
//!
//! On disk: a directory of segments named `{first_lsn:020}.wal`, each a
//! 32-byte header (`KVWAL\0\0` + format version 2 + first LSN as u64 LE +
//! synced-length marker u64 LE + its crc32c + 4 zero bytes; version 1 had
//! only the first 16 bytes and is still read) followed by
//! `[len u32 LE][crc32c u32 LE over len and payload][payload]` records. LSNs
//! are implicit (segment first LSN + index), so the header and the file name
//! are cross-checked, and consecutive segments must continue each other's
//! LSNs.
//!
//! Torn write or damaged synced data? Before each fdatasync the active
//! segment's header is rewritten in place with the length the *previous*
//! fsync made durable (never the one in flight: a crash during this fsync
//! must not make its own torn tail look like damage). On recovery, a record
//! that fails below that length, or a segment shorter than it, stops the
//! node with file and offset; only damage past it is cut off as a torn
//! tail. The last synced batch before a crash is not covered (its length is
//! written with the next batch), and neither are version 1 segments.
//!
//! The newest segment is preallocated (extended with zeros to the segment
//! size) and written in place, so an fdatasync does not also have to write
//! the inode for a new file size; recovery reads the zeros after the records
//! as their end. A segment is cut back to its records (and fsynced) before
//! its successor is created, so sealed segments hold records only.

mod error;
pub mod io;
mod lock;
mod record;
mod segment;
#[cfg(test)]
pub mod simfs;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::WalError;
pub use lock::{DataDirLock, LockError};
pub use record::{MAX_RECORD_BYTES, RECORD_HEADER_BYTES};

use io::{Vfs, VfsFile};
use segment::{HEADER_BYTES, Tail};

/// Appends are copied into memory and written out once this much has piled
/// up, so a large group commit does not hold an unbounded buffer while the
/// syscalls stay large.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll threshold. Space is reclaimed only in whole segments, so this
    /// trades how soon a snapshot frees disk against how often a roll pays
    /// its extra fsyncs.
    pub segment_bytes: u64,
    /// Without fsync a crash can lose or tear any unsynced record, including
    /// in non-last segments (which recovery then reports as corrupt); only
    /// benchmarks and tests should turn it off.
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            fsync: true,
        }
    }
}

/// A torn final write that recovery cut off, reported so the caller can log
/// or count it; the bytes dropped were never synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes cut off, up to the last non-zero one (zeros after it are unwritten or
    /// preallocated space).
    pub dropped_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Every valid record in LSN order, as `(lsn, payload)`.
    pub records: Vec<(u64, Vec<u8>)>,
    pub torn_tail: Option<TornTail>,
    /// Number of segment files after recovery.
    pub segments: usize,
}

#[derive(Debug)]
struct Sealed {
    first_lsn: u64,
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug)]
struct Active {
    first_lsn: u64,
    path: PathBuf,
    file: Box<dyn VfsFile>,
    /// Bytes written to the file so far (excluding the in-memory buffer).
    bytes: u64,
    /// Bytes made durable by the last completed fsync.
    synced: u64,
    /// The synced length the header's marker holds now; `None` for a version 1 segment,
    /// which has no marker.
    marker: Option<u64>,
}

/// An open write-ahead log; single writer, owned by the Raft storage task.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn Vfs>,
    dir: PathBuf,
    opts: WalOptions,
    sealed: Vec<Sealed>,
    active: Active,
    buf: Vec<u8>,
    next_lsn: u64,
    /// Records appended since the last successful fsync.
    dirty: bool,
    poisoned: bool,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and returns every record
    /// that survived, repairing a torn tail in the newest segment.
    ///
    /// Callers must hold the [`DataDirLock`] for the enclosing data directory;
    /// the WAL itself does not lock so that tests and tools can open it freely.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovery), WalError> {
        Wal::open_with(io::std_fs(), dir, opts)
    }

    /// [`Wal::open`] on the given file system (tests pass one that can simulate crashes).
    pub fn open_with(
        fs: Arc<dyn Vfs>,
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Recovery), WalError> {
        ensure_dir(fs.as_ref(), dir, opts.fsync)?;
        let listed = segment::list(fs.as_ref(), dir)?;
        let last_idx = listed.len().saturating_sub(1);

        let mut records = Vec::new();
        let mut sealed = Vec::new();
        let mut torn_tail = None;
        let mut active = None;
        let mut expected_lsn: Option<u64> = None;

        for (i, (first_lsn, path)) in listed.into_iter().enumerate() {
            if let Some(expected) = expected_lsn
                && expected != first_lsn
            {
                return Err(WalError::Corrupt {
                    file: path,
                    offset: 0,
                    reason: format!(
                        "LSN discontinuity: the previous segment ends before LSN {expected} but this one starts at LSN {first_lsn}"
                    ),
                });
            }
            let is_last = i == last_idx;
            let bytes = fs.read(&path).map_err(|e| WalError::io("read", &path, e))?;
            let scan = segment::scan(&path, &bytes, first_lsn, is_last)?;

            let mut lsn = first_lsn;
            for payload in scan.records {
                records.push((lsn, payload.to_vec()));
                lsn = lsn.checked_add(1).ok_or_else(|| WalError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    reason: "LSN overflows u64".into(),
                })?;
            }
            expected_lsn = Some(lsn);

            if is_last {
                let marker = match scan.tail {
                    Tail::TornHeader => Some(0),
                    _ => scan.synced,
                };
                let (file, bytes, torn) =
                    repair_last(fs.as_ref(), &path, first_lsn, &bytes, scan.tail, &opts)?;
                torn_tail = torn;
                active = Some(Active {
                    first_lsn,
                    path,
                    file,
                    bytes,
                    synced: bytes,
                    marker,
                });
            } else {
                sealed.push(Sealed {
                    first_lsn,
                    path,
                    bytes: bytes.len() as u64,
                });
            }
        }

        let active = match active {
            Some(active) => active,
            None => {
                let (file, path) =
                    segment::create(fs.as_ref(), dir, 1, opts.segment_bytes, opts.fsync)?;
                Active {
                    first_lsn: 1,
                    path,
                    file,
                    bytes: HEADER_BYTES as u64,
                    synced: HEADER_BYTES as u64,
                    marker: Some(0),
                }
            }
        };
        let next_lsn = expected_lsn.unwrap_or(1);
        let wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            sealed,
            active,
            buf: Vec::new(),
            next_lsn,
            dirty: false,
            poisoned: false,
        };
        let recovery = Recovery {
            records,
            torn_tail,
            segments: wal.segment_count(),
        };
        tracing::info!(
            dir = %dir.display(),
            segments = recovery.segments,
            records = recovery.records.len(),
            first_lsn = wal.first_lsn(),
            next_lsn,
            torn_tail = recovery.torn_tail.is_some(),
            "WAL recovered"
        );
        Ok((wal, recovery))
    }

    /// Buffers one record and returns its LSN. The record is durable only
    /// after a later [`Wal::sync`], which lets callers group-commit.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, WalError> {
        self.ensure_usable()?;
        if payload.len() > MAX_RECORD_BYTES {
            return Err(self.too_large(payload.len()));
        }
        let lsn = self.next_lsn;
        let Some(next_lsn) = lsn.checked_add(1) else {
            return Err(WalError::LsnExhausted {
                dir: self.dir.clone(),
            });
        };
        record::encode_into(&mut self.buf, payload).map_err(|len| self.too_large(len))?;
        self.next_lsn = next_lsn;
        self.dirty = true;
        let result = self.after_append();
        self.poison_on_err(result)?;
        Ok(lsn)
    }

    /// Writes buffered records and fdatasyncs the active segment; once this
    /// returns Ok every LSN handed out so far survives a crash.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.ensure_usable()?;
        let result = self.sync_inner();
        self.poison_on_err(result)
    }

    /// Deletes sealed segments whose records all have LSN < `lsn`, oldest
    /// first so that a crash midway never leaves a gap in the LSN sequence.
    /// The active segment is never deleted, so LSNs keep counting up.
    pub fn remove_segments_before(&mut self, lsn: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        let mut result = Ok(());
        for (i, seg) in self.sealed.iter().enumerate() {
            let next_first = self
                .sealed
                .get(i + 1)
                .map_or(self.active.first_lsn, |s| s.first_lsn);
            // The segment's last LSN is next_first - 1.
            if next_first > lsn {
                break;
            }
            if let Err(e) = self.fs.remove(&seg.path) {
                result = Err(WalError::io("remove", &seg.path, e));
                break;
            }
            removed += 1;
        }
        self.sealed.drain(..removed);
        result?;
        if removed > 0 && self.opts.fsync {
            segment::sync_dir(self.fs.as_ref(), &self.dir)?;
        }
        if removed > 0 {
            tracing::debug!(dir = %self.dir.display(), removed, before_lsn = lsn, "removed WAL segments");
        }
        Ok(removed)
    }

    /// Seals the active segment (if it holds any record) and starts a new one, so that the
    /// records written so far can later be removed by [`Wal::remove_segments_before`] without
    /// waiting for the segment to fill. Everything buffered is synced first.
    pub fn roll(&mut self) -> Result<(), WalError> {
        self.ensure_usable()?;
        if self.next_lsn == self.active.first_lsn {
            return Ok(());
        }
        let result = self.roll_inner();
        self.poison_on_err(result)
    }

    /// The LSN the next [`Wal::append`] will return.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The LSN of the oldest record still on disk (or that the active segment
    /// will receive, if it is empty); rises after
    /// [`Wal::remove_segments_before`].
    pub fn first_lsn(&self) -> u64 {
        self.sealed
            .first()
            .map_or(self.active.first_lsn, |s| s.first_lsn)
    }

    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Bytes in segment files, excluding appends still in the write buffer.
    pub fn disk_bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.bytes).sum::<u64>() + self.active.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn poison_on_err<T>(&mut self, result: Result<T, WalError>) -> Result<T, WalError> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn too_large(&self, len: usize) -> WalError {
        WalError::RecordTooLarge {
            dir: self.dir.clone(),
            len,
            max: MAX_RECORD_BYTES,
        }
    }

    fn after_append(&mut self) -> Result<(), WalError> {
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.flush_buf()?;
        }
        if self.should_roll() {
            self.roll_inner()?;
        }
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), WalError> {
        self.flush_buf()?;
        self.sync_active()?;
        if self.should_roll() {
            self.roll_inner()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // At the end of the records, inside the preallocated space (not at the file's end).
        self.active
            .file
            .write_at(self.active.bytes, &self.buf)
            .map_err(|e| WalError::io("write", &self.active.path, e))?;
        self.active.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// fdatasyncs the active segment, first recording in its header what the previous fsync
    /// made durable (one in-place write on the same file, covered by the same fdatasync), so
    /// recovery can tell damage to synced records from a torn final write.
    fn sync_active(&mut self) -> Result<(), WalError> {
        if self.dirty && self.opts.fsync {
            let a = &mut self.active;
            if let Some(marker) = a.marker
                && a.synced > marker
            {
                a.file
                    .write_at(segment::MARKER_OFFSET, &segment::encode_marker(a.synced))
                    .map_err(|e| WalError::io("write the synced-length marker of", &a.path, e))?;
                a.marker = Some(a.synced);
            }
            a.file
                .sync_data()
                .map_err(|e| WalError::io("fsync", &a.path, e))?;
            a.synced = a.bytes;
        }
        self.dirty = false;
        Ok(())
    }

    /// An empty active segment never rolls, or a tiny `segment_bytes` would
    /// create segments forever.
    fn should_roll(&self) -> bool {
        self.next_lsn > self.active.first_lsn
            && self.active.bytes + self.buf.len() as u64 >= self.opts.segment_bytes
    }

    /// Seals the active segment and starts a new one.
    ///
    /// The old segment is synced before the new file exists: recovery treats
    /// damage in any non-last segment as corruption, which is only sound if
    /// a segment is complete on disk before a successor can appear.
    fn roll_inner(&mut self) -> Result<(), WalError> {
        self.flush_buf()?;
        self.sync_active()?;
        // Only the newest segment may end in preallocated zeros.
        let a = &mut self.active;
        a.file
            .set_len(a.bytes)
            .map_err(|e| WalError::io("cut the preallocated space of", &a.path, e))?;
        if self.opts.fsync {
            a.file
                .sync_all()
                .map_err(|e| WalError::io("fsync", &a.path, e))?;
        }
        let (file, path) = segment::create(
            self.fs.as_ref(),
            &self.dir,
            self.next_lsn,
            self.opts.segment_bytes,
            self.opts.fsync,
        )?;
        let new = Active {
            first_lsn: self.next_lsn,
            path,
            file,
            bytes: HEADER_BYTES as u64,
            synced: HEADER_BYTES as u64,
            marker: Some(0),
        };
        let old = std::mem::replace(&mut self.active, new);
        tracing::debug!(
            sealed = %old.path.display(),
            active = %self.active.path.display(),
            "rolled WAL segment"
        );
        self.sealed.push(Sealed {
            first_lsn: old.first_lsn,
            path: old.path,
            bytes: old.bytes,
        });
        Ok(())
    }
}

/// Creates the WAL directory (and any missing parent), syncing the parent of each directory
/// created so the WAL itself survives a crash along with the segments inside it.
fn ensure_dir(fs: &dyn Vfs, dir: &Path, fsync: bool) -> Result<(), WalError> {
    io::create_dir_durable(fs, dir, fsync).map_err(|e| WalError::io("create directory", dir, e))
}

/// The newest segment opened for appending, its length, and the torn tail cut off it.
type RepairedTail = (Box<dyn VfsFile>, u64, Option<TornTail>);

/// Cuts a torn tail off the newest segment (or rewrites its header), preallocates its space
/// again, and opens it for appending; returns where its records end.
fn repair_last(
    fs: &dyn Vfs,
    path: &Path,
    first_lsn: u64,
    bytes: &[u8],
    tail: Tail,
    opts: &WalOptions,
) -> Result<RepairedTail, WalError> {
    let mut file = fs
        .open_append(path)
        .map_err(|e| WalError::io("open", path, e))?;
    let (keep, end) = match tail {
        Tail::Clean { end } => (None, end as u64),
        Tail::TornHeader => (Some(0), 0),
        Tail::TornRecord { offset } => (Some(offset as u64), offset as u64),
    };
    let torn = keep.map(|offset| TornTail {
        file: path.to_path_buf(),
        offset,
        // Trailing zeros are preallocated or unwritten space, not dropped data; looked for only
        // when something is cut (a clean segment's zeros were already scanned once).
        dropped_bytes: (segment::data_end(bytes) as u64).saturating_sub(offset),
    });
    if let Some(t) = &torn {
        tracing::warn!(
            file = %t.file.display(),
            offset = t.offset,
            dropped_bytes = t.dropped_bytes,
            "truncating torn tail of WAL segment"
        );
        file.set_len(t.offset)
            .map_err(|e| WalError::io("truncate", path, e))?;
    }
    let len = if end == 0 {
        segment::write_header(file.as_mut(), path, first_lsn)?;
        HEADER_BYTES as u64
    } else {
        end
    };
    segment::preallocate(file.as_mut(), path, opts.segment_bytes)?;
    // Everything recovery read may still sit only in the page cache (a kill -9 keeps it): make
    // it durable before the synced-length marker can ever claim it.
    if opts.fsync {
        file.sync_all()
            .map_err(|e| WalError::io("fsync", path, e))?;
    }
    Ok((file, len, torn))
}

//! The file operations the WAL and the snapshot store perform, behind a small trait.
//!
//! Production uses [`StdFs`] (plain `std::fs`). Tests substitute a file system that records
//! every write, fsync, rename and directory fsync and can then "crash" at any point, keeping
//! only what a real disk could have kept (see `simfs` in the tests), so crash consistency is
//! checked against power loss, not only against `kill -9` (which keeps the page cache).
//!
//! Snapshot files are written sequentially (append, or cut back and append), so the file handle
//! has no seek: a `write_all` lands at the current end. The WAL writes with explicit offsets
//! (`write_at`): its records go into the segment's preallocated space, and its synced-length
//! marker is rewritten in the header.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file system as the WAL and snapshot store use it.
pub trait Vfs: Send + Sync + Debug {
    fn is_dir(&self, path: &Path) -> bool;
    /// Creates `dir` and any missing parents (no fsync: callers sync the parent).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates a new file; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Creates or empties a file.
    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file, written at its end only.
pub trait VfsFile: Send + Debug {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Writes at `offset` (overwriting, or extending the file), without moving the end where
    /// `write_all` appends.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Cuts (or extends) the file to `len`; later writes land there.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    /// fdatasync: the contents written so far are durable once this returns Ok.
    fn sync_data(&mut self) -> io::Result<()>;
    /// fsync: contents and metadata.
    fn sync_all(&mut self) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

/// The shared handle the stores keep.
pub fn std_fs() -> Arc<dyn Vfs> {
    Arc::new(StdFs)
}

#[derive(Debug)]
struct StdFile {
    file: File,
}

impl Vfs for StdFs {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            // Names that are not UTF-8 are none of ours.
            if let Some(name) = e?.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Box::new(StdFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl VfsFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// The directory a path's entry lives in (`.` for a bare name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and any missing ancestors, and (with `fsync`) fsyncs the parent of every
/// directory it created, top down: a directory entry is only durable once its parent is synced,
/// and a data directory that vanishes after a power loss takes everything in it along.
pub fn create_dir_durable(fs: &dyn Vfs, dir: &Path, fsync: bool) -> io::Result<()> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !fs.is_dir(a))
        .map(Path::to_path_buf)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    if fsync {
        for d in missing.iter().rev() {
            fs.sync_dir(&parent_of(d))?;
        }
    }
    Ok(())
}

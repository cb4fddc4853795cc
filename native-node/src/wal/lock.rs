//! Exclusive ownership of a node's data directory.
//!
//! Two processes appending to the same WAL would interleave records and
//! corrupt it, and two Raft nodes sharing state would break safety, so a node
//! takes this lock before touching anything in its data directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {} is locked by another keyval process ({})",
        dir.display(),
        path.display()
    )]
    Locked { dir: PathBuf, path: PathBuf },

    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LockError {
    let path = path.to_path_buf();
    move |source| LockError::Io { op, path, source }
}

/// Holds `dir/LOCK` exclusively for as long as the value lives.
///
/// The lock is an `flock`, which belongs to the open file description, so it
/// conflicts with a second `acquire` in the same process as well as in
/// another one, and the kernel drops it if the process dies, leaving no
/// stale lock to clean up by hand.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        // Durably: the data directory's own entry must survive a power loss, or the WAL and
        // snapshots synced inside it could vanish with it.
        super::io::create_dir_durable(&super::io::StdFs, dir, true)
            .map_err(io_err("create data directory", dir))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: until we hold the lock, the pid inside
        // belongs to whoever does.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        // Fully qualified: std's inherent `File::try_lock` would otherwise
        // shadow the fs4 trait method.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(LockError::Locked {
                    dir: dir.to_path_buf(),
                    path,
                });
            }
            Err(fs4::TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    op: "lock",
                    path,
                    source,
                });
            }
        }
        // The pid is only for humans wondering who holds the directory; the
        // lock itself is what excludes other processes.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err("write pid to", &path))?;
        Ok(DataDirLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    /// Unlocks explicitly rather than relying on close, so the release does
    /// not depend on no other handle to this file description surviving.
    /// The file is left in place: deleting it would let a waiter lock an
    /// unlinked inode while a newcomer locks a fresh one.
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

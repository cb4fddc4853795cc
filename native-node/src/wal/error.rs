use std::io;
use std::path::{Path, PathBuf};

/// Errors from the write-ahead log.
///
/// Every variant names the file or directory involved because the operator
/// reading a refusal-to-start message needs to know which file to inspect.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error: failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Damage that cannot be explained by a torn final write. Recovery stops
    /// here rather than discarding data that may have been acknowledged.
    #[error("corrupt WAL segment {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error(
        "WAL record of {len} bytes exceeds the maximum of {max} bytes (WAL {})",
        dir.display()
    )]
    RecordTooLarge {
        dir: PathBuf,
        len: usize,
        max: usize,
    },

    /// Only reachable from a hand-made segment named near `u64::MAX`, but
    /// file contents must never be able to make the node panic.
    #[error("WAL {} has exhausted the LSN space", dir.display())]
    LsnExhausted { dir: PathBuf },

    /// After a failed write or fsync the kernel may already have dropped the
    /// dirty pages, so retrying could report success for data that is gone;
    /// the only safe path is to reopen and let recovery read what is on disk.
    #[error(
        "WAL {} refuses further writes after an earlier write or fsync failure; reopen it to recover from disk",
        dir.display()
    )]
    Poisoned { dir: PathBuf },
}

impl WalError {
    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

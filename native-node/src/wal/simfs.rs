//! A simulated file system for crash-consistency tests: it serves the [`Vfs`] calls from
//! memory, records every mutation in order, and can build the disk image a power loss at any
//! point of that record could have left.
//!
//! The durability model is strict POSIX, as on Linux ext4/xfs without `data=journal`:
//! - file contents are durable up to the file's last successful `sync_data`/`sync_all`; of the
//!   writes after it, any prefix (per file) may have reached the disk, and the last one kept
//!   may be torn;
//! - a creation, rename or removal is durable once its directory was fsynced; of the later
//!   ones in a directory, any prefix may have reached the disk; a rename is atomic;
//! - files and directories are independent of each other: unsynced writes to two files may
//!   land in either order (that is the "reorder" case).
//!
//! Errors can be injected: the n-th fsync fails with EIO, or the n-th write stops halfway with
//! ENOSPC. A failed fsync makes nothing durable.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::{Vfs, VfsFile, parent_of};

type Ino = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(Ino),
    Dir,
}

#[derive(Clone, Debug)]
enum Event {
    Write {
        ino: Ino,
        data: Vec<u8>,
    },
    /// A write at an offset: a WAL segment's records and its synced-length marker.
    WriteAt {
        ino: Ino,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: Ino,
        len: u64,
    },
    SyncFile {
        ino: Ino,
    },
    /// Atomic namespace change in `dir`: each path gets the node, or loses it (None).
    Names {
        dir: PathBuf,
        changes: Vec<(PathBuf, Option<Node>)>,
    },
    SyncDir {
        dir: PathBuf,
    },
}

/// A disk image: what survives a crash, and the starting point of a fresh [`SimFs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    names: BTreeMap<PathBuf, Node>,
    files: BTreeMap<Ino, Vec<u8>>,
}

impl Image {
    /// An empty disk holding only the directories `dirs` (and their ancestors).
    pub fn with_dirs(dirs: &[&str]) -> Image {
        let mut img = Image::default();
        for d in dirs {
            for a in Path::new(d).ancestors() {
                if !a.as_os_str().is_empty() {
                    img.names.insert(a.to_path_buf(), Node::Dir);
                }
            }
        }
        img
    }

    pub fn file(&self, path: &Path) -> Option<&[u8]> {
        match self.names.get(path)? {
            Node::File(ino) => self.files.get(ino).map(Vec::as_slice),
            Node::Dir => None,
        }
    }

    /// Overwrites the bytes of an existing file at `offset` (for damage tests).
    pub fn patch(&mut self, path: &Path, offset: usize, bytes: &[u8]) {
        if let Some(Node::File(ino)) = self.names.get(path)
            && let Some(f) = self.files.get_mut(ino)
        {
            let end = (offset + bytes.len()).min(f.len());
            f[offset..end].copy_from_slice(&bytes[..end - offset]);
        }
    }

    /// Deletes `dir` and everything under it (for tests of lost directories).
    pub fn remove_tree(&mut self, dir: &Path) {
        self.names.retain(|p, _| !p.starts_with(dir));
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.names.keys().cloned().collect()
    }
}

/// Which unsynced changes a crash keeps: for every file and directory, how many of its
/// unsynced events (a prefix) survive, and whether the last surviving write is torn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Only what was synced.
    DropUnsynced,
    /// Everything (the page cache survived, as with `kill -9`).
    KeepAll,
    /// A seeded choice per file and directory: any prefix, maybe torn.
    Random(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The n-th fsync (file or directory, counting from 0) fails with EIO.
    FsyncEio(usize),
    /// The n-th write writes half its bytes, then fails with ENOSPC.
    WriteEnospc(usize),
}

#[derive(Debug)]
struct Inner {
    base: Image,
    /// The live view the calls see.
    live: Image,
    next_ino: Ino,
    events: Vec<Event>,
    fault: Option<Fault>,
    fsyncs: usize,
    writes: usize,
    /// A failed fsync or write happened; later fsyncs are recorded here (must stay 0 for a
    /// writer that never retries a failed fsync).
    fsyncs_after_failure: usize,
    failed: bool,
}

/// The simulated file system; cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct SimFs(Arc<Mutex<Inner>>);

impl SimFs {
    pub fn new(image: Image) -> SimFs {
        let next_ino = image.files.keys().max().map_or(1, |m| m + 1);
        SimFs(Arc::new(Mutex::new(Inner {
            base: image.clone(),
            live: image,
            next_ino,
            events: Vec::new(),
            fault: None,
            fsyncs: 0,
            writes: 0,
            fsyncs_after_failure: 0,
            failed: false,
        })))
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inject(&self, fault: Fault) {
        self.inner().fault = Some(fault);
    }

    /// Mutations recorded so far: the crash points are `0..=events()`.
    pub fn events(&self) -> usize {
        self.inner().events.len()
    }

    pub fn fsyncs_after_failure(&self) -> usize {
        self.inner().fsyncs_after_failure
    }

    /// The live view, as if every write had reached the disk.
    pub fn live(&self) -> Image {
        self.inner().live.clone()
    }

    /// The disk a power loss right after the first `at` events could have left, per `plan`.
    pub fn crash_image(&self, at: usize, plan: &Plan) -> Image {
        let inner = self.inner();
        let events = &inner.events[..at.min(inner.events.len())];
        let mut rng = match plan {
            Plan::Random(seed) => *seed | 1,
            _ => 1,
        };
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n.max(1)
        };
        // Per stream (file or directory): the events, and how many are durable for sure.
        let mut file_events: BTreeMap<Ino, Vec<&Event>> = BTreeMap::new();
        let mut dir_events: BTreeMap<PathBuf, Vec<&Event>> = BTreeMap::new();
        let mut file_synced: BTreeMap<Ino, usize> = BTreeMap::new();
        let mut dir_synced: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for e in events {
            match e {
                Event::Write { ino, .. }
                | Event::WriteAt { ino, .. }
                | Event::SetLen { ino, .. } => {
                    file_events.entry(*ino).or_default().push(e);
                }
                Event::SyncFile { ino } => {
                    let n = file_events.get(ino).map_or(0, Vec::len);
                    file_synced.insert(*ino, n);
                }
                Event::Names { dir, .. } => dir_events.entry(dir.clone()).or_default().push(e),
                Event::SyncDir { dir } => {
                    let n = dir_events.get(dir).map_or(0, Vec::len);
                    dir_synced.insert(dir.clone(), n);
                }
            }
        }
        let mut keep = |total: usize, synced: usize| -> (usize, bool) {
            match plan {
                Plan::DropUnsynced => (synced, false),
                Plan::KeepAll => (total, false),
                Plan::Random(_) => {
                    let extra = next((total - synced) as u64 + 1) as usize;
                    (synced + extra, extra > 0 && next(3) == 0)
                }
            }
        };
        let mut img = inner.base.clone();
        for (dir, evs) in &dir_events {
            let (n, _) = keep(evs.len(), dir_synced.get(dir).copied().unwrap_or(0));
            for e in &evs[..n] {
                if let Event::Names { changes, .. } = e {
                    for (path, node) in changes {
                        match node {
                            Some(node) => img.names.insert(path.clone(), *node),
                            None => img.names.remove(path),
                        };
                    }
                }
            }
        }
        // An entry whose parent directory did not survive is gone with it.
        let names = img.names.clone();
        img.names.retain(|p, _| {
            p.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .all(|a| names.get(a) == Some(&Node::Dir))
        });
        for (ino, evs) in &file_events {
            let (n, tear) = keep(evs.len(), file_synced.get(ino).copied().unwrap_or(0));
            let f = img.files.entry(*ino).or_default();
            for (i, e) in evs[..n].iter().enumerate() {
                match e {
                    Event::Write { data, .. } => {
                        let cut = if tear && i + 1 == n {
                            data.len() / 2
                        } else {
                            data.len()
                        };
                        f.extend_from_slice(&data[..cut]);
                    }
                    Event::WriteAt { offset, data, .. } => {
                        let cut = if tear && i + 1 == n {
                            data.len() / 2
                        } else {
                            data.len()
                        };
                        overwrite(f, *offset, &data[..cut]);
                    }
                    Event::SetLen { len, .. } => f.resize(*len as usize, 0),
                    _ => {}
                }
            }
        }
        let live: BTreeSet<Ino> = img
            .names
            .values()
            .filter_map(|n| match n {
                Node::File(i) => Some(*i),
                Node::Dir => None,
            })
            .collect();
        img.files.retain(|i, _| live.contains(i));
        // A file created but never written is empty, not missing.
        for i in live {
            img.files.entry(i).or_default();
        }
        img
    }
}

fn overwrite(f: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if f.len() < end {
        f.resize(end, 0);
    }
    f[offset as usize..end].copy_from_slice(data);
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Inner {
    fn record(&mut self, e: Event) {
        self.events.push(e);
    }

    fn fsync_fault(&mut self) -> io::Result<()> {
        if self.failed {
            self.fsyncs_after_failure += 1;
        }
        let n = self.fsyncs;
        self.fsyncs += 1;
        if self.fault == Some(Fault::FsyncEio(n)) {
            self.failed = true;
            return Err(io::Error::other("injected EIO on fsync"));
        }
        Ok(())
    }

    fn set_names(&mut self, dir: PathBuf, changes: Vec<(PathBuf, Option<Node>)>) {
        for (p, n) in &changes {
            match n {
                Some(n) => self.live.names.insert(p.clone(), *n),
                None => self.live.names.remove(p),
            };
        }
        self.record(Event::Names { dir, changes });
    }

    fn new_file(&mut self, path: &Path) -> io::Result<Ino> {
        if self.live.names.get(&parent_of(path)) != Some(&Node::Dir) {
            return Err(not_found(&parent_of(path)));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.live.files.insert(ino, Vec::new());
        self.set_names(
            parent_of(path),
            vec![(path.to_path_buf(), Some(Node::File(ino)))],
        );
        Ok(ino)
    }
}

impl Vfs for SimFs {
    fn is_dir(&self, path: &Path) -> bool {
        self.inner().live.names.get(path) == Some(&Node::Dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.inner();
        let mut missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| !inner.live.names.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        for d in missing {
            inner.set_names(parent_of(&d), vec![(d, Some(Node::Dir))]);
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let inner = self.inner();
        if inner.live.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        Ok(inner
            .live
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let inner = self.inner();
        inner
            .live
            .file(path)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| not_found(path))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let mut inner = self.inner();
        if inner.live.names.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let ino = inner.new_file(path)?;
        Ok(Box::new(SimFile {
            fs: self.clone(),
            ino,
        }))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let existing = match self.inner().live.names.get(path) {
            Some(Node::File(ino)) => Some(*ino),
            Some(Node::Dir) => return Err(io::Error::other("is a directory")),
            None => None,
        };
        match existing {
            Some(ino) => {
                let mut f = SimFile {
                    fs: self.clone(),
                    ino,
                };
                f.set_len(0)?;
                Ok(Box::new(f))
            }
            None => self.create_new(path),
        }
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        match self.inner().live.names.get(path) {
            Some(Node::File(ino)) => Ok(Box::new(SimFile {
                fs: self.clone(),
                ino: *ino,
            })),
            _ => Err(not_found(path)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut inner = self.inner();
        let node = *inner.live.names.get(from).ok_or_else(|| not_found(from))?;
        assert_eq!(
            parent_of(from),
            parent_of(to),
            "the stores only rename within a directory"
        );
        inner.set_names(
            parent_of(from),
            vec![(to.to_path_buf(), Some(node)), (from.to_path_buf(), None)],
        );
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut inner = self.inner();
        if !inner.live.names.contains_key(path) {
            return Err(not_found(path));
        }
        inner.set_names(parent_of(path), vec![(path.to_path_buf(), None)]);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut inner = self.inner();
        inner.fsync_fault()?;
        inner.record(Event::SyncDir {
            dir: dir.to_path_buf(),
        });
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: Ino,
}

impl SimFile {
    fn sync(&mut self) -> io::Result<()> {
        let mut inner = self.fs.inner();
        inner.fsync_fault()?;
        inner.record(Event::SyncFile { ino: self.ino });
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.fs.inner();
        let n = inner.writes;
        inner.writes += 1;
        let (data, result) = if inner.fault == Some(Fault::WriteEnospc(n)) {
            inner.failed = true;
            (
                &buf[..buf.len() / 2],
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "injected ENOSPC",
                )),
            )
        } else {
            (buf, Ok(()))
        };
        if let Some(f) = inner.live.files.get_mut(&self.ino) {
            f.extend_from_slice(data);
        }
        inner.record(Event::Write {
            ino: self.ino,
            data: data.to_vec(),
        });
        result
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut inner = self.fs.inner();
        if let Some(f) = inner.live.files.get_mut(&self.ino) {
            overwrite(f, offset, buf);
        }
        inner.record(Event::WriteAt {
            ino: self.ino,
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut inner = self.fs.inner();
        if let Some(f) = inner.live.files.get_mut(&self.ino) {
            f.resize(len as usize, 0);
        }
        inner.record(Event::SetLen { ino: self.ino, len });
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let inner = self.fs.inner();
        Ok(inner.live.files.get(&self.ino).map_or(0, Vec::len) as u64)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }
}

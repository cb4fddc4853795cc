//! `kvctl floor`: how fast this machine and disk could answer a 1-client put at best, whatever
//! the software.
//!
//! It runs the path of a KeyVal put with nothing else on it: a client sends a record to a
//! leader; the leader forwards it to two followers and writes and fdatasyncs it itself; each
//! follower writes and fdatasyncs it and acknowledges; the leader answers once its own copy
//! and one follower's are durable. Blocking sockets over loopback, one thread per role, no
//! Raft, no framing, no async runtime. The record is as large as a WAL record of one put.
//! One more line lets the leader count its copy without syncing it: no correct Raft may, so
//! it bounds every valid way to commit from below (two followers without the leader included).
//!
//! Why: a latency target below this line is a target for the machine, not for KeyVal, and
//! `kvctl bench --op put --clients 1` against it shows how much of a put is our software.
//! The disk lines say what one fdatasync costs alone and with three writers at once, which
//! is what a local three-node cluster on one disk does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use keyval_core::{ClientRequest, Entry, EntryPayload, KvOp};
use native_node::storage::append_record_bytes;
use serde_json::json;

/// Each scratch file is extended to this size before the first write, as the WAL does with its
/// newest segment, so an fdatasync does not also have to record a larger file size.
const PREALLOCATE_BYTES: u64 = 64 << 20;
/// An acknowledgement or an answer: its content does not matter, only its trip.
const ACK_BYTES: usize = 8;
/// Nodes of the local cluster whose disk writes are measured together.
const NODES: usize = 3;

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Directory on the disk to measure (the nodes' data disk). A scratch directory is made
    /// in it and removed afterwards.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Round trips per measurement.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    requests: u32,
    /// Key bytes of the put a record stands for (as `kvctl bench`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    key_size: u32,
    /// Value bytes of the put a record stands for (as `kvctl bench`).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    value_size: u32,
}

/// Latency percentiles of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Spread {
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Spread {
    fn of(mut ms: Vec<f64>) -> Spread {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1));
            ms.get(i).copied().unwrap_or(0.0)
        };
        Spread {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        }
    }
}

/// Runs the four measurements and returns the report (text or JSON).
pub fn run(args: FloorArgs, json_out: bool) -> Result<String> {
    let record = vec![0x5a; wal_record_bytes(args.key_size, args.value_size)?];
    let scratch = Scratch::create(&args.dir)?;
    let n = args.requests as usize;
    let rows = [
        ("disk: write + fdatasync", disk(&scratch, &record, n, 1)?),
        (
            "disk: 3 writers at once",
            disk(&scratch, &record, n, NODES)?,
        ),
        (
            "replicated put, no fsync",
            replicated(&scratch, &record, n, Syncs::None)?,
        ),
        (
            "replicated put, followers' fsync",
            replicated(&scratch, &record, n, Syncs::Followers)?,
        ),
        (
            "replicated put, fsync",
            replicated(&scratch, &record, n, Syncs::All)?,
        ),
    ];
    let dir = scratch.parent_display();
    drop(scratch);
    Ok(if json_out {
        // Microseconds are the resolution that means anything here.
        let us = |ms: f64| (ms * 1e3).round() / 1e3;
        let spread = |s: &Spread| json!({"p50": us(s.p50), "p90": us(s.p90), "p99": us(s.p99)});
        json!({
            "dir": dir,
            "requests": n,
            "record_bytes": record.len(),
            "latency_ms": {
                "disk_fdatasync": spread(&rows[0].1),
                "disk_fdatasync_3_writers": spread(&rows[1].1),
                "replicated_no_fsync": spread(&rows[2].1),
                "replicated_followers_fsync": spread(&rows[3].1),
                "replicated_fsync": spread(&rows[4].1),
            }
        })
        .to_string()
    } else {
        let mut s = format!(
            "floor of one put on this machine: {n} round trips per line, {}-byte records in {dir}\n\
             (blocking I/O over loopback, no Raft: a leader and two followers, the leader answers\n\
             once its own copy and one follower's are durable)\n\n\
             {:<33} {:>8} {:>8} {:>8}\n",
            record.len(),
            "latency ms",
            "p50",
            "p90",
            "p99"
        );
        for (name, r) in &rows {
            s.push_str(&format!(
                "{name:<33} {:>8.3} {:>8.3} {:>8.3}\n",
                r.p50, r.p90, r.p99
            ));
        }
        s.push_str(
            "\n\"followers' fsync\": the leader counts its copy without syncing it, which no correct Raft\n\
             may do: a bound below every valid way to commit.\n\
             A three-node cluster on this disk cannot answer a 1-client put faster than the last\n\
             line; compare `kvctl bench --op put --clients 1`.",
        );
        s
    })
}

/// The size of the WAL record that appends one put of these sizes, at a late term and index
/// from a client with a large id (varints grow with them).
fn wal_record_bytes(key_size: u32, value_size: u32) -> Result<usize> {
    let entry = sample_put(1_000, 10_000_000, key_size, value_size);
    append_record_bytes(&[entry]).context("encoding a sample record")
}

fn sample_put(term: u64, index: u64, key_size: u32, value_size: u32) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(ClientRequest {
            client_id: u64::MAX / 3,
            seq: 1_000_000,
            op: KvOp::Put {
                key: vec![0; key_size as usize],
                value: vec![0; value_size as usize],
            },
        }),
    }
}

/// `writers` threads at once, each on its own file, each writing the record at the next offset
/// and fdatasyncing it, `n` times; every write's latency.
fn disk(scratch: &Scratch, record: &[u8], n: usize, writers: usize) -> Result<Spread> {
    scratch.clear()?;
    let start = Arc::new(Barrier::new(writers));
    let mut handles = Vec::with_capacity(writers);
    for w in 0..writers {
        let file = scratch.file(&format!("disk-{writers}-{w}"))?;
        let record = record.to_vec();
        let start = Arc::clone(&start);
        handles.push(thread::spawn(move || -> io::Result<Vec<f64>> {
            start.wait();
            let mut lat = Vec::with_capacity(n);
            let mut offset = 0u64;
            for _ in 0..n {
                let t = Instant::now();
                append(&file, &record, &mut offset, true)?;
                lat.push(ms_since(t));
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n * writers);
    for h in handles {
        all.extend(join(h).context("disk writer")?);
    }
    Ok(Spread::of(all))
}

/// Which nodes of [`replicated`] fdatasync their copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syncs {
    None,
    /// The leader writes without syncing but still counts its copy: not a valid commit, so a
    /// bound below all of them (even one by the two followers without the leader).
    Followers,
    All,
}

/// The client's round trips through a leader and two followers (see the module docs).
fn replicated(scratch: &Scratch, record: &[u8], n: usize, syncs: Syncs) -> Result<Spread> {
    scratch.clear()?;
    let tag = format!("{syncs:?}").to_lowercase();
    let (fsync, leader_fsync) = (syncs != Syncs::None, syncs == Syncs::All);
    let mut followers = Vec::new();
    let mut follower_addrs = Vec::new();
    for f in 0..2 {
        let listener = listen()?;
        follower_addrs.push(listener.local_addr()?);
        let file = scratch.file(&format!("{tag}-follower-{f}"))?;
        let len = record.len();
        followers.push(thread::spawn(move || follower(listener, file, len, fsync)));
    }
    let leader_listener = listen()?;
    let leader_addr = leader_listener.local_addr()?;
    let file = scratch.file(&format!("{tag}-leader"))?;
    let len = record.len();
    let leader =
        thread::spawn(move || leader(leader_listener, &follower_addrs, file, len, leader_fsync));

    let lat = match client(leader_addr, record, n) {
        Ok(lat) => lat,
        Err(e) => {
            // A leader that failed (its disk, say) is why the client failed: report its error.
            for _ in 0..100 {
                if leader.is_finished() {
                    join(leader).context("leader")?;
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
            return Err(anyhow::Error::from(e).context("client"));
        }
    };
    // The client's connection is closed by now, which ends the leader, whose closed
    // connections end the followers.
    join(leader).context("leader")?;
    for f in followers {
        join(f).context("follower")?;
    }
    Ok(Spread::of(lat))
}

fn client(leader: SocketAddr, record: &[u8], n: usize) -> io::Result<Vec<f64>> {
    let mut s = connect(leader)?;
    let mut ack = [0u8; ACK_BYTES];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(record)?;
        s.read_exact(&mut ack)?;
        lat.push(ms_since(t));
    }
    Ok(lat)
}

fn leader(
    listener: TcpListener,
    followers: &[SocketAddr],
    file: File,
    record_len: usize,
    fsync: bool,
) -> io::Result<()> {
    let mut peers = Vec::with_capacity(followers.len());
    let (ack_tx, ack_rx) = mpsc::channel::<usize>();
    let mut ack_readers = Vec::new();
    for (i, addr) in followers.iter().enumerate() {
        let s = connect(*addr)?;
        let mut reader = s.try_clone()?;
        let tx = ack_tx.clone();
        ack_readers.push(thread::spawn(move || -> io::Result<()> {
            let mut ack = [0u8; ACK_BYTES];
            while read_or_end(&mut reader, &mut ack)? {
                if tx.send(i).is_err() {
                    break;
                }
            }
            Ok(())
        }));
        peers.push(s);
    }
    drop(ack_tx);
    let (mut c, _) = listener.accept()?;
    c.set_nodelay(true)?;
    let mut record = vec![0u8; record_len];
    let mut acked = vec![0u64; followers.len()];
    let mut offset = 0u64;
    let mut sent = 0u64;
    while read_or_end(&mut c, &mut record)? {
        sent += 1;
        for p in &mut peers {
            p.write_all(&record)?;
        }
        append(&file, &record, &mut offset, fsync)?;
        // A majority of three: this copy and the first follower to acknowledge this record.
        while acked.iter().all(|&a| a < sent) {
            let from = ack_rx
                .recv()
                .map_err(|_| io::Error::other("a follower went away"))?;
            acked[from] += 1;
        }
        c.write_all(&[0u8; ACK_BYTES])?;
    }
    // The readers hold clones of these sockets: only a shutdown tells the followers to stop.
    for p in &peers {
        p.shutdown(Shutdown::Write)?;
    }
    for r in ack_readers {
        r.join()
            .map_err(|_| io::Error::other("an acknowledgement reader panicked"))??;
    }
    Ok(())
}

fn follower(listener: TcpListener, file: File, record_len: usize, fsync: bool) -> io::Result<()> {
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut record = vec![0u8; record_len];
    let mut offset = 0u64;
    while read_or_end(&mut s, &mut record)? {
        append(&file, &record, &mut offset, fsync)?;
        s.write_all(&[0u8; ACK_BYTES])?;
    }
    Ok(())
}

/// Writes at `offset` and moves it on, back to the start at [`PREALLOCATE_BYTES`]: large
/// values times many requests must not fill the disk.
fn append(file: &File, record: &[u8], offset: &mut u64, fsync: bool) -> io::Result<()> {
    if *offset + record.len() as u64 > PREALLOCATE_BYTES {
        *offset = 0;
    }
    file.write_all_at(record, *offset)?;
    *offset += record.len() as u64;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

/// Fills `buf`, or reports a connection closed before its first byte as the end.
fn read_or_end(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    match s.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn listen() -> io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0))
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn join<T>(h: thread::JoinHandle<io::Result<T>>) -> Result<T> {
    h.join()
        .map_err(|_| anyhow!("the thread panicked"))?
        .map_err(Into::into)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The scratch directory, removed with everything in it when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(parent: &Path) -> Result<Scratch> {
        let path = parent.join(format!(".kvctl-floor-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| {
            format!("cannot create a scratch directory in {}", parent.display())
        })?;
        Ok(Scratch { path })
    }

    fn file(&self, name: &str) -> Result<File> {
        let path = self.path.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        // Best effort, as in the WAL: without it the file grows with its records.
        let _ = file.set_len(PREALLOCATE_BYTES);
        Ok(file)
    }

    /// Removes the previous measurement's files, so at most one measurement's are on disk.
    fn clear(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path)
            .with_context(|| format!("cannot list {}", self.path.display()))?;
        for entry in entries {
            let path = entry?.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }

    fn parent_display(&self) -> String {
        self.path
            .parent()
            .map_or_else(|| ".".into(), |p| p.display().to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let s = Spread::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((s.p50, s.p90, s.p99), (51.0, 91.0, 100.0));
        let one = Spread::of(vec![0.5]);
        assert_eq!((one.p50, one.p99), (0.5, 0.5));
    }

    #[test]
    fn writes_go_back_to_the_start_instead_of_growing_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("f")).expect("create");
        let mut offset = PREALLOCATE_BYTES - 10;
        append(&file, &[7; 20], &mut offset, false).expect("append");
        assert_eq!(offset, 20);
        let mut head = [0u8; 20];
        file.sync_all().expect("sync");
        let read = File::open(dir.path().join("f")).expect("open");
        read.read_exact_at(&mut head, 0).expect("read");
        assert_eq!(head, [7; 20]);
        assert_eq!(read.metadata().expect("metadata").len(), 20);
    }

    #[test]
    fn a_record_is_as_large_as_the_wal_record_of_one_put() {
        use keyval_core::PersistOp;
        use native_node::storage::{LogStore, WalStore};

        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _, _) = WalStore::open(
            &dir.path().join("wal"),
            &dir.path().join("snapshots"),
            native_node::wal::WalOptions::default(),
        )
        .expect("open");
        let entry = sample_put(1_000, 1, 16, 256);
        let expected = append_record_bytes(std::slice::from_ref(&entry)).expect("encodes");
        let before = store.stats().wal_bytes;
        store
            .write(&[PersistOp::Append(vec![entry])])
            .expect("write");
        store.sync().expect("sync");
        assert_eq!(
            store.stats().wal_bytes - before,
            expected as u64,
            "the WAL writes one record of exactly this size"
        );
        // The floor's record: the same put at a late index, so a few varint bytes longer.
        let floor = wal_record_bytes(16, 256).expect("encodes");
        assert!((expected..expected + 8).contains(&floor), "{floor}");
        let big = wal_record_bytes(16, 1 << 20).expect("encodes");
        assert_eq!(
            big - floor,
            (1 << 20) - 256 + 1,
            "a longer value length varint"
        );
    }
}

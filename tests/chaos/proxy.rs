//! A fault-injecting TCP proxy for one directed node pair.
//!
//! Node `from` dials node `to` through this proxy only (its `--peers` entry for `to` is the
//! proxy's address), and that connection carries `from`'s Raft messages to `to` and nothing
//! else: peer connections are one-way at the Raft level. So cutting the link `from -> to` loses
//! exactly what `from` says to `to`, which makes one-way partitions, bridges and isolated
//! leaders simple combinations of links, without root or iptables.
//!
//! A cut link either stalls (bytes are held, as TCP retransmitting through a partition would;
//! they arrive after the heal unless the connection died meanwhile) or resets (every connection
//! is closed and new ones are closed on accept until the heal). A slow link delays every chunk
//! it forwards.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the pumps and the acceptor sleep between looks at the link state.
const POLL: Duration = Duration::from_millis(10);
/// Bytes forwarded per read; also the unit a slow link delays.
const CHUNK_BYTES: usize = 64 << 10;
/// Connections through one link at a time; more are closed on accept (a node redials).
const MAX_CONNECTIONS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Stall,
    Reset,
}

#[derive(Debug, Default)]
struct State {
    cut: Option<Cut>,
    delay: Duration,
    /// Open connections (both sockets), closed on a reset.
    conns: Vec<(TcpStream, TcpStream, Arc<AtomicBool>)>,
}

/// One directed link, listening on its own loopback port until dropped.
pub struct Link {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts forwarding connections on a fresh loopback port to `target`.
    pub fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::spawn(move || accept_loop(listener, target, state, stop))
        };
        Link {
            port,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn cut(&self, how: Cut) {
        let mut s = lock(&self.state);
        s.cut = Some(how);
        if how == Cut::Reset {
            close_all(&mut s);
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Restores a clean link: no cut, no delay.
    pub fn heal(&self) {
        let mut s = lock(&self.state);
        s.cut = None;
        s.delay = Duration::ZERO;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        close_all(&mut lock(&self.state));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn close_all(s: &mut State) {
    for (a, b, done) in s.conns.drain(..) {
        done.store(true, Ordering::SeqCst);
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                thread::sleep(POLL);
                continue;
            }
        };
        {
            let mut s = lock(&state);
            s.conns.retain(|(_, _, done)| !done.load(Ordering::SeqCst));
            if s.cut == Some(Cut::Reset) || s.conns.len() >= MAX_CONNECTIONS {
                continue; // dropping `client` closes it
            }
        }
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        }
        let done = Arc::new(AtomicBool::new(false));
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        lock(&state).conns.push((c3, s3, done.clone()));
        for (src, dst) in [(client, s2), (server, c2)] {
            let (state, stop, done) = (state.clone(), stop.clone(), done.clone());
            thread::spawn(move || pump(src, dst, &state, &stop, &done));
        }
    }
}

/// Copies `src` to `dst` while the link allows it; ends both sockets when either side ends.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    state: &Mutex<State>,
    stop: &AtomicBool,
    done: &AtomicBool,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let ended = |done: &AtomicBool| done.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst);
    'outer: while !ended(done) {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Hold the chunk while the link is stalled; a reset or the end of the run drops it.
        let delay = loop {
            if ended(done) {
                break 'outer;
            }
            let s = lock(state);
            if s.cut.is_none() {
                break s.delay;
            }
            drop(s);
            thread::sleep(POLL);
        };
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    let _ = src.shutdown(Shutdown::Both);
    let _ = dst.shutdown(Shutdown::Both);
}

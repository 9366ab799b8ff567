//! `vireo-replay`: the CPU floor of a libvirt-protocol daemon, for the CPU column of
//! `compare-libvirtd.sh`.
//!
//! The CPU target of issue 3 compares vireod's CPU per workload with libvirtd's while
//! libvirt-python drives both, one call at a time. Every call then costs any daemon a
//! wake-up, a read, a write that wakes the client and a sleep, whatever the daemon does
//! in between. This program measures that part alone: it answers every call with a
//! reply recorded earlier from a real daemon and does nothing else, so its CPU per
//! workload is what no daemon on this machine can go below.
//!
//! * `vireo-replay record --listen SOCK --upstream DAEMON_SOCK --table FILE`: a proxy
//!   that forwards each call to the daemon and stores the first reply of every
//!   (program, procedure) in FILE.
//! * `vireo-replay serve --listen SOCK --table FILE`: answers each call with the stored
//!   reply for its procedure, the serial patched in; one thread per connection, blocking
//!   reads and one write per reply. A procedure not in the table closes the connection.
//!
//! * `--spin-us N` (serve): busy-waits N µs before each reply, a daemon whose every call
//!   takes N µs of work. With it the floor shows what a *slow* reply costs beyond its
//!   own time on this machine (benches/README.md: the client has gone to sleep, and its
//!   vCPU must be woken).
//!
//! Events and streams are not replayed (a replayed client gets no event), so only
//! call-and-reply workloads are measured with it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Replays recorded libvirt RPC replies: the CPU floor of a daemon")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Proxy to a real daemon and record the first reply of every procedure.
    Record {
        /// The socket to listen on.
        #[arg(long)]
        listen: PathBuf,
        /// The daemon's socket.
        #[arg(long)]
        upstream: PathBuf,
        /// Where the replies are written (frames back to back).
        #[arg(long)]
        table: PathBuf,
    },
    /// Answer every call from the recorded table.
    Serve {
        /// The socket to listen on.
        #[arg(long)]
        listen: PathBuf,
        /// The recorded replies.
        #[arg(long)]
        table: PathBuf,
        /// Busy-wait this many microseconds before each reply (simulated work).
        #[arg(long, default_value_t = 0)]
        spin_us: u64,
    },
}

/// Largest frame accepted (libvirt's limit).
const MAX_FRAME: usize = 32 << 20;
/// Header: length, program, version, procedure, type, serial, status.
const HEADER: usize = 28;

/// Reads one frame (length word included).
fn read_frame(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if !(HEADER..=MAX_FRAME).contains(&n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut buf = vec![0u8; n];
    buf[..4].copy_from_slice(&len);
    s.read_exact(&mut buf[4..])?;
    Ok(buf)
}

fn word(f: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]])
}

/// (program, procedure) of a frame.
fn key(f: &[u8]) -> (u32, u32) {
    (word(f, 4), word(f, 12))
}

type Table = Arc<Mutex<HashMap<(u32, u32), Vec<u8>>>>;

fn load(path: &Path) -> io::Result<Table> {
    let data = std::fs::read(path)?;
    let mut t = HashMap::new();
    let mut i = 0;
    while i + HEADER <= data.len() {
        let n = word(&data, i) as usize;
        if n < HEADER || i + n > data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "torn table"));
        }
        t.insert(key(&data[i..]), data[i..i + n].to_vec());
        i += n;
    }
    Ok(Arc::new(Mutex::new(t)))
}

fn record(mut client: UnixStream, upstream: &Path, table: &Table, out: &Path) -> io::Result<()> {
    let mut up = UnixStream::connect(upstream)?;
    loop {
        let call = match read_frame(&mut client) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        up.write_all(&call)?;
        let reply = read_frame(&mut up)?;
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(slot) = t.entry(key(&reply)) {
            slot.insert(reply.clone());
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(out)?
                .write_all(&reply)?;
        }
        drop(t);
        client.write_all(&reply)?;
    }
}

fn serve(mut client: UnixStream, table: &Table, spin: Duration) -> io::Result<()> {
    loop {
        let call = match read_frame(&mut client) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let t = table.lock().unwrap_or_else(|e| e.into_inner());
        let Some(reply) = t.get(&key(&call)) else {
            let (prog, proc) = key(&call);
            return Err(io::Error::other(format!(
                "no recorded reply for program {prog:#x} procedure {proc}"
            )));
        };
        let mut reply = reply.clone();
        drop(t);
        reply[20..24].copy_from_slice(&call[20..24]);
        if !spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < spin {
                std::hint::spin_loop();
            }
        }
        client.write_all(&reply)?;
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let (listen, table, upstream_out, spin) = match args.mode {
        Mode::Record {
            listen,
            upstream,
            table,
        } => {
            let _ = std::fs::remove_file(&table);
            (listen, Table::default(), Some((upstream, table)), 0)
        }
        Mode::Serve {
            listen,
            table,
            spin_us,
        } => (listen, load(&table)?, None, spin_us),
    };
    let spin = Duration::from_micros(spin);
    let _ = std::fs::remove_file(&listen);
    let listener = UnixListener::bind(&listen)?;
    for conn in listener.incoming() {
        let conn = conn?;
        let table = table.clone();
        let upstream_out = upstream_out.clone();
        std::thread::spawn(move || {
            let r = match &upstream_out {
                Some((up, out)) => record(conn, up, &table, out),
                None => serve(conn, &table, spin),
            };
            if let Err(e) = r {
                eprintln!("vireo-replay: connection ended: {e}");
            }
        });
    }
    Ok(())
}

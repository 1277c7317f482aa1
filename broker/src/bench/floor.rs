//! The `floor` scenario: what this host's kernel alone takes to carry a small message over
//! loopback TCP and back, with no server in the way. Two shapes, both with blocking sockets
//! and one thread per party (a thread is woken like a process):
//!
//! - direct: client ↔ echo over TCP;
//! - relayed: client ↔ relay over TCP, relay ↔ echo over a Unix socket pair: the shape of
//!   bench client ↔ broker ↔ worker, without HTTP, JSON, Lua or an async runtime.
//!
//! Where waking an idle CPU is slow (a guest with halt polling off), these wake-ups are most of
//! the action round trip; this puts the server's own share in view. It needs no server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::report::{Latencies, Row};

/// Bytes per message (about one click's frame).
const MESSAGE: usize = 64;
/// Round trips run before the measured ones (thread start-up, first faults).
const WARM_UP: usize = 200;

/// Both rows: `floor.direct` and `floor.relayed`, `round_trips` measured each.
pub fn floor(round_trips: usize) -> Result<Vec<Row>, String> {
    let note = halt_polling();
    let direct = measure(round_trips, false).map_err(|e| format!("floor (direct): {e}"))?;
    let relayed = measure(round_trips, true).map_err(|e| format!("floor (relayed): {e}"))?;
    Ok(vec![
        Row::latency(
            "floor.direct",
            "host floor: TCP round trip, 64 B, 2 threads",
            &direct,
            note.clone(),
        ),
        Row::latency(
            "floor.relayed",
            "host floor: relayed over a Unix socket, 3 threads",
            &relayed,
            note,
        ),
    ])
}

fn measure(round_trips: usize, relayed: bool) -> std::io::Result<Latencies> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (tcp, _) = listener.accept()?;
        tcp.set_nodelay(true)?;
        if !relayed {
            return echo(tcp);
        }
        let (mut near, far) = UnixStream::pair()?;
        let echoing = std::thread::spawn(move || echo(far));
        let mut tcp = tcp;
        let mut buf = [0u8; MESSAGE];
        while read_message(&mut tcp, &mut buf)? {
            near.write_all(&buf)?;
            if !read_message(&mut near, &mut buf)? {
                break;
            }
            tcp.write_all(&buf)?;
        }
        drop(near);
        echoing.join().unwrap_or(Ok(()))
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let mut latencies = Latencies::default();
    let mut buf = [7u8; MESSAGE];
    for i in 0..WARM_UP + round_trips {
        let started = Instant::now();
        client.write_all(&buf)?;
        client.read_exact(&mut buf)?;
        if i >= WARM_UP {
            latencies.record(started.elapsed());
        }
    }
    drop(client);
    server
        .join()
        .map_err(|_| std::io::Error::other("the echo thread panicked"))??;
    Ok(latencies)
}

/// Sends back every message until the peer closes.
fn echo<S: Read + Write>(mut stream: S) -> std::io::Result<()> {
    let mut buf = [0u8; MESSAGE];
    while read_message(&mut stream, &mut buf)? {
        stream.write_all(&buf)?;
    }
    Ok(())
}

/// One whole message; false at the peer's close.
fn read_message(stream: &mut impl Read, buf: &mut [u8; MESSAGE]) -> std::io::Result<bool> {
    match stream.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The guest's halt polling, where the kernel has it (`cpuidle-haltpoll`): with it off, every
/// wake-up of an idle vCPU is an exit to the host, tens of µs.
fn halt_polling() -> String {
    match std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Ok(ns) => format!("guest_halt_poll_ns {}", ns.trim()),
        Err(_) => String::new(),
    }
}

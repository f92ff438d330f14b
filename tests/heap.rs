//! The heap proof: the real binary allocates nothing while it serves.
//!
//! The binary counts every allocation of its process (a counting global
//! allocator, `src/host/heap.rs`) and prints on exit how many happened before
//! it printed `tapstack: ready` and how many after:
//!
//! ```text
//! heap: 450 allocations (93.1 KiB) at start-up, 0 while serving
//! ```
//!
//! The test runs it with both observers on (`--pcap FILE` and `--trace`, the
//! host glue's busiest per-frame path), drives every service over IPv4 and
//! IPv6 with exact-byte checks, stops it with SIGINT and reads that line.
//! Needs root, like the TAP tests (see `tests/support/netns.rs`).

#[path = "support/client.rs"]
mod client;
#[path = "support/netns.rs"]
mod netns;

use client::{CONNECT_TIMEOUT, IO_TIMEOUT, STACK_V4, STACK_V6, XorShift, connect, ping};

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use netns::{EXIT_TIMEOUT, Netns, StackProcess, require_tool};
use tapstack::config::{
    CHARGEN_PORT, DISCARD_PORT, ECHO_PORT, HTTP_PORT, TCP_SOCKETS_PER_SERVICE, UPPER_PORT,
};
use tapstack::services::chargen;

/// A TCP and UDP port no service listens on.
const CLOSED_PORT: u16 = 8;

/// Bytes per direction of each bulk transfer: many windows' worth, so flow
/// control, window updates and retransmission timers all run.
const BULK: usize = 512 * 1024;
/// Back-to-back connections: each one opens, serves and re-arms a pool slot.
const CONNECTS: usize = 200;

/// Where the test sends: both families of the stack's addresses.
fn both(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::from((STACK_V4, port)),
        SocketAddr::from((STACK_V6, port)),
    ]
}

/// What a request/reply service owes for `request`, computed independently
/// of the stack's code: echo returns it, upper-case maps ASCII a-z to A-Z only.
fn reply(port: u16, request: &[u8]) -> Vec<u8> {
    match port {
        ECHO_PORT => request.to_vec(),
        UPPER_PORT => request.to_ascii_uppercase(),
        _ => unreachable!("port {port} is not a request/reply service"),
    }
}

/// Sends `request`, half-closes, reads to EOF and checks the exact reply.
fn request_reply(addr: SocketAddr, request: &[u8]) {
    let mut stream = connect(addr);
    stream
        .write_all(request)
        .and_then(|()| stream.shutdown(Shutdown::Write))
        .unwrap_or_else(|err| panic!("{addr}: send: {err}"));
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .unwrap_or_else(|err| panic!("{addr}: read: {err}"));
    assert_eq!(got, reply(addr.port(), request), "{addr}");
}

/// Streams [`BULK`] pseudo-random bytes to `addr` from one thread while this
/// one reads the reply, half-closes after the last byte, and checks that the
/// reply is exactly the service's transform of them, then EOF.
fn bulk(addr: SocketAddr, seed: u64) {
    let stream = connect(addr);
    let mut writer = stream.try_clone().expect("clone the stream for the writer");
    thread::scope(|scope| {
        scope.spawn(move || {
            let mut source = XorShift::new(seed);
            let mut chunk = [0u8; 16 * 1024];
            for start in (0..BULK).step_by(chunk.len()) {
                let n = chunk.len().min(BULK - start);
                source.fill(&mut chunk[..n]);
                writer
                    .write_all(&chunk[..n])
                    .unwrap_or_else(|err| panic!("{addr}: write at byte {start}: {err}"));
            }
            writer
                .shutdown(Shutdown::Write)
                .unwrap_or_else(|err| panic!("{addr}: shutdown(Write): {err}"));
        });
        let mut got = Vec::with_capacity(BULK);
        (&stream)
            .read_to_end(&mut got)
            .unwrap_or_else(|err| panic!("{addr}: read after {} bytes: {err}", got.len()));
        let mut sent = vec![0u8; BULK];
        XorShift::new(seed).fill(&mut sent);
        let want = reply(addr.port(), &sent);
        assert_eq!(got.len(), want.len(), "{addr}: bytes back");
        if let Some(at) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!(
                "{addr}: byte {at} is {:#04x}, expected {:#04x}",
                got[at], want[at]
            );
        }
    });
}

/// A UDP socket of the right family, connected to `addr`, with a timeout.
fn udp(addr: SocketAddr) -> UdpSocket {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).expect("bind a UDP socket");
    socket
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    socket
        .connect(addr)
        .unwrap_or_else(|err| panic!("connect UDP to {addr}: {err}"));
    socket
}

/// Sends `request` as one datagram and returns the one datagram that comes back.
fn datagram(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    let addr = socket.peer_addr().expect("a connected socket has a peer");
    socket
        .send(request)
        .unwrap_or_else(|err| panic!("UDP {addr}: send: {err}"));
    let mut buf = [0u8; 2048];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|err| panic!("UDP {addr}: no reply to {} bytes: {err}", request.len()));
    buf[..n].to_vec()
}

/// `GET path` over HTTP/1.1; checks a complete 200 response (status line,
/// `Content-Type`, a `Content-Length` equal to the body) and returns the body.
fn http_get(addr: SocketAddr, path: &str, content_type: &str) -> String {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.ip()
    )
    .unwrap_or_else(|err| panic!("{addr}: send GET {path}: {err}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|err| panic!("{addr}: read GET {path}: {err}"));
    let raw = String::from_utf8(raw).unwrap_or_else(|err| panic!("GET {path}: not UTF-8: {err}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no end of head in {raw:?}"));
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n"),
        "GET {path}: {head:?}"
    );
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("GET {path}: no {name} in {head:?}"))
    };
    assert!(
        header("Content-Type").starts_with(content_type),
        "GET {path}: {head:?}"
    );
    assert_eq!(
        header("Content-Length"),
        body.len().to_string(),
        "GET {path}: Content-Length against the body"
    );
    body.to_owned()
}

/// Expects `connect` to `addr` to be refused at once (a TCP reset).
fn refused(addr: SocketAddr, why: &str) {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(err) => panic!("{addr} ({why}): expected a refusal, got: {err}"),
        Ok(_) => panic!("{addr} ({why}): connected, expected a refusal"),
    }
}

/// Every service, both families, every kind of exchange: what the stack
/// must serve without allocating.
fn drive_every_service() {
    // Echo and upper-case, TCP: a line each, then a bulk transfer each.
    for port in [ECHO_PORT, UPPER_PORT] {
        for addr in both(port) {
            request_reply(addr, b"Hello, World 123! \xc3\xa9t\xc3\xa9\r\n");
        }
    }
    for (n, addr) in both(ECHO_PORT)
        .into_iter()
        .chain(both(UPPER_PORT))
        .enumerate()
    {
        bulk(addr, 0x4ea9_0000 + n as u64);
    }

    // Echo and upper-case, UDP: a short datagram and a full-size one.
    let mut big = vec![0u8; 1400];
    XorShift::new(0x4ea9_1000).fill(&mut big);
    for port in [ECHO_PORT, UPPER_PORT] {
        for addr in both(port) {
            let socket = udp(addr);
            for request in [&b"MixedCase udp\n"[..], &big] {
                assert_eq!(
                    datagram(&socket, request),
                    reply(port, request),
                    "UDP {addr}"
                );
            }
        }
    }

    // Discard: everything taken, nothing answered, then EOF after our FIN.
    for addr in both(DISCARD_PORT) {
        let mut stream = connect(addr);
        let mut data = vec![0u8; 64 * 1024];
        XorShift::new(0x4ea9_2000).fill(&mut data);
        stream
            .write_all(&data)
            .and_then(|()| stream.shutdown(Shutdown::Write))
            .unwrap_or_else(|err| panic!("{addr}: send: {err}"));
        let mut got = Vec::new();
        stream
            .read_to_end(&mut got)
            .unwrap_or_else(|err| panic!("{addr}: read: {err}"));
        assert!(
            got.is_empty(),
            "{addr}: discard answered {} bytes",
            got.len()
        );
        udp(addr)
            .send(b"thrown away")
            .unwrap_or_else(|err| panic!("UDP {addr}: send: {err}"));
    }

    // Chargen, TCP: byte i of the stream is PATTERN[i % PERIOD]; the client
    // then closes with unread data in flight (a reset, another path).
    for addr in both(CHARGEN_PORT) {
        let mut stream = connect(addr);
        let mut got = vec![0u8; 3 * chargen::PERIOD + 100];
        stream
            .read_exact(&mut got)
            .unwrap_or_else(|err| panic!("{addr}: read: {err}"));
        if let Some(i) = (0..got.len()).find(|&i| got[i] != chargen::PATTERN[i % chargen::PERIOD]) {
            panic!(
                "{addr}: byte {i} is {:#04x}, expected {:#04x}",
                got[i],
                chargen::PATTERN[i % chargen::PERIOD]
            );
        }
    }
    // Chargen, UDP: the n-th datagram the service gets is answered with line n.
    for (n, addr) in both(CHARGEN_PORT).into_iter().enumerate() {
        let socket = udp(addr);
        assert_eq!(
            datagram(&socket, b"a line, please"),
            chargen::line(n),
            "UDP {addr}"
        );
    }

    // The status page, HTML and JSON, over both families.
    for addr in both(HTTP_PORT) {
        let page = http_get(addr, "/", "text/html");
        assert!(
            page.contains("<h2>Counters</h2>"),
            "GET / from {addr}: {page:?}"
        );
        let json = http_get(addr, "/stats.json", "application/json");
        assert!(
            json.trim_end().starts_with('{') && json.trim_end().ends_with('}'),
            "GET /stats.json from {addr}: {json:?}"
        );
    }

    // Many connections, one after the other: each opens, is served, closes
    // and frees its slot for the next.
    for i in 0..CONNECTS {
        let [v4, v6] = both(if i % 2 == 0 { ECHO_PORT } else { UPPER_PORT });
        let addr = if i % 4 < 2 { v4 } else { v6 };
        request_reply(addr, format!("connection {i}\n").as_bytes());
    }

    // Refusals: a closed port (TCP reset; UDP port unreachable), and a full pool.
    for addr in both(CLOSED_PORT) {
        refused(addr, "closed port");
        let socket = udp(addr);
        socket
            .send(b"anyone?")
            .unwrap_or_else(|err| panic!("UDP {addr}: send: {err}"));
        let mut buf = [0u8; 64];
        match socket.recv(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
            other => panic!("UDP {addr}: expected port unreachable, got {other:?}"),
        }
    }
    let pool: Vec<TcpStream> = (0..TCP_SOCKETS_PER_SERVICE)
        .map(|i| {
            let mut stream = connect(both(ECHO_PORT)[i % 2]);
            let probe = format!("slot {i}\n");
            stream
                .write_all(probe.as_bytes())
                .unwrap_or_else(|err| panic!("slot {i}: write: {err}"));
            let mut back = vec![0u8; probe.len()];
            stream
                .read_exact(&mut back)
                .unwrap_or_else(|err| panic!("slot {i}: read: {err}"));
            assert_eq!(back, probe.as_bytes(), "slot {i}");
            stream
        })
        .collect();
    for addr in both(ECHO_PORT) {
        refused(addr, "pool full");
    }
    drop(pool);
}

/// Removes a directory on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The numbers of the exit line `heap: S allocations (...) at start-up,
/// N while serving` (or `N (...) while serving`).
fn heap_line(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("heap: "))
        .unwrap_or_else(|| panic!("no `heap:` line on stderr:\n{stderr}"));
    let number = |text: &str| -> u64 {
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number in {text:?} of {line:?}"))
    };
    let (start_up, serving) = line
        .strip_prefix("heap: ")
        .and_then(|rest| rest.split_once(" at start-up, "))
        .filter(|(_, serving)| serving.ends_with(" while serving"))
        .unwrap_or_else(|| panic!("unexpected heap line {line:?}"));
    (number(start_up), number(serving))
}

/// With `--pcap FILE` and `--trace` on, the binary serves every service
/// (echo and upper-case over TCP and UDP with byte-exact replies and 512 KiB
/// bulk transfers, discard, chargen, ping and ping -6, the status page's
/// HTML and JSON, 200 back-to-back connections, refusals by a closed port
/// and by a full pool), all over IPv4 and IPv6, and after SIGINT its exit
/// line reports exactly 0 allocations while serving (and more than 0 at
/// start-up: the counter counts).
#[test]
fn no_heap_allocation_while_serving_every_service() {
    require_tool("ping");
    let ns = Netns::new("heap");
    let dir = TempDir(std::env::temp_dir().join(format!("{}-pcap", ns.name())));
    std::fs::create_dir(&dir.0).unwrap_or_else(|err| panic!("create {}: {err}", dir.0.display()));
    let pcap = dir.0.join("heap.pcap");
    let pcap_arg = pcap.to_str().expect("a temporary path is UTF-8");
    let stack = StackProcess::start(&ns, &["--pcap", pcap_arg, "--trace"]);

    ns.run(drive_every_service);
    ping(&ns, &["-c", "3", "-i", "0.2", "-W", "5", "192.168.69.1"], 3);
    ping(
        &ns,
        &["-6", "-c", "3", "-i", "0.2", "-W", "5", "fdaa::1"],
        3,
    );

    // Stop it with SIGINT and wait for its last line: the exit summary.
    let pid = libc::pid_t::try_from(stack.pid()).expect("a PID fits pid_t");
    // SAFETY: kill has no memory effects; the PID is our own child, not yet
    // reaped (StackProcess reaps it only in stop or drop), so not reused.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGINT) },
        0,
        "kill -INT {pid}"
    );
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while !stack.stderr().contains("tapstack: stopped by SIGINT") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let stderr = stack.stderr();
    let stdout = stack.stdout();
    let status = stack.stop_with(libc::SIGINT);
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");

    // The observers really ran on every frame: the trace shows both ways,
    // and the capture holds far more than its 24-byte header.
    for needle in [" IN ", " OUT ", "tcp ", "udp ", "icmp"] {
        assert!(stdout.contains(needle), "no {needle:?} in the trace");
    }
    let captured = std::fs::metadata(&pcap).map_or(0, |m| m.len());
    assert!(captured > 1_000_000, "pcap only {captured} bytes");

    let (start_up, serving) = heap_line(&stderr);
    assert!(start_up > 0, "the counter counted nothing at start-up");
    assert_eq!(serving, 0, "allocations while serving; stderr:\n{stderr}");
}

//! Seeing the layers, end to end: what the binary shows of its traffic is
//! checked against the traffic itself.
//!
//! - the pcap capture (`--pcap FILE`, `--pcap -`) is read back by tshark:
//!   every frame dissects cleanly, every layer of every service is in it, and
//!   the capture holds exactly the frames the counters counted;
//! - the counters and the socket table (`/stats.json` and the `Counters:`
//!   table printed at exit) equal known traffic exactly;
//! - the status page answers curl with the right status codes and headers,
//!   survives a flood of held connections, and renders in headless Chromium;
//! - under injected drops and corruption, TCP still delivers every byte and
//!   UDP never delivers a corrupted datagram;
//! - bad `--pcap` and fault values are refused with one line.
//!
//! Each test makes its own network namespace and talks to the stack from
//! inside it only (see `tests/support/netns.rs`). They need root and the
//! tools of `docs/testing.md` plus `curl` and `chromium`, and fail (never
//! skip) without them.

#[path = "support/client.rs"]
mod client;
#[path = "support/netns.rs"]
mod netns;

use client::{
    CONNECT_TIMEOUT, IO_TIMEOUT, STACK_V4, STACK_V6, TOOL_TIMEOUT, XorShift, assert_error, connect,
    ping, shown,
};

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use netns::{
    EXIT_TIMEOUT, Netns, READY, READY_TIMEOUT, StackProcess, Tool, binary, require_tool,
    run_bounded,
};
use tapstack::config::{
    BULK_SOCKETS, ECHO_PORT, HTTP_PORT, HTTP_SOCKETS, TCP_SOCKETS_PER_SERVICE, UPPER_PORT,
};

/// The host side's addresses in the default contract, as text.
const HOST_V4: &str = "192.168.69.100";
const HOST_V6: &str = "fdaa::100";
/// The stack's MAC as tshark prints it: frames from it are "out".
const STACK_MAC: &str = "02:00:00:00:00:01";
/// A port nothing listens on (daytime, RFC 867, which the stack does not run).
const CLOSED_PORT: u16 = 13;

/// Safety bound for one headless Chromium run (start-up included).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The first 8 bytes of a pcap file (magic 0xa1b2c3d4, microseconds) in
/// either byte order, and the size of its global and record headers.
const PCAP_MAGIC_LE: [u8; 4] = [0xd4, 0xc3, 0xb2, 0xa1];
const PCAP_MAGIC_BE: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];
const PCAP_GLOBAL_HEADER: usize = 24;
const PCAP_RECORD_HEADER: usize = 16;
/// The PNG signature (PNG spec, 5.2).
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((STACK_V4, port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((STACK_V6, port))
}

/// Bytes as tshark prints a byte field: lower-case hex, no separators.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Numbers the temporary directories of this process.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under `$TMPDIR`, removed with its contents on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tst-{}-{n}-layers-{tag}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A piece of the stack's output, from the thread that reads that stream.
enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How a [`Stack`] ended: its status and everything it wrote.
struct Exited {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// A `tapstack --create` run inside a namespace whose whole output is kept
/// after it exits: the `Counters:` table it prints at exit, and with
/// `--pcap -` the capture on stdout and the banner on stderr. (The harness's
/// `StackProcess` waits for the ready line on stdout and gives back only the
/// exit status.) Stopped by its own PID on drop: SIGTERM, a bounded wait,
/// SIGKILL.
struct Stack {
    ns: String,
    child: Child,
    chunks: mpsc::Receiver<Chunk>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Stack {
    /// Starts `tapstack --create args...` in `ns` and returns once it has
    /// printed the ready line, on stdout or (with `--pcap -`) on stderr.
    fn start(ns: &Netns, args: &[&str]) -> Self {
        let mut command = ns.command(binary());
        command
            .arg("--create")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // The stack gets SIGTERM if the thread that started it dies.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn `ip netns exec ... tapstack`");
        let (tx, chunks) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        pump(stdout, tx.clone(), Chunk::Stdout);
        pump(stderr, tx, Chunk::Stderr);
        let mut stack = Self {
            ns: ns.name().to_owned(),
            child,
            chunks,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        stack.wait_for(
            "print the ready line",
            |out, err| contains(out, READY.as_bytes()) || contains(err, READY.as_bytes()),
            READY_TIMEOUT,
        );
        stack
    }

    /// Reads output until `done(stdout, stderr)` holds; fails the test with
    /// what it got if that takes longer than `timeout` or the stack exits.
    fn wait_for(&mut self, what: &str, done: impl Fn(&[u8], &[u8]) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !done(&self.stdout, &self.stderr) {
            match self
                .chunks
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Chunk::Stdout(bytes)) => self.stdout.extend_from_slice(&bytes),
                Ok(Chunk::Stderr(bytes)) => self.stderr.extend_from_slice(&bytes),
                Err(why) => panic!(
                    "tapstack in {} did not {what} ({why:?} after {timeout:?})\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}",
                    self.ns,
                    self.stdout.len(),
                    String::from_utf8_lossy(&self.stdout),
                    String::from_utf8_lossy(&self.stderr)
                ),
            }
        }
    }

    /// What it wrote to stdout so far (without waiting).
    fn stdout_now(&mut self) -> &[u8] {
        while let Ok(chunk) = self.chunks.try_recv() {
            match chunk {
                Chunk::Stdout(bytes) => self.stdout.extend_from_slice(&bytes),
                Chunk::Stderr(bytes) => self.stderr.extend_from_slice(&bytes),
            }
        }
        &self.stdout
    }

    /// Sends `signal`, waits for the exit (SIGKILL after [`EXIT_TIMEOUT`]) and
    /// returns the status with all the output.
    fn stop(mut self, signal: libc::c_int) -> Exited {
        let status = terminate(&mut self.child, signal);
        // The process has exited, so its pipes reach EOF; the bound only
        // guards against a grandchild that kept them open.
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while let Ok(chunk) = self
            .chunks
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            match chunk {
                Chunk::Stdout(bytes) => self.stdout.extend_from_slice(&bytes),
                Chunk::Stderr(bytes) => self.stderr.extend_from_slice(&bytes),
            }
        }
        Exited {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        terminate(&mut self.child, libc::SIGTERM);
    }
}

/// Reads `from` to its end on a thread, sending each piece as `wrap(piece)`.
fn pump(mut from: impl Read + Send + 'static, to: mpsc::Sender<Chunk>, wrap: fn(Vec<u8>) -> Chunk) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.send(wrap(buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
}

/// Sends `signal` to `child` unless it has exited, waits at most
/// [`EXIT_TIMEOUT`], then SIGKILL. Returns how it ended.
fn terminate(child: &mut Child, signal: libc::c_int) -> ExitStatus {
    if let Some(status) = child.try_wait().expect("query a child's status") {
        return status;
    }
    // Not reaped yet, so the PID is still this child's.
    let pid = libc::pid_t::try_from(child.id()).expect("a PID fits pid_t");
    // SAFETY: kill has no memory effects; the PID is our own unreaped child.
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("query a child's status") {
            return status;
        }
        thread::sleep(Duration::from_millis(5));
    }
    eprintln!("pid {pid} ignored signal {signal} for {EXIT_TIMEOUT:?}: SIGKILL");
    let _ = child.kill();
    child.wait().expect("wait for a killed child")
}

/// Asserts a clean stop: exit code 0 after the signal, the exit table
/// printed, no panic.
fn assert_clean_exit(exited: &Exited, what: &str) {
    assert_eq!(
        exited.status.code(),
        Some(0),
        "{what}: tapstack exited with {}; stderr:\n{}",
        exited.status,
        exited.stderr
    );
    assert!(
        exited.stderr.contains("Counters:") && !exited.stderr.contains("panicked"),
        "{what}: stderr:\n{}",
        exited.stderr
    );
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// `printf REQUEST | nc -N ADDR PORT`: checks the exact reply, and that nc
/// exits by itself (the stack closed after the half-close).
fn nc_tcp(ns: &Netns, addr: &str, port: u16, request: &[u8], reply: &[u8]) {
    let mut nc = ns.command("nc");
    nc.args(["-N", "-w", "5", addr, &port.to_string()]);
    let out = run_bounded(nc, request, TOOL_TIMEOUT);
    assert!(
        out.status.success() && out.stdout == reply,
        "nc -N {addr} {port}: exit {}, stdout {} (expected {}), stderr {}",
        out.status,
        shown(&out.stdout),
        shown(reply),
        shown(&out.stderr)
    );
}

/// One datagram with `nc -u`: checks the exact reply. OpenBSD nc never exits
/// on its own in UDP mode, so it is stopped once the reply is in.
fn nc_udp(ns: &Netns, addr: &str, port: u16, request: &[u8], reply: &[u8]) {
    let mut command = ns.command("nc");
    command.args(["-u", "-w", "5", addr, &port.to_string()]);
    let mut nc = Tool::spawn(command);
    nc.send(request);
    let got = nc.read_until(|out| out.len() >= reply.len(), TOOL_TIMEOUT);
    assert_eq!(shown(&got), shown(reply), "nc -u {addr} {port}");
    nc.stop();
}

/// Fails unless a connect to `addr` is refused at once (RST), not accepted
/// and not timed out.
fn assert_refused(addr: SocketAddr, what: &str) {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(err) => panic!("{what}: connect {addr} should be refused (RST), got: {err}"),
        Ok(_) => panic!("{what}: connect {addr} succeeded"),
    }
}

/// Connects to echo at `addr`, sends `request`, half-closes, reads to EOF
/// and checks the exact reply: one connection opened and closed with FIN in
/// both directions.
fn tcp_echo_once(addr: SocketAddr, request: &[u8]) {
    let mut stream = connect(addr);
    stream
        .write_all(request)
        .unwrap_or_else(|err| panic!("{addr}: write: {err}"));
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|err| panic!("{addr}: shutdown(Write): {err}"));
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .unwrap_or_else(|err| panic!("{addr}: read: {err}"));
    assert_eq!(shown(&reply), shown(request), "{addr}");
}

/// A UDP socket connected to `addr`, with a read timeout.
fn udp_socket(addr: SocketAddr, timeout: Duration) -> UdpSocket {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).expect("bind a UDP socket");
    socket.connect(addr).expect("connect a UDP socket");
    socket
        .set_read_timeout(Some(timeout))
        .expect("set a read timeout");
    socket
}

/// Sends `request` to echo on `socket` and checks that exactly it comes back.
fn udp_echo_once(socket: &UdpSocket, request: &[u8]) {
    socket.send(request).expect("send a datagram");
    let mut reply = [0u8; 2048];
    let n = socket
        .recv(&mut reply)
        .unwrap_or_else(|err| panic!("no reply to {}: {err}", shown(request)));
    assert_eq!(shown(&reply[..n]), shown(request));
}

/// `curl -sS ... args`, inside `ns`, never through a proxy, bounded.
fn curl(ns: &Netns, args: &[&str]) -> Output {
    require_tool("curl");
    let mut command = ns.command("curl");
    command
        .args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .args(args);
    run_bounded(command, b"", TOOL_TIMEOUT)
}

/// An HTTP response as received: status, head (status line and headers),
/// body.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// Splits a raw response (as `curl -i` or `nc` print it).
    fn parse(raw: &[u8], what: &str) -> Self {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no end of head in {}", shown(raw)));
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 "), "{what}: {head:?}");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no status code in {head:?}"));
        Self {
            status,
            head,
            body: raw[end + 4..].to_vec(),
        }
    }

    /// A header's value (the first one of that name), trimmed.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `Content-Length`, which must be there.
    fn content_length(&self, what: &str) -> usize {
        self.header("Content-Length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no Content-Length in {:?}", self.head))
    }

    /// Fails unless the status is `status` and the body is exactly as long
    /// as `Content-Length` says; returns the body as text.
    fn expect(&self, status: u16, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {:?}", self.head);
        assert_eq!(
            self.content_length(what),
            self.body.len(),
            "{what}: Content-Length vs body"
        );
        assert_eq!(
            self.header("Connection"),
            Some("close"),
            "{what}: {:?}",
            self.head
        );
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -i extra... url`: the response, whatever its status.
fn http(ns: &Netns, extra: &[&str], url: &str) -> Response {
    let mut args = vec!["-i"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = curl(ns, &args);
    let what = format!("curl {}", args.join(" "));
    assert!(
        out.status.success(),
        "{what}: exit {}, stderr {}",
        out.status,
        shown(&out.stderr)
    );
    Response::parse(&out.stdout, &what)
}

/// Sends `request` as raw bytes to the status page with `nc -N` and returns
/// the raw answer (the stack closes after answering, so nc exits by itself).
fn raw_http(ns: &Netns, addr: &str, request: &[u8]) -> Vec<u8> {
    let mut nc = ns.command("nc");
    nc.args(["-N", "-w", "5", addr, &HTTP_PORT.to_string()]);
    let out = run_bounded(nc, request, TOOL_TIMEOUT);
    assert!(
        out.status.success(),
        "nc to the status page with {}: exit {}, stderr {}",
        shown(request),
        out.status,
        shown(&out.stderr)
    );
    out.stdout
}

/// `GET /stats.json` with curl over IPv4: the JSON document.
fn stats(ns: &Netns) -> String {
    http(ns, &[], "http://192.168.69.1/stats.json").expect(200, "GET /stats.json")
}

// ---------------------------------------------------------------------------
// Reading what the stack shows: JSON, the exit table, pcap
// ---------------------------------------------------------------------------

/// One byte of a JSON text, failing the test if the text ends early.
fn at(s: &[u8], i: usize) -> u8 {
    *s.get(i)
        .unwrap_or_else(|| panic!("JSON ends early: {}", shown(s)))
}

/// The index just past the string that opens at `start` (a `"`).
fn string_end(s: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while at(s, i) != b'"' {
        if at(s, i) == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index just past the JSON value that starts at `start`: an object or
/// array through its matching bracket, a string through its closing quote,
/// a number or literal up to the next `,`, `}` or `]`.
fn value_end(s: &[u8], start: usize) -> usize {
    match at(s, start) {
        b'"' => string_end(s, start),
        b'{' | b'[' => {
            let mut depth = 0;
            let mut i = start;
            loop {
                match at(s, i) {
                    b'"' => {
                        i = string_end(s, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            start
                + s[start..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']'))
                    .unwrap_or(s.len() - start)
        }
    }
}

/// The members of a JSON object (key, value) or the items of an array
/// ("", value), in order. Enough JSON for the stack's own documents, which
/// hold no white space and no escapes; no dependency needed.
fn children(v: &str) -> Vec<(&str, &str)> {
    let s = v.as_bytes();
    let object = match at(s, 0) {
        b'{' => true,
        b'[' => false,
        _ => panic!("not an object or array: {v:?}"),
    };
    let mut out = Vec::new();
    let mut i = 1;
    while !matches!(at(s, i), b'}' | b']') {
        let key = if object {
            let end = string_end(s, i);
            let key = &v[i + 1..end - 1];
            assert_eq!(at(s, end), b':', "no colon after {key:?} in {v:?}");
            i = end + 1;
            key
        } else {
            ""
        };
        let end = value_end(s, i);
        out.push((key, &v[i..end]));
        i = end;
        if at(s, i) == b',' {
            i += 1;
        }
    }
    out
}

/// The value at `path` in the JSON document `doc`, as JSON text.
fn json<'a>(doc: &'a str, path: &[&str]) -> &'a str {
    let mut v = doc.trim();
    for key in path {
        v = children(v)
            .into_iter()
            .find_map(|(k, value)| (k == *key).then_some(value))
            .unwrap_or_else(|| panic!("no {path:?} in {doc}"));
    }
    v
}

/// The number at `path` in `doc`.
fn json_u64(doc: &str, path: &[&str]) -> u64 {
    let v = json(doc, path);
    v.parse()
        .unwrap_or_else(|_| panic!("{path:?} is {v:?}, not a number"))
}

/// A JSON string's contents.
fn json_str(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// One row of the socket table of `/stats.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocketRow {
    protocol: String,
    local: String,
    remote: String,
    state: String,
    service: String,
    sockets: u64,
}

/// The socket table of a `/stats.json` document.
fn socket_rows(doc: &str) -> Vec<SocketRow> {
    children(json(doc, &["sockets"]))
        .into_iter()
        .map(|(_, row)| {
            let field = |key: &str| json_str(json(row, &[key])).to_owned();
            SocketRow {
                protocol: field("protocol"),
                local: field("local"),
                remote: field("remote"),
                state: field("state"),
                service: field("service"),
                sockets: json_u64(row, &["sockets"]),
            }
        })
        .collect()
}

/// The rows matching `protocol` and `local`.
fn rows_at<'a>(rows: &'a [SocketRow], protocol: &str, local: &str) -> Vec<&'a SocketRow> {
    rows.iter()
        .filter(|r| r.protocol == protocol && r.local == local)
        .collect()
}

/// The `Counters:` table the binary prints at exit, as (counter, in, out)
/// rows: `  layer  counter words...  in  [out]`.
fn exit_counters(stderr: &str) -> Vec<(String, u64, Option<u64>)> {
    let (_, table) = stderr
        .split_once("Counters:\n")
        .unwrap_or_else(|| panic!("no `Counters:` table in stderr:\n{stderr}"));
    let mut rows = Vec::new();
    // The first line is the header (layer counter in out); the table ends
    // at the first line that is not indented.
    for line in table.lines().skip(1) {
        if !line.starts_with("  ") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let numbers = words
            .iter()
            .rev()
            .take_while(|w| w.parse::<u64>().is_ok())
            .count();
        assert!(
            (1..=2).contains(&numbers) && words.len() > numbers + 1,
            "exit table row {line:?}"
        );
        let name = words[1..words.len() - numbers].join(" ");
        let value = |w: &str| w.parse::<u64>().expect("checked above");
        let first = words.len() - numbers;
        let r#in = value(words[first]);
        let out = (numbers == 2).then(|| value(words[first + 1]));
        rows.push((name, r#in, out));
    }
    assert!(!rows.is_empty(), "empty exit table in stderr:\n{stderr}");
    rows
}

/// The (in, out) of the counter called `name` in the exit table (`out` is 0
/// for the one-column rows).
fn counter(rows: &[(String, u64, Option<u64>)], name: &str) -> (u64, u64) {
    rows.iter()
        .find(|(n, ..)| n == name)
        .map(|(_, i, o)| (*i, o.unwrap_or(0)))
        .unwrap_or_else(|| panic!("no {name:?} in the exit table {rows:?}"))
}

/// The complete frames of a pcap stream (classic format, Ethernet), as
/// byte slices; an incomplete last record is left out.
fn pcap_frames(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(
        bytes.len() >= PCAP_GLOBAL_HEADER,
        "{} bytes: no pcap global header",
        bytes.len()
    );
    let read_u32: fn([u8; 4]) -> u32 = match <[u8; 4]>::try_from(&bytes[..4]).expect("4 bytes") {
        PCAP_MAGIC_LE => u32::from_le_bytes,
        PCAP_MAGIC_BE => u32::from_be_bytes,
        _ => panic!("not a pcap stream: it starts with {:02x?}", &bytes[..4]),
    };
    let mut frames = Vec::new();
    let mut i = PCAP_GLOBAL_HEADER;
    while i + PCAP_RECORD_HEADER <= bytes.len() {
        let field = |at: usize| read_u32(bytes[at..at + 4].try_into().expect("4 bytes"));
        let len = field(i + 8) as usize;
        let start = i + PCAP_RECORD_HEADER;
        if start + len > bytes.len() {
            break;
        }
        frames.push(&bytes[start..start + len]);
        i = start + len;
    }
    frames
}

/// True if `frame` is an IPv4 ICMP echo reply (type 0) from the stack.
fn is_icmp_echo_reply_v4(frame: &[u8]) -> bool {
    const ETHERNET: usize = 14;
    frame.len() > ETHERNET + 20
        && frame[12..14] == [0x08, 0x00]
        && frame[ETHERNET + 9] == 1
        && frame[ETHERNET + 12..ETHERNET + 16] == STACK_V4.octets()
        && {
            let ihl = usize::from(frame[ETHERNET] & 0x0f) * 4;
            frame.get(ETHERNET + ihl) == Some(&0)
        }
}

/// `tshark args...` (on the host: it only reads a file), bounded. Fails
/// unless it exits with 0 and without an error about the file.
fn tshark(args: &[&str]) -> String {
    require_tool("tshark");
    let mut command = Command::new("tshark");
    command.args(args);
    let out = run_bounded(command, b"", TOOL_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // tshark's only other stderr line is a warning about running as root.
    assert!(
        out.status.success()
            && !stderr.contains("cut short")
            && !stderr.contains("appears to be damaged")
            && !stderr.contains("isn't a capture file"),
        "tshark {}: exit {}, stderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fields [`captured`] asks tshark for, in order.
const FIELDS: &[&str] = &[
    "eth.src",
    "frame.len",
    "frame.protocols",
    "arp.opcode",
    "icmp.type",
    "icmpv6.type",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.payload",
    "udp.srcport",
    "udp.dstport",
    "udp.payload",
    "http.response.code",
];

/// One frame of a capture as tshark dissects it.
#[derive(Debug)]
struct Captured {
    /// Sent by the stack (from its MAC).
    out: bool,
    len: u64,
    /// The protocol stack, e.g. `eth:ethertype:ipv6:icmpv6:data`.
    protocols: Vec<String>,
    arp_opcode: Option<u16>,
    /// ICMPv4 or ICMPv6 type.
    icmp_type: Option<u8>,
    /// (source port, destination port, flags, payload).
    tcp: Option<(u16, u16, u16, String)>,
    /// (source port, destination port, payload as hex).
    udp: Option<(u16, u16, String)>,
    http_code: Option<u16>,
}

impl Captured {
    /// `ip` or `ipv6`, `arp`: the layer after Ethernet.
    fn network(&self) -> &str {
        self.protocols.get(2).map_or("", String::as_str)
    }

    /// The protocol after the IP header (`tcp`, `udp`, `icmp`, `icmpv6`),
    /// past a Hop-by-Hop options header (`ipv6.hopopts`) as the stack reads it.
    fn transport(&self) -> &str {
        let mut rest = self.protocols.iter().skip(3);
        let first = rest.next().map_or("", String::as_str);
        if first == "ipv6.hopopts" {
            return rest.next().map_or("", String::as_str);
        }
        first
    }

    fn is_ipv6(&self) -> bool {
        self.network() == "ipv6"
    }
}

/// Every frame of the capture `file`, dissected by tshark.
fn captured(file: &str) -> Vec<Captured> {
    let mut args = vec!["-r", file, "-T", "fields", "-E", "occurrence=f"];
    for field in FIELDS {
        args.extend(["-e", field]);
    }
    let text = tshark(&args);
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), FIELDS.len(), "tshark line {line:?}");
            let opt = |i: usize| (!f[i].is_empty()).then_some(f[i]);
            let num = |i: usize| -> Option<u64> {
                opt(i).map(|v| {
                    let parsed = match v.strip_prefix("0x") {
                        Some(h) => u64::from_str_radix(h, 16),
                        None => v.parse(),
                    };
                    parsed.unwrap_or_else(|_| panic!("field {} is {v:?}", FIELDS[i]))
                })
            };
            let port = |i: usize| num(i).map(|p| p as u16);
            Captured {
                out: f[0] == STACK_MAC,
                len: num(1).expect("every frame has a length"),
                protocols: f[2].split(':').map(str::to_owned).collect(),
                arp_opcode: num(3).map(|v| v as u16),
                icmp_type: num(4).or(num(5)).map(|v| v as u8),
                tcp: port(6).map(|src| {
                    (
                        src,
                        port(7).expect("tcp.dstport"),
                        num(8).expect("tcp.flags") as u16,
                        f[9].to_owned(),
                    )
                }),
                udp: port(10).map(|src| (src, port(11).expect("udp.dstport"), f[12].to_owned())),
                http_code: num(13).map(|v| v as u16),
            }
        })
        .collect()
}

/// TCP flag bits (RFC 9293, 3.1).
const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const ACK: u16 = 0x10;

/// Checks that the capture holds one whole TCP session between the host and
/// the stack's `port` over IPv4 or IPv6: the host's SYN, the stack's
/// SYN-ACK, and a FIN from each side.
fn assert_tcp_session(frames: &[Captured], port: u16, ipv6: bool) {
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    let syns: Vec<u16> = frames
        .iter()
        .filter(|f| !f.out && f.is_ipv6() == ipv6)
        .filter_map(|f| f.tcp.as_ref())
        .filter(|(_, dst, flags, _)| *dst == port && flags & (SYN | ACK) == SYN)
        .map(|(src, ..)| *src)
        .collect();
    // One connection: every SYN (a retransmitted one too) from one client port.
    assert!(
        !syns.is_empty() && syns.iter().all(|&p| p == syns[0]),
        "one connection from the host to port {port} over {family}, got SYNs from {syns:?}"
    );
    let client = syns[0];
    let has = |out: bool, mask: u16, want: u16| {
        frames
            .iter()
            .filter(|f| f.out == out && f.is_ipv6() == ipv6)
            .filter_map(|f| f.tcp.as_ref())
            .any(|&(src, dst, flags, _)| {
                let (s, d) = if out { (port, client) } else { (client, port) };
                src == s && dst == d && flags & mask == want
            })
    };
    assert!(
        has(true, SYN | ACK, SYN | ACK),
        "no SYN-ACK from port {port} over {family}"
    );
    assert!(
        has(false, FIN, FIN),
        "no FIN from the host to port {port} over {family}"
    );
    assert!(has(true, FIN, FIN), "no FIN from port {port} over {family}");
}

/// Checks the capture holds `request` sent to the stack's UDP `port` and
/// `reply` coming back from it, over IPv4 or IPv6, byte for byte.
fn assert_udp_exchange(frames: &[Captured], port: u16, ipv6: bool, request: &[u8], reply: &[u8]) {
    // The UDP header inside an ICMP error is not a datagram of ours.
    let udp = |out: bool| {
        frames
            .iter()
            .filter(move |f| f.out == out && f.is_ipv6() == ipv6 && f.transport() == "udp")
            .filter_map(|f| f.udp.as_ref())
    };
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    assert!(
        udp(false).any(|(_, dst, payload)| *dst == port && *payload == hex(request)),
        "no datagram {} to port {port} over {family}",
        shown(request)
    );
    assert!(
        udp(true).any(|(src, _, payload)| *src == port && *payload == hex(reply)),
        "no datagram {} from port {port} over {family}",
        shown(reply)
    );
}

/// Checks that the exit table counted exactly the frames of the capture,
/// layer by layer, each frame classified as the stack's counters classify
/// it: by the header after IP, past a Hop-by-Hop options header (the host's
/// MLD reports carry one and count as ICMPv6).
fn assert_counters_match_capture(rows: &[(String, u64, Option<u64>)], frames: &[Captured]) {
    let count = |pred: &dyn Fn(&Captured) -> bool| {
        let r#in = frames.iter().filter(|f| !f.out && pred(f)).count() as u64;
        let out = frames.iter().filter(|f| f.out && pred(f)).count() as u64;
        (r#in, out)
    };
    let bytes = (
        frames.iter().filter(|f| !f.out).map(|f| f.len).sum::<u64>(),
        frames.iter().filter(|f| f.out).map(|f| f.len).sum::<u64>(),
    );
    let icmp = |f: &Captured| matches!(f.transport(), "icmp" | "icmpv6");
    let echo_request = |f: &Captured| icmp(f) && matches!(f.icmp_type, Some(8 | 128));
    let echo_reply = |f: &Captured| icmp(f) && matches!(f.icmp_type, Some(0 | 129));
    let expected: [(&str, (u64, u64)); 11] = [
        ("frames", count(&|_| true)),
        ("bytes", bytes),
        ("ARP requests", count(&|f| f.arp_opcode == Some(1))),
        ("ARP replies", count(&|f| f.arp_opcode == Some(2))),
        ("IPv4 packets", count(&|f| f.network() == "ip")),
        ("IPv6 packets", count(&|f| f.network() == "ipv6")),
        ("ICMP echo requests", count(&echo_request)),
        ("ICMP echo replies", count(&echo_reply)),
        (
            "ICMP other (NDP, ...)",
            count(&|f| icmp(f) && !echo_request(f) && !echo_reply(f)),
        ),
        ("UDP datagrams", count(&|f| f.transport() == "udp")),
        ("TCP segments", count(&|f| f.transport() == "tcp")),
    ];
    for (name, want) in expected {
        assert_eq!(
            counter(rows, name),
            want,
            "{name} (in, out): exit table vs capture"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. pcap: every layer, dissected cleanly
// ---------------------------------------------------------------------------

/// `--pcap FILE` over a session that uses every service (ping over IPv4 and
/// IPv6, TCP and UDP echo and upper-case over both families with nc, the
/// status page with curl), stopped with SIGINT: the file is complete
/// (tshark reads it to the end with exit 0, no "cut short"), no frame is
/// malformed and every IP, TCP, UDP and ICMP checksum verifies; the capture
/// holds ARP request and reply, ICMP and ICMPv6 echo, neighbour
/// solicitation and advertisement, a whole TCP session (SYN, SYN-ACK, a FIN
/// each way, no RST) per connection, each UDP datagram and its reply with
/// their exact bytes, and an HTTP 200. And it holds exactly the frames the
/// exit `Counters:` table counted, layer by layer.
#[test]
fn pcap_file_dissects_cleanly() {
    require_tool("tshark");
    require_tool("nc");
    require_tool("curl");
    let ns = Netns::new("pcapf");
    let dir = TempDir::new("pcapf");
    let file = dir.join("session.pcap");
    let stack = Stack::start(&ns, &["--pcap", &file]);

    // The page first: its connection is closed (curl's FIN processed) by
    // the time the later traffic is answered, so it is whole in the capture.
    let page = http(&ns, &[], "http://192.168.69.1/");
    page.expect(200, "GET /");
    ping(&ns, &["-c", "1", "-W", "5", "192.168.69.1"], 1);
    ping(&ns, &["-6", "-c", "1", "-W", "5", "fdaa::1"], 1);
    let tcp: [(&str, u16, &[u8], &[u8]); 4] = [
        (
            "192.168.69.1",
            ECHO_PORT,
            b"tcp echo v4\n",
            b"tcp echo v4\n",
        ),
        (
            "192.168.69.1",
            UPPER_PORT,
            b"tcp upper v4\n",
            b"TCP UPPER V4\n",
        ),
        ("fdaa::1", ECHO_PORT, b"tcp echo v6\n", b"tcp echo v6\n"),
        ("fdaa::1", UPPER_PORT, b"tcp upper v6\n", b"TCP UPPER V6\n"),
    ];
    for (addr, port, request, reply) in tcp {
        nc_tcp(&ns, addr, port, request, reply);
    }
    let udp: [(&str, u16, &[u8], &[u8]); 4] = [
        (
            "192.168.69.1",
            ECHO_PORT,
            b"udp echo v4\n",
            b"udp echo v4\n",
        ),
        (
            "192.168.69.1",
            UPPER_PORT,
            b"udp upper v4\n",
            b"UDP UPPER V4\n",
        ),
        ("fdaa::1", ECHO_PORT, b"udp echo v6\n", b"udp echo v6\n"),
        ("fdaa::1", UPPER_PORT, b"udp upper v6\n", b"UDP UPPER V6\n"),
    ];
    for (addr, port, request, reply) in udp {
        nc_udp(&ns, addr, port, request, reply);
    }

    let exited = stack.stop(libc::SIGINT);
    assert_clean_exit(&exited, "--pcap FILE, SIGINT");

    // Read to the end without complaint (tshark fails on a truncated file).
    let summary = tshark(&["-r", &file]);
    assert!(!summary.is_empty(), "the capture is empty");
    let malformed = tshark(&["-r", &file, "-Y", "_ws.malformed"]);
    assert!(malformed.is_empty(), "malformed frames:\n{malformed}");
    let bad_checksums = tshark(&[
        "-r",
        &file,
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-Y",
        "ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0 \
         || icmp.checksum.status == 0 || icmpv6.checksum.status == 0",
    ]);
    assert!(
        bad_checksums.is_empty(),
        "frames with a bad checksum:\n{bad_checksums}"
    );

    let frames = captured(&file);
    let any = |what: &str, pred: &dyn Fn(&Captured) -> bool| {
        assert!(frames.iter().any(pred), "no {what} in:\n{summary}");
    };
    any("ARP request from the host", &|f| {
        !f.out && f.arp_opcode == Some(1)
    });
    any("ARP reply from the stack", &|f| {
        f.out && f.arp_opcode == Some(2)
    });
    let icmp = |out: bool, proto: &'static str, kind: u8| {
        move |f: &Captured| f.out == out && f.transport() == proto && f.icmp_type == Some(kind)
    };
    any("ICMP echo request", &icmp(false, "icmp", 8));
    any("ICMP echo reply", &icmp(true, "icmp", 0));
    any("neighbour solicitation", &icmp(false, "icmpv6", 135));
    any("neighbour advertisement", &icmp(true, "icmpv6", 136));
    any("ICMPv6 echo request", &icmp(false, "icmpv6", 128));
    any("ICMPv6 echo reply", &icmp(true, "icmpv6", 129));
    any("HTTP 200 from the stack", &|f| {
        f.out && f.http_code == Some(200)
    });
    for (addr, port, ..) in tcp {
        assert_tcp_session(&frames, port, addr.contains(':'));
    }
    assert_tcp_session(&frames, HTTP_PORT, false);
    let resets: Vec<&Captured> = frames
        .iter()
        .filter(|f| f.tcp.as_ref().is_some_and(|t| t.2 & RST != 0))
        .collect();
    assert!(resets.is_empty(), "resets in a clean session: {resets:?}");
    for (addr, port, request, reply) in udp {
        assert_udp_exchange(&frames, port, addr.contains(':'), request, reply);
    }

    let rows = exit_counters(&exited.stderr);
    assert_counters_match_capture(&rows, &frames);
    for name in [
        "bad checksum",
        "malformed",
        "no socket",
        "injected fault",
        "corrupted (injected)",
    ] {
        assert_eq!(counter(&rows, name), (0, 0), "{name}");
    }
}

// ---------------------------------------------------------------------------
// 2. --pcap -: a live stream on stdout
// ---------------------------------------------------------------------------

/// `tapstack --create --pcap - --trace` streams the capture on stdout while
/// it runs: the banner and its ready line, the trace and the exit table go
/// to stderr, so stdout is a pure pcap stream; a ping's reply is on stdout
/// as soon as ping has it (not only at exit); after SIGINT (exit 0) tshark
/// reads the bytes without error and finds the ping and the TCP echo with
/// its payload, and there is one trace line per captured frame and as many
/// frames as the exit table counted.
#[test]
fn pcap_to_stdout_streams() {
    require_tool("tshark");
    require_tool("nc");
    let ns = Netns::new("pcaps");
    let mut stack = Stack::start(&ns, &["--pcap", "-", "--trace"]);
    assert!(
        !contains(stack.stdout_now(), READY.as_bytes()),
        "the banner went to stdout, into the capture"
    );

    ping(&ns, &["-c", "1", "-W", "5", "192.168.69.1"], 1);
    stack.wait_for(
        "stream the ping's reply on stdout while running",
        |out, _| {
            out.len() >= PCAP_GLOBAL_HEADER
                && pcap_frames(out).iter().any(|f| is_icmp_echo_reply_v4(f))
        },
        TOOL_TIMEOUT,
    );
    const REQUEST: &[u8] = b"streamed through a pipe\n";
    nc_tcp(&ns, "192.168.69.1", ECHO_PORT, REQUEST, REQUEST);

    let exited = stack.stop(libc::SIGINT);
    assert_clean_exit(&exited, "--pcap -, SIGINT");
    assert!(
        exited.stderr.contains(READY) && exited.stderr.contains("tapstack: stopped by SIGINT"),
        "stderr:\n{}",
        exited.stderr
    );
    assert!(
        !contains(&exited.stdout, b"tapstack") && !contains(&exited.stdout, b"Counters:"),
        "text in the pcap stream"
    );
    let frames = pcap_frames(&exited.stdout);
    let whole: usize = PCAP_GLOBAL_HEADER
        + frames
            .iter()
            .map(|f| PCAP_RECORD_HEADER + f.len())
            .sum::<usize>();
    assert_eq!(whole, exited.stdout.len(), "a record is cut short");

    // The trace: `SECS.MICROS IN|OUT ...`, one line per frame.
    let trace_lines = exited
        .stderr
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let time = words.next().unwrap_or("");
            time.split_once('.').is_some_and(|(s, us)| {
                s.bytes().all(|b| b.is_ascii_digit())
                    && us.len() == 6
                    && us.bytes().all(|b| b.is_ascii_digit())
            }) && matches!(words.next(), Some("IN" | "OUT"))
        })
        .count();
    assert_eq!(trace_lines, frames.len(), "trace lines vs captured frames");
    let rows = exit_counters(&exited.stderr);
    let (r#in, out) = counter(&rows, "frames");
    assert_eq!(
        r#in + out,
        frames.len() as u64,
        "exit table frames vs captured frames"
    );

    let dir = TempDir::new("pcaps");
    let file = dir.join("stdout.pcap");
    fs::write(&file, &exited.stdout).expect("write the captured stdout");
    let tcp_replies = tshark(&[
        "-r",
        &file,
        "-Y",
        "tcp.srcport == 7 && tcp.len > 0",
        "-T",
        "fields",
        "-e",
        "tcp.payload",
    ]);
    assert_eq!(
        tcp_replies.trim(),
        hex(REQUEST),
        "the echoed bytes in the streamed capture"
    );
    let pings = tshark(&["-r", &file, "-Y", "icmp.type == 8 || icmp.type == 0"]);
    assert_eq!(pings.lines().count(), 2, "echo request and reply:\n{pings}");
}

// ---------------------------------------------------------------------------
// 3. counters: exactly the traffic
// ---------------------------------------------------------------------------

/// After known traffic, `/stats.json` holds the exact numbers: 5 pings over
/// IPv4 and 3 over IPv6; 7 UDP datagrams to echo, each answered; one
/// datagram to closed port 13 (answered by ICMP port unreachable); 2 TCP echo
/// connections opened and closed; one TCP connect to port 13 (refused with
/// RST). The exit `Counters:` table agrees, plus what came after the JSON:
/// curl's own connection, closed, and one more datagram.
#[test]
fn counters_equal_the_traffic() {
    require_tool("ping");
    require_tool("curl");
    let ns = Netns::new("count");
    let stack = Stack::start(&ns, &[]);

    ping(&ns, &["-c", "5", "-i", "0.2", "-W", "5", "192.168.69.1"], 5);
    ping(
        &ns,
        &["-6", "-c", "3", "-i", "0.2", "-W", "5", "fdaa::1"],
        3,
    );
    ns.run(|| {
        // 7 datagrams, each answered before the next: 4 over IPv4, 3 over IPv6.
        let udp4 = udp_socket(v4(ECHO_PORT), IO_TIMEOUT);
        let udp6 = udp_socket(v6(ECHO_PORT), IO_TIMEOUT);
        for i in 0..7 {
            let socket = if i % 2 == 0 { &udp4 } else { &udp6 };
            udp_echo_once(socket, format!("datagram {i}\n").as_bytes());
        }
        // A connected UDP socket learns of the ICMP port unreachable as
        // ECONNREFUSED: the event that says the stack has answered.
        let closed = udp_socket(v4(CLOSED_PORT), IO_TIMEOUT);
        closed.send(b"nobody here\n").expect("send to port 13");
        let mut buf = [0u8; 64];
        match closed.recv(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
            other => panic!("UDP to port {CLOSED_PORT}: expected ECONNREFUSED, got {other:?}"),
        }
        tcp_echo_once(v4(ECHO_PORT), b"first connection\n");
        tcp_echo_once(v6(ECHO_PORT), b"second connection\n");
        assert_refused(v4(CLOSED_PORT), "TCP to a closed port");
    });

    let doc = stats(&ns);
    let n = |path: &[&str]| json_u64(&doc, path);
    let c = |path: &[&str]| {
        let mut full = vec!["counters"];
        full.extend_from_slice(path);
        n(&full)
    };
    // ICMP: 5 + 3 echo requests in, as many replies out, none the other way.
    assert_eq!(c(&["icmp", "echo_requests", "in"]), 8, "{doc}");
    assert_eq!(c(&["icmp", "echo_requests", "out"]), 0, "{doc}");
    assert_eq!(c(&["icmp", "echo_replies", "in"]), 0, "{doc}");
    assert_eq!(c(&["icmp", "echo_replies", "out"]), 8, "{doc}");
    // Other ICMP out: the port unreachable for port 13 and at least one
    // neighbour advertisement (the host resolves fdaa::1 before its first
    // ping; it may ask again later, so only a lower bound).
    assert!(c(&["icmp", "other", "out"]) >= 2, "{doc}");
    // UDP: 7 to echo + 1 to port 13 in; 7 echoes out (port 13 gets ICMP).
    assert_eq!(c(&["udp", "in"]), 8, "{doc}");
    assert_eq!(c(&["udp", "out"]), 7, "{doc}");
    // TCP: the 2 echo connections and this curl's own one reached
    // ESTABLISHED (the page is rendered while curl waits for it); the 2 echo
    // ones are closed (our FIN, its FIN, our last ACK, which left before
    // curl's SYN); the connect to port 13 was refused.
    assert_eq!(c(&["tcp", "opened"]), 3, "{doc}");
    assert_eq!(c(&["tcp", "closed"]), 2, "{doc}");
    assert_eq!(c(&["tcp", "reset"]), 0, "{doc}");
    assert_eq!(c(&["tcp", "refused"]), 1, "{doc}");
    // Dropped for want of a socket: the SYN and the datagram to port 13.
    assert_eq!(c(&["dropped", "no_socket"]), 2, "{doc}");
    for name in ["pool_full", "injected", "bad_checksum", "malformed"] {
        assert_eq!(c(&["dropped", name]), 0, "dropped.{name}: {doc}");
    }
    assert_eq!(c(&["corrupted"]), 0, "{doc}");
    let d = |name: &str| c(&["dropped", name]);
    assert_eq!(
        d("total"),
        [
            "not_for_us",
            "bad_source",
            "bad_checksum",
            "malformed",
            "no_socket",
            "pool_full",
            "injected"
        ]
        .iter()
        .map(|name| d(name))
        .sum::<u64>(),
        "dropped.total is the sum of the reasons: {doc}"
    );
    assert_eq!(
        json_str(json(&doc, &["stack", "ipv4"])),
        "192.168.69.1/24",
        "{doc}"
    );

    // One more datagram after curl has gone: its reply proves the stack has
    // read curl's last segments (frames are served in order), so the exit
    // table sees curl's connection closed.
    ns.run(|| udp_echo_once(&udp_socket(v4(ECHO_PORT), IO_TIMEOUT), b"last\n"));

    let exited = stack.stop(libc::SIGINT);
    assert_clean_exit(&exited, "after the counted traffic");
    let rows = exit_counters(&exited.stderr);
    // Unchanged since the JSON: ICMP, refused, no socket.
    assert_eq!(counter(&rows, "ICMP echo requests"), (8, 0));
    assert_eq!(counter(&rows, "ICMP echo replies"), (0, 8));
    assert_eq!(counter(&rows, "no socket"), (2, 0));
    // The last datagram and its echo.
    assert_eq!(counter(&rows, "UDP datagrams"), (8 + 1, 7 + 1));
    // curl's connection ended with a FIN each way (the stack's with the
    // response, curl's after reading it): 3 opened, 3 closed.
    assert_eq!(
        counter(&rows, "TCP opened / closed"),
        (3, 3),
        "exit table:\n{}",
        exited.stderr
    );
    assert_eq!(counter(&rows, "TCP reset / refused"), (0, 1));
    for name in [
        "pool full",
        "injected fault",
        "bad checksum",
        "malformed",
        "corrupted (injected)",
    ] {
        assert_eq!(counter(&rows, name), (0, 0), "{name}");
    }
}

// ---------------------------------------------------------------------------
// 4. the socket table
// ---------------------------------------------------------------------------

/// The socket table of `/stats.json` shows real connections: with one
/// std::net connection open to echo over IPv4 and one to upper-case over
/// IPv6, there are ESTABLISHED rows with the stack's address and port and
/// the client's real address and port, the pools' LISTEN rows count one
/// socket fewer each, and curl's own connection to the status page is
/// there too; once both are closed, the pools are whole again and the rows
/// are gone.
#[test]
fn socket_table_shows_real_ports() {
    require_tool("curl");
    let ns = Netns::new("socks");
    let stack = StackProcess::start(&ns, &[]);
    let listen = |n: usize| format!("LISTEN x{n}");
    ns.run(|| {
        let mut echo = connect(v4(ECHO_PORT));
        let mut upper = connect(v6(UPPER_PORT));
        // A reply means the stack has seen the handshake's last ACK.
        for (stream, request, reply) in [
            (&mut echo, &b"table\n"[..], &b"table\n"[..]),
            (&mut upper, b"table\n", b"TABLE\n"),
        ] {
            stream.write_all(request).expect("write");
            let mut got = vec![0u8; reply.len()];
            stream.read_exact(&mut got).expect("read the reply");
            assert_eq!(got, reply);
        }
        let echo_port = echo.local_addr().expect("local address").port();
        let upper_port = upper.local_addr().expect("local address").port();

        let doc = stats(&ns);
        let rows = socket_rows(&doc);
        let row = |local: &str, remote: &str| {
            rows.iter()
                .find(|r| r.local == local && r.remote == remote)
                .unwrap_or_else(|| panic!("no row {local} <- {remote} in {rows:#?}"))
        };
        let e = row("192.168.69.1:7", &format!("{HOST_V4}:{echo_port}"));
        assert_eq!(
            (&*e.protocol, &*e.state, &*e.service, e.sockets),
            ("tcp", "ESTABLISHED", "echo", 1)
        );
        let u = row("[fdaa::1]:11111", &format!("[{HOST_V6}]:{upper_port}"));
        assert_eq!(
            (&*u.protocol, &*u.state, &*u.service, u.sockets),
            ("tcp", "ESTABLISHED", "upper-case", 1)
        );
        let free = TCP_SOCKETS_PER_SERVICE - 1;
        for (local, service) in [("*:7", "echo"), ("*:11111", "upper-case")] {
            let tcp = rows_at(&rows, "tcp", local);
            assert_eq!(tcp.len(), 1, "one LISTEN row for {local}: {rows:#?}");
            assert_eq!(
                (&*tcp[0].remote, &*tcp[0].state, &*tcp[0].service),
                ("*:*", &*listen(free), service)
            );
            assert_eq!(tcp[0].sockets, free as u64);
            let udp = rows_at(&rows, "udp", local);
            assert_eq!(udp.len(), 1, "one UDP row for {local}: {rows:#?}");
            assert_eq!((&*udp[0].state, udp[0].sockets), ("-", 1));
        }
        // curl's own connection: one status slot taken, the rest listening.
        let http_listen = rows_at(&rows, "tcp", "*:80");
        assert_eq!(
            http_listen.len(),
            1,
            "one LISTEN row for *:80: {rows:#?}"
        );
        assert_eq!(http_listen[0].state, listen(HTTP_SOCKETS - 1));
        let curl_row = rows_at(&rows, "tcp", "192.168.69.1:80");
        assert_eq!(curl_row.len(), 1, "curl's own connection: {rows:#?}");
        assert!(
            curl_row[0].remote.starts_with(&format!("{HOST_V4}:"))
                && curl_row[0].state == "ESTABLISHED"
                && curl_row[0].service == "status (HTTP)",
            "{:?}",
            curl_row[0]
        );
        for local in ["*:9", "*:19"] {
            let tcp = rows_at(&rows, "tcp", local);
            assert_eq!(tcp.len(), 1, "one LISTEN row for {local}: {rows:#?}");
            assert_eq!(tcp[0].state, listen(BULK_SOCKETS));
            assert_eq!(rows_at(&rows, "udp", local).len(), 1, "{rows:#?}");
        }
        assert_eq!(
            rows.len(),
            12,
            "4 services x (listeners, UDP), 2 connections, the status page's listeners and curl: {rows:#?}"
        );

        // Close both: our FIN, the stack's FIN, our last ACK, all before
        // the next curl's SYN.
        for mut stream in [echo, upper] {
            stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).expect("read to the FIN");
            assert!(rest.is_empty(), "{}", shown(&rest));
        }
    });
    let rows = socket_rows(&stats(&ns));
    for local in ["*:7", "*:11111"] {
        let tcp = rows_at(&rows, "tcp", local);
        assert_eq!(tcp.len(), 1, "{rows:#?}");
        assert_eq!(tcp[0].state, listen(TCP_SOCKETS_PER_SERVICE));
    }
    assert!(
        !rows
            .iter()
            .any(|r| r.service != "status (HTTP)" && r.state == "ESTABLISHED"),
        "connections left after closing: {rows:#?}"
    );
    stack.stop_cleanly();
}

// ---------------------------------------------------------------------------
// 5. the status page over HTTP
// ---------------------------------------------------------------------------

/// The status page answers curl with each status it knows: 200 for `/` (HTML)
/// and `/stats.json` (JSON) over IPv4 and IPv6, with a `Content-Length` equal
/// to the body; HEAD with the headers and no body; 404 for another path; 405
/// with `Allow: GET, HEAD` for another method; 400 for a malformed request
/// and for HTTP/1.1 without Host (HTTP/1.0 without Host is fine); 431 for a
/// request head over 1024 bytes. Every answer closes the connection.
#[test]
fn http_status_codes_with_curl() {
    require_tool("curl");
    require_tool("nc");
    let ns = Netns::new("http");
    let stack = StackProcess::start(&ns, &[]);
    for host in ["192.168.69.1", "[fdaa::1]"] {
        for path in ["/", "/index.html"] {
            let what = format!("GET http://{host}{path}");
            let page = http(&ns, &[], &format!("http://{host}{path}"));
            let body = page.expect(200, &what);
            assert_eq!(
                page.header("Content-Type"),
                Some("text/html; charset=utf-8"),
                "{what}"
            );
            assert!(
                body.starts_with("<!DOCTYPE html>")
                    && body.contains("<h2>Counters</h2>")
                    && body.contains("<h2>Sockets</h2>")
                    && body.ends_with("</html>\n"),
                "{what}: {body}"
            );
        }
        let what = format!("GET http://{host}/stats.json");
        let json_doc = http(&ns, &[], &format!("http://{host}/stats.json"));
        let body = json_doc.expect(200, &what);
        assert_eq!(
            json_doc.header("Content-Type"),
            Some("application/json"),
            "{what}"
        );
        assert!(
            body.starts_with("{\"stack\":") && body.ends_with("]}\n"),
            "{what}: {body}"
        );
        assert!(json_u64(&body, &["counters", "link", "in", "frames"]) > 0);
    }

    // HEAD: curl -I shows the headers of a 200 with a length...
    for url in ["http://192.168.69.1/", "http://[fdaa::1]/stats.json"] {
        let head = http(&ns, &["-I"], url);
        assert_eq!(head.status, 200, "HEAD {url}: {:?}", head.head);
        assert!(
            head.content_length("HEAD") > 0,
            "HEAD {url}: {:?}",
            head.head
        );
        assert!(head.body.is_empty(), "HEAD {url}: {}", shown(&head.body));
    }
    // ... and on the wire nothing follows them before the stack's FIN.
    let raw = raw_http(
        &ns,
        "192.168.69.1",
        b"HEAD /stats.json HTTP/1.1\r\nHost: 192.168.69.1\r\n\r\n",
    );
    let head = Response::parse(&raw, "raw HEAD");
    assert_eq!(head.status, 200, "{}", shown(&raw));
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    assert!(head.content_length("raw HEAD") > 0);
    assert!(
        head.body.is_empty(),
        "HEAD answered with a body: {}",
        shown(&raw)
    );

    // 404.
    for path in ["/nope", "/stats.json/x", "/index.htm"] {
        let what = format!("GET {path}");
        let r = http(&ns, &[], &format!("http://192.168.69.1{path}"));
        assert_eq!(r.expect(404, &what), "404 Not Found\n", "{what}");
    }
    // 405 with Allow.
    for method in ["POST", "DELETE", "PUT"] {
        let what = format!("{method} /");
        let r = http(&ns, &["-X", method], "http://192.168.69.1/");
        assert_eq!(r.expect(405, &what), "405 Method Not Allowed\n", "{what}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{what}: {:?}", r.head);
    }
    // 400: HTTP/1.1 without Host (`-H 'Host:'` makes curl leave it out),
    // and requests that are not HTTP at all.
    let r = http(&ns, &["-H", "Host:"], "http://192.168.69.1/");
    assert_eq!(r.expect(400, "no Host"), "400 Bad Request\n");
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    ] {
        let raw = raw_http(&ns, "192.168.69.1", request);
        let r = Response::parse(&raw, &shown(request));
        assert_eq!(r.expect(400, &shown(request)), "400 Bad Request\n");
    }
    let raw = raw_http(&ns, "fdaa::1", b"GET /stats.json HTTP/1.0\r\n\r\n");
    Response::parse(&raw, "HTTP/1.0 without Host").expect(200, "HTTP/1.0 without Host");
    // 431: one header makes the head longer than the 1024-byte buffer.
    let big = format!("X-Padding: {}", "a".repeat(1100));
    let r = http(&ns, &["-H", &big], "http://192.168.69.1/");
    assert_eq!(
        r.expect(431, "a 1.1 KB header"),
        "431 Request Header Fields Too Large\n"
    );
    stack.stop_cleanly();
}

/// The status page's pool: `HTTP_SOCKETS` (4) connections that never finish
/// their request hold every slot; a 5th connection is refused at once (RST)
/// over IPv4 and IPv6 while echo keeps working; the held connections are
/// still served (one finishing its request gets the page, the others get
/// 400 when they give up), and then the page answers again.
#[test]
fn http_flood_refused_then_recovers() {
    require_tool("curl");
    let ns = Netns::new("flood");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        let mut held: Vec<TcpStream> = (0..HTTP_SOCKETS)
            .map(|i| {
                let mut stream = connect(if i % 2 == 0 {
                    v4(HTTP_PORT)
                } else {
                    v6(HTTP_PORT)
                });
                stream
                    .write_all(b"GET / HTTP/1.1\r\n")
                    .expect("write half a request");
                stream
            })
            .collect();
        assert_refused(v4(HTTP_PORT), "a 5th status connection");
        assert_refused(v6(HTTP_PORT), "a 5th status connection");
        tcp_echo_once(v4(ECHO_PORT), b"echo while the status page is full\n");

        let mut first = held.remove(0);
        first
            .write_all(b"Host: 192.168.69.1\r\n\r\n")
            .expect("finish the request");
        let mut raw = Vec::new();
        first.read_to_end(&mut raw).expect("read the page");
        let body = Response::parse(&raw, "held request").expect(200, "held request");
        assert!(body.contains("<h2>Sockets</h2>"), "{body}");
        for mut stream in held {
            stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).expect("read the answer");
            let r = Response::parse(&raw, "abandoned request");
            assert_eq!(r.expect(400, "abandoned request"), "400 Bad Request\n");
        }
    });
    let doc = stats(&ns);
    // The pool was full for the two refused SYNs.
    assert_eq!(
        json_u64(&doc, &["counters", "dropped", "pool_full"]),
        2,
        "{doc}"
    );
    assert_eq!(json_u64(&doc, &["counters", "tcp", "refused"]), 2, "{doc}");
    stack.stop_cleanly();
}

// ---------------------------------------------------------------------------
// 6. headless Chromium
// ---------------------------------------------------------------------------

/// Runs headless Chromium inside `ns` with a fresh profile in `dir` and
/// `args`, bounded; fails unless it exits with 0.
fn chromium(ns: &Netns, dir: &TempDir, args: &[&str]) -> Output {
    let profile = format!("--user-data-dir={}", dir.join("profile"));
    let mut command = ns.command("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            &profile,
        ])
        .args(args)
        // Anything it keeps outside the profile goes to the temporary directory too.
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_CACHE_HOME", dir.path());
    let out = run_bounded(command, b"", CHROMIUM_TIMEOUT);
    assert!(
        out.status.success(),
        "chromium {}: exit {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A real browser loads the status page: headless Chromium's DOM of
/// `http://192.168.69.1/` holds the counters table and the socket table, and
/// a screenshot of it is a PNG of the requested size.
#[test]
fn headless_chromium_loads_the_page() {
    require_tool("chromium");
    let ns = Netns::new("chrome");
    let stack = StackProcess::start(&ns, &[]);
    let dir = TempDir::new("chrome");

    let dom = chromium(&ns, &dir, &["--dump-dom", "http://192.168.69.1/"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "<title>tapstack status</title>",
        "<h2>Counters</h2>",
        "<td>ICMP echo requests</td>",
        "<td>TCP opened / closed</td>",
        "<h2>Sockets</h2>",
        "<td><code>*:7</code></td>",
        "<td><code>*:11111</code></td>",
        "<td>status (HTTP)</td>",
        "192.168.69.1:80",
    ] {
        assert!(dom.contains(needle), "no {needle:?} in the DOM:\n{dom}");
    }

    let shot = dir.join("shot.png");
    chromium(
        &ns,
        &dir,
        &[
            &format!("--screenshot={shot}"),
            "--window-size=1100,1300",
            "--hide-scrollbars",
            "http://192.168.69.1/",
        ],
    );
    let png = fs::read(&shot).unwrap_or_else(|err| panic!("read {shot}: {err}"));
    assert!(
        png.starts_with(PNG_SIGNATURE),
        "not a PNG: {:02x?}",
        &png[..png.len().min(8)]
    );
    // The IHDR chunk comes first: width and height, big-endian, at 16..24.
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!((size(16), size(20)), (1100, 1300), "screenshot size");
    stack.stop_cleanly();
}

// ---------------------------------------------------------------------------
// 7. fault injection
// ---------------------------------------------------------------------------

/// Bytes through TCP echo under faults. 1 MB takes over a minute at these
/// rates (smoltcp's retransmission timeout is at least 1 s and doubles on
/// each loss of the same segment), too long for this suite.
const FAULTY_TCP_BYTES: usize = 1 << 20; // 1 MiB, as the issue asks (about 75 s: smoltcp recovers on its >= 1 s RTO)
/// Datagrams to UDP echo under faults, one at a time.
const FAULTY_DATAGRAMS: usize = 300;
/// How long to wait for each datagram's reply before counting it lost (a
/// late reply is still checked when it comes).
const FAULTY_REPLY_WAIT: Duration = Duration::from_millis(200);
/// Safety bound on one read or write of the TCP transfer: a segment lost
/// several times in a row waits 1 + 2 + 4 + ... s for its retransmission.
const FAULTY_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `len` pseudo-random bytes through TCP echo from one thread while
/// reading them back on this one, then half-closes; checks every byte and
/// the EOF.
fn echo_round_trip(stream: TcpStream, len: usize, seed: u64) {
    let peer = stream.peer_addr().expect("a connected stream has a peer");
    let mut writer = stream.try_clone().expect("clone the stream");
    thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let mut source = XorShift::new(seed);
            let mut chunk = vec![0u8; 8 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                source.fill(&mut chunk[..n]);
                writer
                    .write_all(&chunk[..n])
                    .unwrap_or_else(|err| panic!("{peer}: write at byte {sent}: {err}"));
                sent += n;
            }
            writer.shutdown(Shutdown::Write).expect("shutdown(Write)");
        });
        // Read in the writer's chunk size so both generators stay aligned.
        let mut expected = XorShift::new(seed);
        let mut want = vec![0u8; 8 * 1024];
        let mut got = vec![0u8; 8 * 1024];
        let mut done = 0;
        let mut reader = &stream;
        while done < len {
            let n = want.len().min(len - done);
            expected.fill(&mut want[..n]);
            reader
                .read_exact(&mut got[..n])
                .unwrap_or_else(|err| panic!("{peer}: read at byte {done} of {len}: {err}"));
            if let Some(at) = (0..n).find(|&i| got[i] != want[i]) {
                panic!(
                    "{peer}: byte {} is {:#04x}, sent {:#04x}",
                    done + at,
                    got[at],
                    want[at]
                );
            }
            done += n;
        }
        let mut rest = Vec::new();
        reader
            .read_to_end(&mut rest)
            .unwrap_or_else(|err| panic!("{peer}: read to EOF: {err}"));
        assert!(rest.is_empty(), "{peer}: {} bytes past the end", rest.len());
        sender
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
}

/// What the UDP part of the fault test saw.
struct UdpFigures {
    sent: usize,
    answered: usize,
}

/// Sends `count` datagrams to UDP echo one at a time, each with its
/// sequence number first, waiting [`FAULTY_REPLY_WAIT`] for each reply.
/// Every reply that comes, in time or late, must be exactly the datagram of
/// its sequence number, once.
fn udp_under_faults(addr: SocketAddr, count: usize) -> UdpFigures {
    let socket = udp_socket(addr, FAULTY_REPLY_WAIT);
    let mut source = XorShift::new(0xfa17);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut answered = vec![false; count];
    let mut reply = [0u8; 2048];
    for i in 0..count {
        // An 8-digit sequence number, then 16 to 527 pseudo-random bytes.
        let mut datagram = format!("{i:08}").into_bytes();
        datagram.resize(8 + 16 + (i * 97) % 512, 0);
        source.fill(&mut datagram[8..]);
        socket
            .send(&datagram)
            .unwrap_or_else(|err| panic!("{addr}: send {i}: {err}"));
        sent.push(datagram);
        loop {
            let n = match socket.recv(&mut reply) {
                Ok(n) => n,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break; // lost, or late: a late reply is checked below when it comes
                }
                Err(err) => panic!("{addr}: recv after datagram {i}: {err}"),
            };
            let seq = std::str::from_utf8(&reply[..n.min(8)])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&seq| seq <= i)
                .unwrap_or_else(|| {
                    panic!(
                        "{addr}: a reply with no sequence number we sent: {}",
                        shown(&reply[..n])
                    )
                });
            assert!(
                reply[..n] == sent[seq][..],
                "{addr}: the reply to datagram {seq} differs from what was sent: {} bytes, sent {}",
                n,
                sent[seq].len()
            );
            assert!(!answered[seq], "{addr}: datagram {seq} answered twice");
            answered[seq] = true;
            if seq == i {
                break;
            }
        }
    }
    UdpFigures {
        sent: count,
        answered: answered.iter().filter(|&&a| a).count(),
    }
}

/// With `--drop-chance 10 --corrupt-chance 5 --seed 1` (each direction):
/// pseudo-random bytes through TCP echo come back byte exact (TCP repairs
/// every drop, and the checksums catch every flipped bit), while 300 UDP
/// datagrams to echo lose some (no repair) but every reply that arrives is
/// exactly the datagram sent, never a corrupted one. The exit table shows
/// injected drops and corruptions. Prints the figures (`--nocapture`).
#[test]
fn fault_injection_tcp_repairs_udp_loses() {
    let ns = Netns::new("faults");
    let stack = Stack::start(
        &ns,
        &[
            "--drop-chance",
            "10",
            "--corrupt-chance",
            "5",
            "--seed",
            "1",
        ],
    );
    let started = Instant::now();
    // The two run at once, to keep the test short.
    let (tcp_time, udp) = ns.run(|| {
        thread::scope(|scope| {
            let tcp = scope.spawn(|| {
                let start = Instant::now();
                // A lost SYN is retried after 1 s, then 3 s: allow for that.
                let stream = TcpStream::connect_timeout(&v4(ECHO_PORT), FAULTY_IO_TIMEOUT)
                    .unwrap_or_else(|err| panic!("connect to echo under faults: {err}"));
                stream
                    .set_read_timeout(Some(FAULTY_IO_TIMEOUT))
                    .expect("set a read timeout");
                stream
                    .set_write_timeout(Some(FAULTY_IO_TIMEOUT))
                    .expect("set a write timeout");
                echo_round_trip(stream, FAULTY_TCP_BYTES, 0xfa_0001);
                start.elapsed()
            });
            let udp = udp_under_faults(v4(ECHO_PORT), FAULTY_DATAGRAMS);
            let tcp_time = tcp
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (tcp_time, udp)
        })
    });
    let exited = stack.stop(libc::SIGINT);
    assert_clean_exit(&exited, "under faults");
    let rows = exit_counters(&exited.stderr);
    let (injected, _) = counter(&rows, "injected fault");
    let (corrupted, _) = counter(&rows, "corrupted (injected)");
    let (bad_checksum, _) = counter(&rows, "bad checksum");
    let (frames_in, frames_out) = counter(&rows, "frames");
    let lost = udp.sent - udp.answered;
    println!(
        "fault injection, --drop-chance 10 --corrupt-chance 5 --seed 1:\n  \
         TCP echo: {FAULTY_TCP_BYTES} bytes back byte exact in {:.1} s\n  \
         UDP echo: {} datagrams sent, {} answered exactly, {lost} lost ({:.0} %), 0 corrupted\n  \
         stack: {frames_in} frames in, {frames_out} out; {injected} dropped by the injector, \
         {corrupted} corrupted, {bad_checksum} received frames dropped for a bad checksum\n  \
         ({:.1} s in all)",
        tcp_time.as_secs_f64(),
        udp.sent,
        udp.answered,
        lost as f64 * 100.0 / udp.sent as f64,
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost > 0,
        "no datagram lost at 10 % drops and 5 % corruption"
    );
    assert!(udp.answered > 0, "no datagram answered at all");
    assert!(
        injected > 0,
        "exit table: no injected drop\n{}",
        exited.stderr
    );
    assert!(
        corrupted > 0,
        "exit table: no corruption\n{}",
        exited.stderr
    );
}

// ---------------------------------------------------------------------------
// 8. bad input
// ---------------------------------------------------------------------------

/// A pcap path that cannot be written is a system error (exit 1, one line
/// naming the pcap file and the way out), found before any TAP is created;
/// fault values out of range are command-line errors (exit 2, one line
/// naming the flag).
#[test]
fn bad_pcap_path_and_fault_values() {
    let ns = Netns::new("badin");
    let dir = TempDir::new("badin");
    let run = |args: &[&str]| {
        let mut command = ns.command(binary());
        command.args(args);
        run_bounded(command, b"", TOOL_TIMEOUT)
    };
    let path = "/nonexistent-dir/x.pcap";
    assert_error(
        &run(&["--create", "--pcap", path]),
        1,
        &["pcap", path, "--pcap -"],
        "--pcap into a missing directory",
    );
    let directory = dir.path().to_string_lossy().into_owned();
    assert_error(
        &run(&["--create", "--pcap", &directory]),
        1,
        &["pcap", &directory],
        "--pcap onto a directory",
    );
    assert!(!ns.link_exists("tap0"), "a pcap error left a TAP behind");
    let cases: &[(&[&str], &str)] = &[
        (&["--drop-chance", "101"], "--drop-chance"),
        (&["--drop-chance", "-1"], "--drop-chance"),
        (&["--corrupt-chance", "101"], "--corrupt-chance"),
        (&["--rate-limit", "abc"], "--rate-limit"),
        (&["--seed", "x"], "--seed"),
    ];
    for (args, flag) in cases {
        assert_error(
            &run(args),
            2,
            &[flag],
            &format!("tapstack {}", args.join(" ")),
        );
    }
}

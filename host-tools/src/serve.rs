//! `hostnet serve`: the lessons' socketserver, on the host's kernel stack.
//!
//! The same services as tapstack (echo, upper-case, discard and chargen, TCP
//! and UDP, IPv4 and IPv6) with the same byte transforms and the same
//! chargen pattern, taken from the core ([`tapstack::services`]), so the two
//! serve the same bytes and a benchmark of one against the other compares
//! the stacks, not the services:
//! - echo, upper-case: every byte answered with its transform;
//! - discard (RFC 863): TCP reads and drops everything and closes once the
//!   client has half-closed; UDP drops every datagram, unanswered;
//! - chargen (RFC 864): TCP sends the pattern for as long as the client
//!   reads, drops what it sends, and closes once it half-closes; UDP answers
//!   the k-th datagram a socket receives (from 0) with line k of the pattern.
//!
//! Shape, as in mini-redis: [`bind`] makes the [`Listeners`], [`serve`] runs
//! them until a [`Shutdown`] fires, and both are parameters so tests drive a
//! server on ephemeral loopback ports and stop it. One thread polls every
//! listener and answers UDP itself; each TCP connection gets a thread of its
//! own (up to `--max-connections`), taken from those already started when one
//! is free. Every blocking call wakes at least every [`TICK`] to
//! look at the shutdown flag, so a stop takes at most that long.

use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown as Direction, SocketAddr, TcpListener, TcpStream,
    UdpSocket,
};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tapstack::config::{CHARGEN_PORT, DISCARD_PORT, ECHO_PORT, UPPER_PORT};
use tapstack::services::{Kind, Service, chargen};

use crate::Error;
use crate::net::{self, display_addr};
use crate::units::parse_duration;

/// How often blocked calls wake to look at the shutdown flag.
pub const TICK: Duration = Duration::from_millis(100);
/// TCP connections served at once by default; more are accepted and closed
/// at once, so a flood cannot exhaust the host's threads.
pub const MAX_CONNECTIONS: usize = 512;
/// The largest UDP payload (65535 - 8 - 20): any datagram fits the buffer.
const MAX_DATAGRAM: usize = 65_507;
/// Bytes moved per read on an echo or upper-case connection.
const CHUNK: usize = 64 * 1024;
/// Bytes moved per read or write on a discard or chargen connection: large,
/// so the kernel baseline spends its time in the stack, not in system calls.
const BULK_CHUNK: usize = 256 * 1024;
/// Datagrams or accepts handled per listener per wake, so one busy listener
/// cannot starve the others.
const BURST: usize = 64;
/// Connections the kernel completes and queues before `accept` (capped by
/// net.core.somaxconn). std listens with 128; a client that connects in a
/// tight loop runs that far ahead of the acceptor in about 3 ms, and every
/// SYN dropped on a full queue costs the client a 1 s retransmission.
const LISTEN_BACKLOG: libc::c_int = 4096;
/// Tries at finding one free port for both TCP and UDP when asked for port 0.
const PORT_ATTEMPTS: usize = 32;

/// `hostnet serve` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on; repeat for several. Default: `::`, which on
    /// Linux also takes IPv4 (falls back to 0.0.0.0 where IPv6 is off).
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<IpAddr>,
    /// Echo port, TCP and UDP (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = ECHO_PORT, value_parser = net::parse_listen_port)]
    pub echo_port: u16,
    /// Upper-case port, TCP and UDP (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = UPPER_PORT, value_parser = net::parse_listen_port)]
    pub upper_port: u16,
    /// Discard port (RFC 863), TCP and UDP (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = DISCARD_PORT, value_parser = net::parse_listen_port)]
    pub discard_port: u16,
    /// Chargen port (RFC 864), TCP and UDP (0: any free port).
    #[arg(long, value_name = "PORT", default_value_t = CHARGEN_PORT, value_parser = net::parse_listen_port)]
    pub chargen_port: u16,
    /// TCP connections served at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a TCP connection idle for this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Log every connection and datagram on stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Examples for `hostnet serve --help`.
pub fn examples() -> String {
    format!(
        "Examples:
  sudo hostnet serve          echo on {ECHO_PORT}, upper-case on {UPPER_PORT}, discard on {DISCARD_PORT}, chargen on {CHARGEN_PORT}, all addresses
  hostnet serve --echo-port 7007 --discard-port 7009 --chargen-port 7019
                              no root needed above port 1023
  hostnet serve --bind 127.0.0.1 --bind ::1 --echo-port 0 --upper-port 0 --discard-port 0 --chargen-port 0
                              loopback only, any free ports (printed)

When every listener is bound it prints one line per service, then `hostnet: ready`:
  hostnet: serving echo on tcp+udp 127.0.0.1:40123
Ctrl-C (SIGINT) or SIGTERM stops it and prints what it served."
    )
}

/// One service on one address: a TCP listener and a UDP socket on the same port.
#[derive(Debug)]
pub struct Listener {
    /// The service, with the port asked for.
    pub service: Service,
    /// TCP side.
    pub tcp: TcpListener,
    /// UDP side, same address and port.
    pub udp: UdpSocket,
}

impl Listener {
    /// The address both sides are bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Every listener of a server.
#[derive(Debug)]
pub struct Listeners(pub Vec<Listener>);

impl Listeners {
    /// The address the service called `name` listens on first.
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.0
            .iter()
            .find(|l| l.service.name == name)
            .and_then(|l| l.local_addr().ok())
    }
}

/// Binds every service on every address, TCP and UDP on the same port. A
/// service asked for port 0 gets one free port, the same on all addresses.
pub fn bind(addrs: &[IpAddr], services: &[Service]) -> Result<Listeners, Error> {
    let mut all = Vec::new();
    for &service in services {
        let mut attempt = 0;
        let bound = loop {
            match try_bind(addrs, service) {
                Ok(bound) => break bound,
                Err((_, e))
                    if service.port == 0
                        && e.kind() == io::ErrorKind::AddrInUse
                        && attempt < PORT_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err((addr, e)) => return Err(describe_bind(&e, addr, service, services)),
            }
        };
        all.extend(bound);
    }
    Ok(Listeners(all))
}

fn try_bind(addrs: &[IpAddr], service: Service) -> Result<Vec<Listener>, (SocketAddr, io::Error)> {
    let mut port = service.port;
    let mut bound = Vec::new();
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let tcp = TcpListener::bind(addr).map_err(|e| (addr, e))?;
        // SAFETY: a valid listening descriptor; listen(2) on a socket already
        // listening only changes its backlog.
        if unsafe { libc::listen(tcp.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            return Err((addr, io::Error::last_os_error()));
        }
        port = tcp.local_addr().map_err(|e| (addr, e))?.port();
        let addr = SocketAddr::new(ip, port);
        let udp = UdpSocket::bind(addr).map_err(|e| (addr, e))?;
        bound.push(Listener { service, tcp, udp });
    }
    Ok(bound)
}

/// The command-line flag that sets `service`'s port.
fn port_flag(service: &Service) -> String {
    match service.name {
        tapstack::services::upper::NAME => "--upper-port".into(),
        name => format!("--{name}-port"),
    }
}

/// Says why binding `service` on `addr` failed; for a privileged port, the
/// flags that move every service asked for below 1024 (not just this one),
/// so one retry is enough.
fn describe_bind(err: &io::Error, addr: SocketAddr, service: Service, all: &[Service]) -> Error {
    let flag = port_flag(&service);
    Error::failure(match err.kind() {
        io::ErrorKind::PermissionDenied => {
            let moves: Vec<String> = all
                .iter()
                .filter(|s| (1..1024).contains(&s.port))
                .map(|s| format!("{} {}", port_flag(s), 7000 + s.port))
                .collect();
            format!(
                "permission denied listening on {addr}: ports below 1024 need root (or CAP_NET_BIND_SERVICE); try {}",
                moves.join(" ")
            )
        }
        io::ErrorKind::AddrInUse => format!(
            "{addr} is already in use by another program (another hostnet serve?); try {flag} with another port"
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this host: see `ip addr`",
            addr.ip()
        ),
        _ => format!("cannot listen on {addr}: {err}"),
    })
}

/// Tells a running [`serve`] to stop. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    signals: bool,
}

/// Set by the SIGINT/SIGTERM handler; only an atomic store, which is
/// async-signal-safe.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

impl Shutdown {
    /// A shutdown that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that also fires on SIGINT (Ctrl-C) and SIGTERM, so the
    /// server stops cleanly and prints what it served.
    pub fn on_signals() -> Self {
        let handler = on_signal as extern "C" fn(libc::c_int);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; `signal` has no other precondition.
            unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        }
        Self {
            flag: Arc::default(),
            signals: true,
        }
    }

    /// Asks the server to stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || (self.signals && SIGNALLED.load(Ordering::SeqCst))
    }
}

/// How the server treats its clients.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// TCP connections served at once.
    pub max_connections: usize,
    /// A TCP connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Log connections and datagrams on stderr.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: Duration::from_secs(600),
            verbose: false,
        }
    }
}

/// What a server did, counted while it runs.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    turned_away: AtomicU64,
    tcp_bytes: AtomicU64,
    datagrams: AtomicU64,
    udp_bytes: AtomicU64,
    discarded: AtomicU64,
}

/// What a server did, once stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// TCP connections served.
    pub connections: u64,
    /// TCP connections closed at once because `max_connections` were busy.
    pub turned_away: u64,
    /// Bytes answered over TCP.
    pub tcp_bytes: u64,
    /// Datagrams answered.
    pub datagrams: u64,
    /// Bytes answered over UDP.
    pub udp_bytes: u64,
    /// Bytes received and dropped: discard's (TCP and UDP) and what chargen's
    /// TCP clients sent.
    pub discarded: u64,
}

/// Serves until `shutdown` fires, then waits for every connection to end
/// (each notices within [`TICK`]) and returns what it served.
pub fn serve(listeners: Listeners, shutdown: Shutdown, config: Config) -> io::Result<Totals> {
    for l in &listeners.0 {
        l.tcp.set_nonblocking(true)?;
        l.udp.set_nonblocking(true)?;
    }
    let counters = Arc::new(Counters::default());
    let mut workers = Workers::new();
    let mut fds: Vec<libc::pollfd> = listeners
        .0
        .iter()
        .flat_map(|l| [l.tcp.as_raw_fd(), l.udp.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut datagram = vec![0u8; MAX_DATAGRAM];
    // Datagrams each UDP socket has received: chargen answers the k-th with line k.
    let mut received = vec![0usize; listeners.0.len()];
    let tick_ms = libc::c_int::try_from(TICK.as_millis()).unwrap_or(100);

    while !shutdown.is_triggered() {
        // SAFETY: `fds` is a live, correctly sized array of pollfd for the
        // duration of the call; the descriptors belong to `listeners`.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, tick_ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue; // a signal: the loop condition decides
            }
            return Err(err);
        }
        for (i, l) in listeners.0.iter().enumerate() {
            if fds[2 * i].revents != 0 {
                accept_burst(l, &shutdown, config, &counters, &mut workers);
            }
            if fds[2 * i + 1].revents != 0 {
                answer_burst(l, &mut received[i], &mut datagram, config, &counters);
            }
        }
    }
    workers.join();
    Ok(Totals {
        connections: counters.connections.load(Ordering::Relaxed),
        turned_away: counters.turned_away.load(Ordering::Relaxed),
        tcp_bytes: counters.tcp_bytes.load(Ordering::Relaxed),
        datagrams: counters.datagrams.load(Ordering::Relaxed),
        udp_bytes: counters.udp_bytes.load(Ordering::Relaxed),
        discarded: counters.discarded.load(Ordering::Relaxed),
    })
}

/// Threads that serve TCP connections, one connection at a time each. A
/// thread is started when every existing one is busy (up to the connection
/// limit) and then kept: starting a thread per connection costs milliseconds
/// on a small VM, which would make the kernel baseline's connection rate
/// measure thread creation instead of the stack.
struct Workers {
    jobs: mpsc::Sender<Job>,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    threads: Vec<JoinHandle<()>>,
    /// Connections handed over and not yet finished.
    busy: Arc<AtomicUsize>,
}

/// A connection for a worker, with the service it came in on.
struct Job {
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
}

impl Workers {
    fn new() -> Self {
        let (jobs, queue) = mpsc::channel();
        Self {
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            threads: Vec::new(),
            busy: Arc::default(),
        }
    }

    /// Hands a connection to a free worker, starting one if none is free.
    /// Gives it back when `max` connections are already being served.
    fn dispatch(
        &mut self,
        job: Job,
        max: usize,
        shutdown: &Shutdown,
        config: Config,
        counters: &Arc<Counters>,
    ) -> Result<(), Job> {
        let busy = self.busy.load(Ordering::Acquire);
        if busy >= max {
            return Err(job);
        }
        if busy >= self.threads.len() {
            let (queue, busy, shutdown, counters) = (
                self.queue.clone(),
                self.busy.clone(),
                shutdown.clone(),
                counters.clone(),
            );
            let name = format!("tcp-{}", self.threads.len());
            match thread::Builder::new()
                .name(name)
                .spawn(move || work(&queue, &busy, &shutdown, config, &counters))
            {
                Ok(handle) => self.threads.push(handle),
                Err(e) if self.threads.is_empty() => {
                    eprintln!("hostnet: cannot start a thread: {e}");
                    return Err(job);
                }
                Err(_) => {} // the existing workers will take it in turn
            }
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        // The receiver lives as long as `self.queue`: sending cannot fail.
        self.jobs.send(job).map_err(|e| e.0)
    }

    fn join(self) {
        drop(self.jobs);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// A worker: takes connections one by one until the shutdown.
fn work(
    queue: &Mutex<mpsc::Receiver<Job>>,
    busy: &AtomicUsize,
    shutdown: &Shutdown,
    config: Config,
    counters: &Counters,
) {
    while !shutdown.is_triggered() {
        let next = match queue.lock() {
            Ok(queue) => queue.recv_timeout(TICK),
            Err(_) => return,
        };
        let job = match next {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let bytes = serve_connection(
            job.stream,
            job.service,
            shutdown,
            config.idle_timeout,
            counters,
        );
        if config.verbose {
            eprintln!(
                "hostnet: {} tcp {}: closed after {bytes} bytes",
                job.service.name,
                display_addr(job.peer)
            );
        }
        busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_burst(
    l: &Listener,
    shutdown: &Shutdown,
    config: Config,
    counters: &Arc<Counters>,
    workers: &mut Workers,
) {
    for _ in 0..BURST {
        let (stream, peer) = match l.tcp.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // ECONNABORTED, EMFILE, ...: this client is lost, the server goes on.
                if config.verbose {
                    eprintln!("hostnet: accept on {}: {e}", l.service.name);
                }
                return;
            }
        };
        let job = Job {
            stream,
            peer,
            service: l.service,
        };
        match workers.dispatch(job, config.max_connections, shutdown, config, counters) {
            Ok(()) => {
                counters.connections.fetch_add(1, Ordering::Relaxed);
            }
            Err(_closed) => {
                counters.turned_away.fetch_add(1, Ordering::Relaxed);
                if config.verbose {
                    eprintln!(
                        "hostnet: {} tcp {}: turned away, {} connections busy",
                        l.service.name,
                        display_addr(peer),
                        config.max_connections
                    );
                }
            }
        }
    }
}

/// Serves one TCP connection as its service does, until the client is done.
/// Returns the bytes answered (echo, upper-case, chargen) or dropped (discard).
fn serve_connection(
    stream: TcpStream,
    service: Service,
    shutdown: &Shutdown,
    idle_timeout: Duration,
    counters: &Counters,
) -> u64 {
    match service.kind {
        Kind::Transform => answer_stream(stream, service, shutdown, idle_timeout, counters),
        Kind::Discard => discard_stream(stream, shutdown, idle_timeout, counters),
        Kind::Chargen => chargen_stream(stream, shutdown, idle_timeout, counters),
    }
}

/// Echoes one TCP connection through the service's transform until the
/// client closes its side; then closes ours. Returns the bytes answered.
fn answer_stream(
    stream: TcpStream,
    service: Service,
    shutdown: &Shutdown,
    idle_timeout: Duration,
    counters: &Counters,
) -> u64 {
    let _ = stream.set_nodelay(true);
    read_until_fin(stream, CHUNK, shutdown, idle_timeout, |stream, bytes| {
        (service.transform)(bytes);
        stream.write_all(bytes)?;
        counters
            .tcp_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    })
}

/// Reads and drops one TCP connection until the client half-closes; then
/// closes ours, so the client knows every byte was taken. Returns the bytes
/// dropped.
fn discard_stream(
    stream: TcpStream,
    shutdown: &Shutdown,
    idle_timeout: Duration,
    counters: &Counters,
) -> u64 {
    read_until_fin(stream, BULK_CHUNK, shutdown, idle_timeout, |_, bytes| {
        counters
            .discarded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    })
}

/// Reads one TCP connection in `chunk`-byte reads, handing each read to
/// `take` (which may answer on the stream), until the client sends its FIN,
/// then closes ours; gives up on a reset, an error from `take`, the server's
/// shutdown or `idle_timeout` of silence. Returns the bytes taken.
fn read_until_fin(
    mut stream: TcpStream,
    chunk: usize,
    shutdown: &Shutdown,
    idle_timeout: Duration,
    mut take: impl FnMut(&mut TcpStream, &mut [u8]) -> io::Result<()>,
) -> u64 {
    // Accepted sockets do not inherit O_NONBLOCK on Linux; say so anyway.
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TICK)).is_err()
        || stream.set_write_timeout(Some(idle_timeout)).is_err()
    {
        return 0;
    }
    let mut buf = vec![0u8; chunk];
    let mut taken = 0u64;
    let mut last_heard = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                // The client sent FIN: everything it sent is taken, so close ours.
                let _ = stream.shutdown(Direction::Write);
                break;
            }
            Ok(n) => {
                if take(&mut stream, &mut buf[..n]).is_err() {
                    break;
                }
                taken += n as u64;
                last_heard = Instant::now();
            }
            Err(e) if net::is_timeout(&e) => {
                if shutdown.is_triggered() || last_heard.elapsed() >= idle_timeout {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break, // reset by the client
        }
    }
    taken
}

/// The chargen stream from any offset below [`chargen::PERIOD`] for
/// [`BULK_CHUNK`] bytes is a slice of this: a write is then one system call
/// on a slice, with no copy.
fn chargen_buffer() -> Vec<u8> {
    let mut stream = vec![0u8; chargen::PERIOD + BULK_CHUNK];
    chargen::fill(0, &mut stream);
    stream
}

/// Sends the chargen pattern on one TCP connection for as long as the client
/// reads, dropping whatever it sends, until it half-closes (then closes
/// ours), resets, or neither reads nor sends for `idle_timeout`. One
/// `poll(2)` watches both ways, so a client that stops reading cannot keep
/// the worker from seeing its close or the shutdown. Returns the bytes sent.
fn chargen_stream(
    mut stream: TcpStream,
    shutdown: &Shutdown,
    idle_timeout: Duration,
    counters: &Counters,
) -> u64 {
    if stream.set_nonblocking(true).is_err() {
        return 0;
    }
    let pattern = chargen_buffer();
    let mut sink = vec![0u8; CHUNK];
    let mut offset = 0usize; // in the pattern, below PERIOD
    let mut sent = 0u64;
    let mut last_progress = Instant::now();
    let tick_ms = libc::c_int::try_from(TICK.as_millis()).unwrap_or(100);
    while !shutdown.is_triggered() && last_progress.elapsed() < idle_timeout {
        let mut fd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live pollfd for the duration of the call; the
        // descriptor belongs to `stream`.
        let ready = unsafe { libc::poll(&mut fd, 1, tick_ms) };
        if ready <= 0 {
            continue; // the tick, or a signal: the loop condition decides
        }
        if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match stream.read(&mut sink) {
                Ok(0) => return sent, // the client's FIN: dropping `stream` closes ours
                Ok(n) => {
                    counters.discarded.fetch_add(n as u64, Ordering::Relaxed);
                    last_progress = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return sent, // reset by the client
            }
        }
        if fd.revents & libc::POLLOUT != 0 {
            // Fill the send buffer until the kernel says it is full.
            loop {
                match stream.write(&pattern[offset..offset + BULK_CHUNK]) {
                    Ok(n) => {
                        offset = (offset + n) % chargen::PERIOD;
                        sent += n as u64;
                        counters.tcp_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return sent, // reset, or the client has gone
                }
            }
        }
    }
    sent
}

/// Answers a burst of datagrams on `l`; `received` counts the datagrams
/// this socket has received (chargen answers the k-th with line k).
fn answer_burst(
    l: &Listener,
    received: &mut usize,
    buf: &mut [u8],
    config: Config,
    counters: &Counters,
) {
    for _ in 0..BURST {
        let (n, peer) = match l.udp.recv_from(buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => continue, // e.g. a stale ICMP error for an earlier reply
        };
        let index = *received;
        *received = received.wrapping_add(1);
        let reply: &[u8] = match l.service.kind {
            Kind::Transform => {
                (l.service.transform)(&mut buf[..n]);
                &buf[..n]
            }
            Kind::Chargen => chargen::line(index),
            Kind::Discard => {
                counters.discarded.fetch_add(n as u64, Ordering::Relaxed);
                if config.verbose {
                    eprintln!(
                        "hostnet: {} udp {}: {n} bytes dropped",
                        l.service.name,
                        display_addr(peer)
                    );
                }
                continue;
            }
        };
        let len = reply.len();
        match l.udp.send_to(reply, peer) {
            Ok(_) => {
                counters.datagrams.fetch_add(1, Ordering::Relaxed);
                counters.udp_bytes.fetch_add(len as u64, Ordering::Relaxed);
                if config.verbose {
                    eprintln!(
                        "hostnet: {} udp {}: {n} bytes in, {len} bytes out",
                        l.service.name,
                        display_addr(peer)
                    );
                }
            }
            // A full send buffer drops the reply, as UDP may.
            Err(e) if config.verbose => eprintln!(
                "hostnet: {} udp {}: reply dropped: {e}",
                l.service.name,
                display_addr(peer)
            ),
            Err(_) => {}
        }
    }
}

/// Runs `hostnet serve`.
pub fn run(args: Args) -> Result<(), Error> {
    let services = [
        Service::echo(args.echo_port),
        Service::upper(args.upper_port),
        Service::discard(args.discard_port),
        Service::chargen(args.chargen_port),
    ];
    let listeners = if args.bind.is_empty() {
        // `::` takes IPv4 too (bindv6only=0); where IPv6 is off, fall back.
        bind(&[IpAddr::V6(Ipv6Addr::UNSPECIFIED)], &services)
            .or_else(|_| bind(&[IpAddr::V4(Ipv4Addr::UNSPECIFIED)], &services))?
    } else {
        bind(&args.bind, &services)?
    };
    let mut out = io::stdout().lock();
    for l in &listeners.0 {
        let addr = l
            .local_addr()
            .map_err(|e| Error::failure(format!("local address: {e}")))?;
        let _ = writeln!(out, "hostnet: serving {} on tcp+udp {addr}", l.service.name);
    }
    let _ = writeln!(out, "hostnet: ready (Ctrl-C stops)");
    let _ = out.flush();
    drop(out);

    let config = Config {
        max_connections: args.max_connections.max(1),
        idle_timeout: args.idle_timeout,
        verbose: args.verbose,
    };
    let totals = serve(listeners, Shutdown::on_signals(), config)
        .map_err(|e| Error::failure(format!("serving: {e}")))?;
    eprintln!(
        "hostnet: stopped: {} tcp connections ({} turned away), {} tcp bytes, {} datagrams ({} bytes), {} bytes discarded",
        totals.connections,
        totals.turned_away,
        totals.tcp_bytes,
        totals.datagrams,
        totals.udp_bytes,
        totals.discarded
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_one_port_for_tcp_and_udp_on_every_address() {
        let addrs = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let listeners = bind(&addrs, &[Service::echo(0), Service::upper(0)]).unwrap();
        for l in &listeners.0 {
            assert_eq!(l.tcp.local_addr().unwrap(), l.udp.local_addr().unwrap());
            assert_ne!(l.tcp.local_addr().unwrap().port(), 0);
        }
    }

    #[test]
    fn a_privileged_port_names_every_flag_to_move() {
        let services = [
            Service::echo(7),
            Service::upper(11111),
            Service::discard(9),
            Service::chargen(19),
        ];
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let addr: SocketAddr = "[::]:7".parse().unwrap();
        let message = describe_bind(&denied, addr, services[0], &services).to_string();
        assert!(
            message.ends_with("try --echo-port 7007 --discard-port 7009 --chargen-port 7019"),
            "{message}"
        );
        let taken = io::Error::from(io::ErrorKind::AddrInUse);
        let message = describe_bind(&taken, addr, services[3], &services).to_string();
        assert!(
            message.contains("try --chargen-port with another port"),
            "{message}"
        );
    }

    /// UDP: chargen answers the k-th datagram of each socket with line k;
    /// discard answers none. TCP: chargen's stream is the pattern from byte
    /// 0, and it closes on the client's FIN; discard closes on it too.
    #[test]
    fn discard_and_chargen_as_the_stack_serves_them() {
        let addrs = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let listeners = bind(&addrs, &[Service::discard(0), Service::chargen(0)]).unwrap();
        let discard = listeners
            .addr_of(tapstack::services::discard::NAME)
            .unwrap();
        let chargen = listeners.addr_of(chargen::NAME).unwrap();
        let shutdown = Shutdown::new();
        let server = {
            let shutdown = shutdown.clone();
            thread::spawn(move || serve(listeners, shutdown, Config::default()))
        };
        let t = Some(Duration::from_secs(30));

        let to_discard = UdpSocket::bind("127.0.0.1:0").unwrap();
        to_discard.send_to(b"dropped", discard).unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(t).unwrap();
        let mut buf = [0u8; 128];
        for k in 0..3 {
            u.send_to(b"any", chargen).unwrap();
            let (n, from) = u.recv_from(&mut buf).unwrap();
            assert_eq!(
                (&buf[..n], from),
                (chargen::line(k), chargen),
                "datagram {k}"
            );
        }
        // Loopback delivers a datagram before send_to returns, and the
        // server reads discard before chargen: by the reply above, discard
        // had its datagram, and an answer to it would be queued already.
        to_discard.set_nonblocking(true).unwrap();
        let none = to_discard.recv_from(&mut buf).unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::WouldBlock, "discard answered");

        let mut s = TcpStream::connect(chargen).unwrap();
        s.set_read_timeout(t).unwrap();
        let mut first = vec![0u8; 3 * chargen::PERIOD + 11];
        s.read_exact(&mut first).unwrap();
        let mut pattern = vec![0u8; first.len()];
        chargen::fill(0, &mut pattern);
        assert!(first == pattern, "the stream is the pattern from byte 0");
        s.write_all(b"ignored").unwrap();
        s.shutdown(Direction::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap(); // ends: chargen closed on our FIN
        let mut more = vec![0u8; rest.len()];
        chargen::fill(first.len(), &mut more);
        assert!(rest == more, "what came after is still the pattern");

        let mut s = TcpStream::connect(discard).unwrap();
        s.set_read_timeout(t).unwrap();
        s.write_all(&vec![b'x'; 300_000]).unwrap();
        s.shutdown(Direction::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap(); // ends: discard closed on our FIN
        assert!(back.is_empty(), "discard sent {} bytes", back.len());

        shutdown.trigger();
        let totals = server.join().unwrap().unwrap();
        assert_eq!(
            totals.discarded,
            7 + 7 + 300_000,
            "dropped: udp, chargen tcp, discard tcp"
        );
        assert_eq!((totals.datagrams, totals.udp_bytes), (3, 3 * 74));
        assert_eq!(
            totals.tcp_bytes,
            (first.len() + rest.len()) as u64,
            "bytes chargen sent"
        );
    }

    #[test]
    fn serves_until_shutdown_then_reports() {
        let addrs = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        let listeners = bind(&addrs, &[Service::echo(0), Service::upper(0)]).unwrap();
        let upper = listeners.addr_of(tapstack::services::upper::NAME).unwrap();
        let shutdown = Shutdown::new();
        let server = {
            let shutdown = shutdown.clone();
            thread::spawn(move || serve(listeners, shutdown, Config::default()))
        };
        let mut s = TcpStream::connect(upper).unwrap();
        s.write_all(b"MixedCase 42\n").unwrap();
        s.shutdown(Direction::Write).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"MIXEDCASE 42\n");

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"abc", upper).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"ABC"[..], upper));

        // A connection still open when the stop comes is closed by it.
        let _idle = TcpStream::connect(upper).unwrap();
        shutdown.trigger();
        let totals = server.join().unwrap().unwrap();
        assert_eq!(totals.tcp_bytes, 13);
        assert_eq!((totals.datagrams, totals.udp_bytes), (1, 3));
        assert!(totals.connections >= 1);
    }
}

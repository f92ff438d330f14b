//! `hostnet bench`: measures a target that serves echo (RFC 862), and
//! optionally discard (RFC 863) and chargen (RFC 864).
//!
//! Six measurements, each verified, none trusted blindly:
//! - **tcp**: one connection sends and receives at once; every byte that
//!   comes back is compared with the byte sent at that offset;
//! - **discard** (host to target): one connection sends as fast as it can,
//!   half-closes, and waits for the target's close, which a discard service
//!   sends only once it has taken every byte;
//! - **chargen** (target to host): one connection reads the chargen stream,
//!   every byte compared with the pattern at that offset;
//! - **udp**: round-trip time of datagrams sent one at a time (each carries a
//!   sequence number, so a late reply is never taken for a newer one);
//! - **connect**: sequential connect/close for a fixed time, counting refusals;
//! - **concurrency**: N clients at once, each verified, aggregate throughput.
//!
//! By default the four echo measurements run (any echo server will do);
//! discard and chargen run when `--only` names them. Throughputs are kept
//! per round as well, and discard and chargen are shown as the median of
//! their rounds.
//!
//! With `--vs`, the same measurements run against a second target in the
//! same run, alternating round by round (A B A B ...), so that a noisy
//! machine slows both alike and the ratio holds. Every wait has a timeout: a
//! target that stops answering ends its measurements with a clear message,
//! the results so far are shown, and the exit code is 1.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use tapstack::config::{CHARGEN_PORT, DISCARD_PORT, ECHO_PORT, STACK_IPV4};
use tapstack::services::chargen;

use crate::Error;
use crate::json::Value;
use crate::net::{self, Family};
use crate::progress::Progress;
use crate::units::{fmt_bytes, fmt_duration, fmt_gbits, fmt_rate, parse_duration, parse_size};

/// The byte pattern repeats every 251 x 256 bytes: 251 is prime, so no
/// segment or buffer size lines up with it, and the second factor makes a
/// lost or repeated run of 251 bytes visible too.
const PERIOD: usize = 251 * 256;
/// Bytes moved per read or write.
const CHUNK: usize = 64 * 1024;
/// Bytes moved per read or write by discard and chargen: large, so the
/// client's system calls are not what is measured.
const ONEWAY_CHUNK: usize = 256 * 1024;
/// Datagrams lost in a row after which a target is taken to have stopped.
const LOST_IN_A_ROW: u32 = 5;
/// Connection attempts timed out in a row after which a target is taken to have stopped.
const TIMEOUTS_IN_A_ROW: u32 = 3;
/// Upper bound on connection attempts in one round, whatever the duration.
const MAX_ATTEMPTS: u64 = 1_000_000;
/// The UDP payload carries a sequence number of this many bytes first.
const SEQ_LEN: usize = 8;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// One of the six measurements.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measurement {
    /// TCP echo throughput, one connection.
    Tcp,
    /// TCP throughput from host to target: the discard service.
    Discard,
    /// TCP throughput from target to host: the chargen service.
    Chargen,
    /// UDP round-trip time.
    Udp,
    /// Sequential connect/close rate.
    Connect,
    /// N clients at once.
    Concurrency,
}

impl Measurement {
    /// Every measurement, in the order they run.
    const ALL: [Self; 6] = [
        Self::Tcp,
        Self::Discard,
        Self::Chargen,
        Self::Udp,
        Self::Connect,
        Self::Concurrency,
    ];
    /// What runs without `--only`: the echo measurements, which any echo
    /// server answers (discard and chargen need two more services).
    const DEFAULT: [Self; 4] = [Self::Tcp, Self::Udp, Self::Connect, Self::Concurrency];

    fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp throughput",
            Self::Discard => "discard, host to target",
            Self::Chargen => "chargen, target to host",
            Self::Udp => "udp round trip",
            Self::Connect => "connect rate",
            Self::Concurrency => "concurrency",
        }
    }
}

/// `hostnet bench` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Target serving echo: HOST, or HOST:PORT (IPv6 in brackets). Default: the stack.
    #[arg(value_name = "HOST")]
    pub target: Option<String>,
    /// Port of the echo service, for targets given without one.
    #[arg(long, value_name = "PORT", default_value_t = ECHO_PORT, value_parser = net::parse_port)]
    pub port: u16,
    /// Port of the discard service, on every target.
    #[arg(long, value_name = "PORT", default_value_t = DISCARD_PORT, value_parser = net::parse_port)]
    pub discard_port: u16,
    /// Port of the chargen service, on every target.
    #[arg(long, value_name = "PORT", default_value_t = CHARGEN_PORT, value_parser = net::parse_port)]
    pub chargen_port: u16,
    /// A second target, measured in the same run, alternating; prints the ratio.
    #[arg(long, value_name = "HOST2")]
    pub vs: Option<String>,
    /// Name for the first target's column (default: its address).
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Name for the second target's column (default: its address).
    #[arg(long, value_name = "NAME")]
    pub vs_label: Option<String>,
    /// Bytes for the TCP throughput, and in all for the concurrent clients (100M = 10^8 bytes).
    #[arg(long, value_name = "BYTES", default_value = "100M", value_parser = parse_size)]
    pub size: u64,
    /// Bytes for discard and for chargen, each, in all rounds together.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    pub oneway_size: u64,
    /// Datagrams for the UDP round-trip time.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Payload bytes per datagram (at least 8: a sequence number).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65_507))]
    pub datagram_size: u64,
    /// How long to open and close connections, in all.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Clients at once for the concurrency measurement.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub clients: u64,
    /// Each measurement is split into this many rounds, alternating between targets.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Give up any single wait (connect, a reply, the next bytes) after this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Only these measurements (comma-separated) [default: tcp,udp,connect,concurrency].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub only: Vec<Measurement>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write every UDP round-trip time to FILE, one per line: the target's
    /// label, a tab, the time in µs (for a CDF or a histogram).
    #[arg(long, value_name = "FILE")]
    pub samples: Option<std::path::PathBuf>,
    /// Print each result on stderr as soon as it is measured.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened: its fields carry the docs
    pub family: Family,
}

/// Examples for `hostnet bench --help`.
pub fn examples() -> String {
    let v4 = STACK_IPV4.address();
    format!(
        "Examples:
  hostnet bench                                    the stack at {v4}, echo port {ECHO_PORT}
  hostnet bench {v4} --vs 10.0.0.2 --label tapstack --vs-label kernel
  hostnet bench 127.0.0.1:7007 --only tcp,udp --size 10M --json
  hostnet bench {v4} --only discard,chargen
                                                   one-way throughput (ports {DISCARD_PORT} and {CHARGEN_PORT})
  hostnet bench {v4} --only udp --samples rtt.tsv
                                                   and every round-trip time, for a chart

Every byte and datagram is checked. A progress bar shows on a terminal only.
Exit codes: 0 all measured, 1 a target refused, stopped answering or answered wrong
(results so far are printed), 2 bad usage."
    )
}

/// The settings a run uses, derived from [`Args`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Targets: label and address (of the echo service).
    pub targets: Vec<(String, SocketAddr)>,
    /// Measurements, in order.
    pub measurements: Vec<Measurement>,
    /// See [`Args::discard_port`].
    pub discard_port: u16,
    /// See [`Args::chargen_port`].
    pub chargen_port: u16,
    /// See [`Args::size`].
    pub size: u64,
    /// See [`Args::oneway_size`].
    pub oneway_size: u64,
    /// See [`Args::count`].
    pub count: u64,
    /// See [`Args::datagram_size`].
    pub datagram_size: usize,
    /// See [`Args::duration`].
    pub duration: Duration,
    /// See [`Args::clients`].
    pub clients: u64,
    /// See [`Args::rounds`].
    pub rounds: u64,
    /// See [`Args::timeout`].
    pub timeout: Duration,
    /// See [`Args::verbose`].
    pub verbose: bool,
}

impl Settings {
    /// Resolves the targets and fills in the defaults.
    pub fn from_args(args: &Args) -> Result<Self, Error> {
        let first = args
            .target
            .clone()
            .unwrap_or_else(|| STACK_IPV4.address().to_string());
        let mut targets = vec![(args.label.clone(), first)];
        if let Some(vs) = &args.vs {
            targets.push((args.vs_label.clone(), vs.clone()));
        }
        let targets = targets
            .into_iter()
            .map(|(label, target)| {
                let addr = net::resolve_target(&target, args.port, args.family)?[0];
                Ok((label.unwrap_or_else(|| addr.to_string()), addr))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let measurements = if args.only.is_empty() {
            Measurement::DEFAULT.to_vec()
        } else {
            Measurement::ALL
                .into_iter()
                .filter(|m| args.only.contains(m))
                .collect()
        };
        Ok(Self {
            targets,
            measurements,
            discard_port: args.discard_port,
            chargen_port: args.chargen_port,
            size: args.size,
            oneway_size: args.oneway_size,
            count: args.count,
            // Range-checked by clap: 8 to 65507.
            datagram_size: usize::try_from(args.datagram_size).unwrap_or(MAX_DATAGRAM),
            duration: args.duration,
            clients: args.clients,
            rounds: args.rounds,
            timeout: args.timeout,
            verbose: args.verbose,
        })
    }
}

/// Why a measurement ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What happened, in one sentence.
    pub message: String,
    /// The target stopped answering (a wait timed out): its remaining
    /// measurements are skipped rather than each waiting out its timeouts.
    pub stopped: bool,
}

impl Failure {
    fn stopped(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            stopped: true,
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            stopped: false,
        }
    }

    fn from_io(err: &io::Error, peer: SocketAddr, timeout: Duration) -> Self {
        Self {
            message: net::describe_transfer(err, peer, timeout),
            stopped: net::is_timeout(err),
        }
    }
}

/// TCP throughput over one connection, summed over rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Bytes it was asked to echo.
    pub expected: u64,
    /// Bytes that came back and matched.
    pub verified: u64,
    /// Time from the first byte sent to the last byte verified.
    pub elapsed: Duration,
    /// Verified bytes per second of each round that completed.
    pub rounds: Vec<f64>,
}

impl Throughput {
    /// Verified bytes per second.
    pub fn rate(&self) -> Option<f64> {
        rate(self.verified, self.elapsed)
    }

    /// The median of the rounds' bytes per second.
    pub fn median(&self) -> Option<f64> {
        median(&self.rounds)
    }

    /// Adds a round; a complete one also counts among the rounds' rates.
    fn add(&mut self, other: &Self, complete: bool) {
        self.expected += other.expected;
        self.verified += other.verified;
        self.elapsed += other.elapsed;
        if complete && let Some(r) = other.rate() {
            self.rounds.push(r);
        }
    }
}

fn rate(bytes: u64, elapsed: Duration) -> Option<f64> {
    (bytes > 0 && !elapsed.is_zero()).then(|| bytes as f64 / elapsed.as_secs_f64())
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// UDP round trips, summed over rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundTrips {
    /// Datagrams sent.
    pub sent: u64,
    /// Answered with the right bytes in time.
    pub answered: u64,
    /// Not answered within the timeout.
    pub lost: u64,
    /// Replies that came after their datagram was counted lost (discarded).
    pub late: u64,
    /// Round-trip time of each answered datagram.
    pub rtts: Vec<Duration>,
}

impl RoundTrips {
    /// The `p`th percentile (nearest rank) of the round-trip times.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort_unstable();
        percentile(&sorted, p)
    }

    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.late += other.late;
        self.rtts.extend_from_slice(&other.rtts);
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Sequential connect/close, summed over rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectRate {
    /// connect() calls.
    pub attempts: u64,
    /// Established (then closed).
    pub connected: u64,
    /// Answered with a reset (no free socket, or nothing listening).
    pub refused: u64,
    /// No answer within the timeout.
    pub timed_out: u64,
    /// Any other error.
    pub other: u64,
    /// Time spent.
    pub elapsed: Duration,
    /// The client ran out of local ports (TIME-WAIT) and stopped early.
    pub ports_exhausted: bool,
}

impl ConnectRate {
    /// Established connections per second.
    pub fn rate(&self) -> Option<f64> {
        (!self.elapsed.is_zero()).then(|| self.connected as f64 / self.elapsed.as_secs_f64())
    }

    fn add(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.connected += other.connected;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.other += other.other;
        self.elapsed += other.elapsed;
        self.ports_exhausted |= other.ports_exhausted;
    }
}

/// N clients at once, summed over rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Concurrency {
    /// Clients started (per round: `--clients`).
    pub clients: u64,
    /// Clients whose every byte came back right.
    pub clients_verified: u64,
    /// Bytes all clients were asked to echo.
    pub expected: u64,
    /// Bytes that came back and matched.
    pub verified: u64,
    /// Wall time from the first client's start to the last one's end.
    pub elapsed: Duration,
    /// The slowest client's own throughput (bytes/s), over all rounds.
    pub slowest: Option<f64>,
}

impl Concurrency {
    /// Aggregate verified bytes per second.
    pub fn rate(&self) -> Option<f64> {
        rate(self.verified, self.elapsed)
    }

    fn add(&mut self, other: &Self) {
        self.clients += other.clients;
        self.clients_verified += other.clients_verified;
        self.expected += other.expected;
        self.verified += other.verified;
        self.elapsed += other.elapsed;
        self.slowest = match (self.slowest, other.slowest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Everything measured against one target.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Column name.
    pub label: String,
    /// Where it was measured.
    pub addr: Option<SocketAddr>,
    /// TCP throughput, if measured.
    pub tcp: Option<Throughput>,
    /// Discard throughput, if measured (`verified`: bytes whose delivery the
    /// target's close confirmed).
    pub discard: Option<Throughput>,
    /// Chargen throughput, if measured (`verified`: bytes that matched the pattern).
    pub chargen: Option<Throughput>,
    /// UDP round trips, if measured.
    pub udp: Option<RoundTrips>,
    /// Connection rate, if measured.
    pub connect: Option<ConnectRate>,
    /// Concurrency, if measured.
    pub concurrency: Option<Concurrency>,
    /// Failures, as `(measurement, failure)`.
    pub failures: Vec<(Measurement, Failure)>,
}

impl Report {
    fn stopped(&self) -> bool {
        self.failures.iter().any(|(_, f)| f.stopped)
    }

    fn failed(&self, m: Measurement) -> bool {
        self.failures.iter().any(|(fm, _)| *fm == m)
    }

    /// True when every measurement completed and verified.
    pub fn complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every measurement against every target, alternating round by round.
pub fn measure(settings: &Settings, progress: &Progress) -> Vec<Report> {
    let pattern = pattern();
    let stream = chargen_stream();
    let mut reports: Vec<Report> = settings
        .targets
        .iter()
        .map(|(label, addr)| Report {
            label: label.clone(),
            addr: Some(*addr),
            ..Report::default()
        })
        .collect();
    let rounds = settings.rounds;
    let mut next_seq = 0u64;
    for &m in &settings.measurements {
        for round in 0..rounds {
            for report in reports.iter_mut() {
                let Some(addr) = report.addr else { continue };
                if report.stopped() {
                    if !report.failed(m) && round == 0 {
                        report.failures.push((
                            m,
                            Failure::stopped("skipped: the target had stopped answering"),
                        ));
                    }
                    continue;
                }
                if report.failed(m) {
                    continue;
                }
                let label = format!("{} {} ({}/{rounds})", m.name(), report.label, round + 1);
                let failure = match m {
                    Measurement::Tcp => {
                        let bytes = share(settings.size, rounds, round);
                        progress.start(label, bytes);
                        let (got, failure) =
                            stream_round(addr, bytes, settings.timeout, &pattern, progress);
                        report
                            .tcp
                            .get_or_insert_with(Throughput::default)
                            .add(&got, failure.is_none());
                        failure
                    }
                    Measurement::Discard => {
                        let bytes = share(settings.oneway_size, rounds, round);
                        let addr = with_port(addr, settings.discard_port);
                        progress.start(label, bytes);
                        let (got, failure) =
                            discard_round(addr, bytes, settings.timeout, &stream, progress);
                        report
                            .discard
                            .get_or_insert_with(Throughput::default)
                            .add(&got, failure.is_none());
                        failure
                    }
                    Measurement::Chargen => {
                        let bytes = share(settings.oneway_size, rounds, round);
                        let addr = with_port(addr, settings.chargen_port);
                        progress.start(label, bytes);
                        let (got, failure) =
                            chargen_round(addr, bytes, settings.timeout, &stream, progress);
                        report
                            .chargen
                            .get_or_insert_with(Throughput::default)
                            .add(&got, failure.is_none());
                        failure
                    }
                    Measurement::Udp => {
                        let count = share(settings.count, rounds, round);
                        progress.start(label, count);
                        let (got, failure) = udp_round(
                            addr,
                            count,
                            settings.datagram_size,
                            next_seq,
                            settings.timeout,
                            progress,
                        );
                        next_seq += count;
                        report.udp.get_or_insert_with(RoundTrips::default).add(&got);
                        failure
                    }
                    Measurement::Connect => {
                        let duration = settings.duration.div_f64(rounds as f64);
                        progress.start(label, duration.as_millis().try_into().unwrap_or(u64::MAX));
                        let (got, failure) =
                            connect_round(addr, duration, settings.timeout, progress);
                        report
                            .connect
                            .get_or_insert_with(ConnectRate::default)
                            .add(&got);
                        failure
                    }
                    Measurement::Concurrency => {
                        let bytes = share(settings.size, rounds, round);
                        progress.start(label, bytes);
                        let (got, failure) = concurrency_round(
                            addr,
                            settings.clients,
                            bytes,
                            settings.timeout,
                            &pattern,
                            progress,
                        );
                        report
                            .concurrency
                            .get_or_insert_with(Concurrency::default)
                            .add(&got);
                        failure
                    }
                };
                if let Some(failure) = failure {
                    report.failures.push((m, failure));
                }
            }
        }
        progress.clear();
        if settings.verbose {
            for report in &reports {
                eprintln!(
                    "hostnet: {} {}: {}",
                    m.name(),
                    report.label,
                    summary(report, m)
                );
            }
        }
    }
    reports
}

/// `addr` with another port (an IPv6 link-local address keeps its scope).
fn with_port(mut addr: SocketAddr, port: u16) -> SocketAddr {
    addr.set_port(port);
    addr
}

/// Round `round`'s part of `total` split in `rounds` (the last takes the rest).
fn share(total: u64, rounds: u64, round: u64) -> u64 {
    let each = total / rounds;
    if round + 1 == rounds {
        total - each * (rounds - 1)
    } else {
        each
    }
}

/// The pattern, long enough that any chunk starting within one period is a slice of it.
fn pattern() -> Vec<u8> {
    (0..PERIOD + CHUNK)
        .map(|i| ((i % 251) as u8) ^ (((i / 251) % 256) as u8).rotate_left(3))
        .collect()
}

/// The expected bytes at stream offset `offset`, `len` long (`len <= CHUNK`).
fn expected(pattern: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern[start..start + len]
}

/// Connects and echoes `bytes` through one connection.
fn stream_round(
    addr: SocketAddr,
    bytes: u64,
    timeout: Duration,
    pattern: &[u8],
    progress: &Progress,
) -> (Throughput, Option<Failure>) {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => transfer(stream, bytes, timeout, pattern, progress),
        Err(e) => (
            Throughput {
                expected: bytes,
                ..Throughput::default()
            },
            Some(connect_failure(&e, addr, timeout)),
        ),
    }
}

/// Sends `bytes` of the pattern while reading the echo back and checking
/// every byte; then half-closes and expects the server's close.
fn transfer(
    stream: TcpStream,
    bytes: u64,
    timeout: Duration,
    pattern: &[u8],
    progress: &Progress,
) -> (Throughput, Option<Failure>) {
    let mut result = Throughput {
        expected: bytes,
        ..Throughput::default()
    };
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(e) => return (result, Some(Failure::failed(format!("peer address: {e}")))),
    };
    let setup = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.try_clone());
    let writer = match setup {
        Ok(writer) => writer,
        Err(e) => return (result, Some(Failure::from_io(&e, peer, timeout))),
    };
    let start = Instant::now();
    let (failure, write_result) = thread::scope(|s| {
        let write = s.spawn(move || -> io::Result<()> {
            let mut writer = writer;
            let mut sent = 0u64;
            while sent < bytes {
                let n = (bytes - sent).min(CHUNK as u64) as usize;
                writer.write_all(expected(pattern, sent, n))?;
                sent += n as u64;
            }
            writer.shutdown(Shutdown::Write)
        });
        let failure = verify(
            &stream,
            bytes,
            pattern,
            &mut result,
            start,
            peer,
            timeout,
            progress,
        );
        if failure.is_some() {
            // Unblocks the writer at once rather than after its timeout.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let write_result = write
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
        (failure, write_result)
    });
    let failure = failure.or_else(|| {
        write_result
            .err()
            .map(|e| Failure::from_io(&e, peer, timeout))
    });
    (result, failure)
}

/// Reads the echo, comparing each byte with what was sent at that offset.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn verify(
    mut stream: &TcpStream,
    bytes: u64,
    pattern: &[u8],
    result: &mut Throughput,
    start: Instant,
    peer: SocketAddr,
    timeout: Duration,
    progress: &Progress,
) -> Option<Failure> {
    let mut buf = vec![0u8; CHUNK];
    while result.verified < bytes {
        let want = (bytes - result.verified).min(CHUNK as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Some(Failure::failed(format!(
                    "{peer} closed the connection after echoing {} of {} bytes",
                    result.verified, bytes
                )));
            }
            Ok(n) => {
                let sent = expected(pattern, result.verified, n);
                if let Some(i) = (0..n).find(|&i| buf[i] != sent[i]) {
                    return Some(Failure::failed(format!(
                        "byte {} came back wrong from {peer}: sent {:#04x}, got {:#04x} (is it an echo service?)",
                        result.verified + i as u64,
                        sent[i],
                        buf[i]
                    )));
                }
                result.verified += n as u64;
                result.elapsed = start.elapsed();
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let mut failure = Failure::from_io(&e, peer, timeout);
                failure.message = format!(
                    "{} after echoing {} of {} bytes",
                    failure.message, result.verified, bytes
                );
                return Some(failure);
            }
        }
    }
    match stream.read(&mut buf[..1]) {
        Ok(0) => None,
        Ok(_) => Some(Failure::failed(format!(
            "{peer} sent back more bytes than it was sent"
        ))),
        Err(e) => {
            let mut failure = Failure::from_io(&e, peer, timeout);
            failure.message = format!(
                "{} (waiting for its close after the last byte)",
                failure.message
            );
            Some(failure)
        }
    }
}

/// The chargen stream from any offset below [`chargen::PERIOD`] for
/// [`ONEWAY_CHUNK`] bytes is a slice of this. Discard is sent the same
/// bytes: printable lines, readable in a capture.
fn chargen_stream() -> Vec<u8> {
    let mut stream = vec![0u8; chargen::PERIOD + ONEWAY_CHUNK];
    chargen::fill(0, &mut stream);
    stream
}

/// The chargen stream at `offset`, `len` long (`len <= ONEWAY_CHUNK`).
fn chargen_at(stream: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = (offset % chargen::PERIOD as u64) as usize;
    &stream[start..start + len]
}

/// Where `received`, which came at stream offset `offset`, first differs
/// from the chargen pattern: `(offset of the byte, expected, got)`.
fn chargen_mismatch(stream: &[u8], offset: u64, received: &[u8]) -> Option<(u64, u8, u8)> {
    let expected = chargen_at(stream, offset, received.len());
    if expected == received {
        return None; // one memcmp: the usual case
    }
    let i = (0..received.len()).find(|&i| received[i] != expected[i])?;
    Some((offset + i as u64, expected[i], received[i]))
}

/// A byte for an error message: `0x41 'A'`, or `0x0d` when not printable.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("{b:#04x} '{}'", b as char)
    } else {
        format!("{b:#04x}")
    }
}

/// A connect that failed, as a round's failure.
fn connect_failure(err: &io::Error, addr: SocketAddr, timeout: Duration) -> Failure {
    Failure {
        message: net::describe_connect(err, addr, timeout),
        stopped: net::is_timeout(err),
    }
}

/// Host to target: sends `bytes` to a discard service as fast as it takes
/// them, half-closes, and waits for its close, which tells that it has read
/// every byte. Timed from before the connect to the close.
fn discard_round(
    addr: SocketAddr,
    bytes: u64,
    timeout: Duration,
    stream: &[u8],
    progress: &Progress,
) -> (Throughput, Option<Failure>) {
    let mut result = Throughput {
        expected: bytes,
        ..Throughput::default()
    };
    let start = Instant::now();
    let mut conn = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(conn) => conn,
        Err(e) => return (result, Some(connect_failure(&e, addr, timeout))),
    };
    let with_context = |e: &io::Error, context: String| {
        let mut failure = Failure::from_io(e, addr, timeout);
        failure.message = format!("{} {context}", failure.message);
        failure
    };
    if let Err(e) = conn
        .set_write_timeout(Some(timeout))
        .and_then(|()| conn.set_read_timeout(Some(timeout)))
    {
        return (result, Some(Failure::failed(format!("socket: {e}"))));
    }
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(ONEWAY_CHUNK as u64) as usize;
        match conn.write(chargen_at(stream, sent, n)) {
            Ok(0) => {
                return (
                    result,
                    Some(Failure::failed(format!(
                        "{addr} took no more bytes after {sent} of {bytes}"
                    ))),
                );
            }
            Ok(n) => {
                sent += n as u64;
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let context = format!("after sending {sent} of {bytes} bytes");
                return (result, Some(with_context(&e, context)));
            }
        }
    }
    if let Err(e) = conn.shutdown(Shutdown::Write) {
        let context = "(half-closing after the last byte)".to_owned();
        return (result, Some(with_context(&e, context)));
    }
    // Discard closes once it has read our FIN, so after every byte before it.
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                return (
                    result,
                    Some(Failure::failed(format!(
                        "{addr} sent {n} bytes back; a discard service sends nothing (is it discard?)"
                    ))),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let context = format!("(waiting for its close after all {bytes} bytes)");
                return (result, Some(with_context(&e, context)));
            }
        }
    }
    result.elapsed = start.elapsed();
    result.verified = bytes;
    (result, None)
}

/// Target to host: reads `bytes` of a chargen service's stream, comparing
/// every byte with the pattern at its offset, then closes. Timed from before
/// the connect to the last byte checked.
fn chargen_round(
    addr: SocketAddr,
    bytes: u64,
    timeout: Duration,
    stream: &[u8],
    progress: &Progress,
) -> (Throughput, Option<Failure>) {
    let mut result = Throughput {
        expected: bytes,
        ..Throughput::default()
    };
    let start = Instant::now();
    let mut conn = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(conn) => conn,
        Err(e) => return (result, Some(connect_failure(&e, addr, timeout))),
    };
    if let Err(e) = conn.set_read_timeout(Some(timeout)) {
        return (result, Some(Failure::failed(format!("socket: {e}"))));
    }
    let mut buf = vec![0u8; ONEWAY_CHUNK];
    while result.verified < bytes {
        let want = (bytes - result.verified).min(ONEWAY_CHUNK as u64) as usize;
        match conn.read(&mut buf[..want]) {
            Ok(0) => {
                let message = format!(
                    "{addr} closed the connection after {} of {bytes} bytes",
                    result.verified
                );
                return (result, Some(Failure::failed(message)));
            }
            Ok(n) => {
                if let Some((at, expected, got)) =
                    chargen_mismatch(stream, result.verified, &buf[..n])
                {
                    let message = format!(
                        "byte {at} from {addr} is wrong: expected {}, got {} (is it a chargen service?)",
                        show_byte(expected),
                        show_byte(got)
                    );
                    return (result, Some(Failure::failed(message)));
                }
                result.verified += n as u64;
                progress.advance(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let mut failure = Failure::from_io(&e, addr, timeout);
                failure.message = format!(
                    "{} after {} of {bytes} bytes",
                    failure.message, result.verified
                );
                return (result, Some(failure));
            }
        }
    }
    result.elapsed = start.elapsed();
    // Closing with the stream still coming: the kernel answers what follows
    // with a reset, which ends the connection at once on the target too.
    drop(conn);
    (result, None)
}

/// Sends `count` datagrams one at a time, each waiting for its own reply.
fn udp_round(
    addr: SocketAddr,
    count: u64,
    size: usize,
    first_seq: u64,
    timeout: Duration,
    progress: &Progress,
) -> (RoundTrips, Option<Failure>) {
    let mut result = RoundTrips::default();
    let socket = match bind_udp(addr) {
        Ok(socket) => socket,
        Err(e) => {
            return (
                result,
                Some(Failure::failed(net::describe_connect(&e, addr, timeout))),
            );
        }
    };
    let mut datagram: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0u8; MAX_DATAGRAM];
    let mut lost_in_a_row = 0;
    for seq in first_seq..first_seq + count {
        datagram[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
        let start = Instant::now();
        if let Err(e) = socket.send(&datagram) {
            return (result, Some(Failure::from_io(&e, addr, timeout)));
        }
        result.sent += 1;
        let deadline = start + timeout;
        let answered = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            if let Err(e) = socket.set_read_timeout(Some(left)) {
                return (result, Some(Failure::failed(format!("socket: {e}"))));
            }
            match socket.recv(&mut reply) {
                Ok(n) if reply[..n] == datagram[..] => {
                    result.rtts.push(start.elapsed());
                    break true;
                }
                Ok(n)
                    if n >= SEQ_LEN
                        && reply_seq(&reply).is_some_and(|s| s < seq && s >= first_seq) =>
                {
                    result.late += 1; // a reply to a datagram already counted lost
                }
                Ok(n) => {
                    return (
                        result,
                        Some(Failure::failed(format!(
                            "datagram {} came back wrong from {addr}: {n} bytes, expected the {size} sent (is it an echo service?)",
                            seq - first_seq + 1
                        ))),
                    );
                }
                Err(e) if net::is_timeout(&e) => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (result, Some(Failure::from_io(&e, addr, timeout))),
            }
        };
        if answered {
            result.answered += 1;
            lost_in_a_row = 0;
        } else {
            result.lost += 1;
            lost_in_a_row += 1;
            if lost_in_a_row >= LOST_IN_A_ROW {
                return (
                    result,
                    Some(Failure::stopped(format!(
                        "{addr} stopped answering: {LOST_IN_A_ROW} datagrams in a row got no reply within {}",
                        fmt_duration(timeout)
                    ))),
                );
            }
        }
        progress.advance(1);
    }
    (result, None)
}

fn reply_seq(reply: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(reply.get(..SEQ_LEN)?.try_into().ok()?))
}

fn bind_udp(peer: SocketAddr) -> io::Result<UdpSocket> {
    let any = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(peer)?;
    Ok(socket)
}

/// Opens and closes connections one after the other for `duration`.
fn connect_round(
    addr: SocketAddr,
    duration: Duration,
    timeout: Duration,
    progress: &Progress,
) -> (ConnectRate, Option<Failure>) {
    let mut result = ConnectRate::default();
    let mut failure = None;
    let mut timeouts_in_a_row = 0;
    let start = Instant::now();
    while start.elapsed() < duration && result.attempts < MAX_ATTEMPTS {
        result.attempts += 1;
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                result.connected += 1;
                timeouts_in_a_row = 0;
                drop(stream); // close: FIN, as a client that is done
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => result.refused += 1,
            Err(e) if net::is_timeout(&e) => {
                result.timed_out += 1;
                timeouts_in_a_row += 1;
                if timeouts_in_a_row >= TIMEOUTS_IN_A_ROW {
                    failure = Some(Failure::stopped(format!(
                        "{addr} stopped answering: {TIMEOUTS_IN_A_ROW} connections in a row timed out after {}",
                        fmt_duration(timeout)
                    )));
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                // Every local port is in TIME-WAIT: the rate so far stands.
                result.other += 1;
                result.ports_exhausted = true;
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable
                ) =>
            {
                result.other += 1;
                failure = Some(Failure::failed(net::describe_connect(&e, addr, timeout)));
                break;
            }
            Err(_) => result.other += 1,
        }
        progress.set(start.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
    }
    result.elapsed = start.elapsed();
    (result, failure)
}

/// `clients` connections echo `bytes` between them, all at once.
fn concurrency_round(
    addr: SocketAddr,
    clients: u64,
    bytes: u64,
    timeout: Duration,
    pattern: &[u8],
    progress: &Progress,
) -> (Concurrency, Option<Failure>) {
    let mut result = Concurrency {
        clients,
        expected: bytes,
        ..Concurrency::default()
    };
    // Connect them all first, so they then run at the same time.
    let mut streams = Vec::new();
    for i in 0..clients {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                let failure = Failure {
                    message: format!(
                        "client {} of {clients}: {}",
                        i + 1,
                        net::describe_connect(&e, addr, timeout)
                    ),
                    stopped: net::is_timeout(&e),
                };
                return (result, Some(failure));
            }
        }
    }
    let start = Instant::now();
    let outcomes: Vec<(Throughput, Option<Failure>)> = thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let each = share(bytes, clients, i as u64);
                s.spawn(move || transfer(stream, each, timeout, pattern, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Throughput::default(),
                        Some(Failure::failed("client thread panicked")),
                    )
                })
            })
            .collect()
    });
    result.elapsed = start.elapsed();
    let mut failure = None;
    for (i, (got, failed)) in outcomes.into_iter().enumerate() {
        result.verified += got.verified;
        match failed {
            None => {
                result.clients_verified += 1;
                let own = got.rate().unwrap_or(0.0);
                result.slowest = Some(result.slowest.map_or(own, |s: f64| s.min(own)));
            }
            Some(f) if failure.is_none() => {
                failure = Some(Failure {
                    message: format!("client {} of {clients}: {}", i + 1, f.message),
                    stopped: f.stopped,
                });
            }
            Some(_) => {}
        }
    }
    (result, failure)
}

/// One line per target and measurement, for `-v`.
fn summary(report: &Report, m: Measurement) -> String {
    let failure = report
        .failures
        .iter()
        .find(|(fm, _)| *fm == m)
        .map(|(_, f)| format!(" [{}]", f.message));
    let text = match m {
        Measurement::Tcp => report.tcp.as_ref().map(|t| {
            format!(
                "{} ({} of {} verified)",
                opt_rate(t.rate()),
                fmt_bytes(t.verified),
                fmt_bytes(t.expected)
            )
        }),
        Measurement::Discard | Measurement::Chargen => oneway(report, m).map(|t| {
            format!(
                "{} median ({} of {} {})",
                opt_bits(t.median()),
                fmt_bytes(t.verified),
                fmt_bytes(t.expected),
                if m == Measurement::Discard {
                    "delivered"
                } else {
                    "verified"
                }
            )
        }),
        Measurement::Udp => report.udp.as_ref().map(|u| {
            format!(
                "p50 {} ({} answered, {} lost)",
                opt_dur(u.percentile(50.0)),
                u.answered,
                u.lost
            )
        }),
        Measurement::Connect => report.connect.as_ref().map(|c| {
            format!(
                "{} ({} connected, {} refused)",
                opt_per_sec(c.rate()),
                c.connected,
                c.refused
            )
        }),
        Measurement::Concurrency => report.concurrency.as_ref().map(|c| {
            format!(
                "{} ({} of {} clients verified)",
                opt_rate(c.rate()),
                c.clients_verified,
                c.clients
            )
        }),
    };
    text.unwrap_or_else(|| "not measured".into()) + &failure.unwrap_or_default()
}

fn opt_rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| {
        format!("{} ({})", fmt_rate(r), fmt_gbits(r))
    })
}

/// Bytes per second as Gbit/s first, the way link speeds are read.
fn opt_bits(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| {
        format!("{} ({})", fmt_gbits(r), fmt_rate(r))
    })
}

/// A report's discard or chargen result.
fn oneway(report: &Report, m: Measurement) -> Option<&Throughput> {
    match m {
        Measurement::Discard => report.discard.as_ref(),
        Measurement::Chargen => report.chargen.as_ref(),
        _ => None,
    }
}

fn opt_dur(d: Option<Duration>) -> String {
    d.map_or("-".into(), fmt_duration)
}

fn opt_per_sec(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.0} /s"))
}

/// A row of the table: a name, one cell per target, and the two numbers the
/// ratio is made of (when it makes sense).
struct Row {
    name: String,
    cells: Vec<String>,
    values: Vec<Option<f64>>,
}

fn rows(reports: &[Report], settings: &Settings) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut row = |name: &str, f: &dyn Fn(&Report) -> (String, Option<f64>)| {
        let (cells, values) = reports.iter().map(f).unzip();
        rows.push(Row {
            name: name.to_owned(),
            cells,
            values,
        });
    };
    let has = |m: Measurement| settings.measurements.contains(&m);
    if has(Measurement::Tcp) {
        row("tcp throughput", &|r| {
            let rate = r.tcp.as_ref().and_then(Throughput::rate);
            (opt_rate(rate), rate)
        });
        row("  bytes verified", &|r| {
            (
                r.tcp
                    .as_ref()
                    .map_or("-".into(), |t| format!("{} of {}", t.verified, t.expected)),
                None,
            )
        });
    }
    for m in [Measurement::Discard, Measurement::Chargen] {
        if !has(m) {
            continue;
        }
        row(m.name(), &|r| {
            let median = oneway(r, m).and_then(Throughput::median);
            (opt_bits(median), median)
        });
        let what = if m == Measurement::Discard {
            "  bytes delivered"
        } else {
            "  bytes verified"
        };
        row(what, &|r| {
            (
                oneway(r, m).map_or("-".into(), |t| format!("{} of {}", t.verified, t.expected)),
                None,
            )
        });
        row("  rounds, Gbit/s", &|r| {
            (
                oneway(r, m).map_or("-".into(), |t| {
                    let each: Vec<String> = t
                        .rounds
                        .iter()
                        .map(|r| format!("{:.2}", r * 8.0 / 1e9))
                        .collect();
                    if each.is_empty() {
                        "-".into()
                    } else {
                        each.join(" ")
                    }
                }),
                None,
            )
        });
    }
    if has(Measurement::Udp) {
        for (name, p) in [
            ("udp round trip p50", 50.0),
            ("  p90", 90.0),
            ("  p99", 99.0),
            ("  max", 100.0),
        ] {
            row(name, &|r| {
                let d = r.udp.as_ref().and_then(|u| u.percentile(p));
                (opt_dur(d), d.map(|d| d.as_secs_f64()))
            });
        }
        row("  lost", &|r| {
            (
                r.udp.as_ref().map_or("-".into(), |u| {
                    format!("{} of {} ({} late)", u.lost, u.sent, u.late)
                }),
                None,
            )
        });
    }
    if has(Measurement::Connect) {
        row("connect rate", &|r| {
            let rate = r.connect.as_ref().and_then(ConnectRate::rate);
            (opt_per_sec(rate), rate)
        });
        row("  refused", &|r| {
            (
                r.connect.as_ref().map_or("-".into(), |c| {
                    let mut s = format!("{} of {}", c.refused, c.attempts);
                    if c.timed_out > 0 || c.other > 0 {
                        let _ = write!(s, " ({} timed out, {} other)", c.timed_out, c.other);
                    }
                    if c.ports_exhausted {
                        s.push_str(" (local ports ran out)");
                    }
                    s
                }),
                None,
            )
        });
    }
    if has(Measurement::Concurrency) {
        row(
            &format!("concurrency, {} clients", settings.clients),
            &|r| {
                let rate = r.concurrency.as_ref().and_then(Concurrency::rate);
                (opt_rate(rate), rate)
            },
        );
        row("  clients verified", &|r| {
            (
                r.concurrency.as_ref().map_or("-".into(), |c| {
                    format!("{} of {}", c.clients_verified, c.clients)
                }),
                None,
            )
        });
        row("  slowest client", &|r| {
            (
                r.concurrency
                    .as_ref()
                    .and_then(|c| c.slowest)
                    .map_or("-".into(), fmt_rate),
                None,
            )
        });
    }
    rows
}

/// The plain table: one column per target, and the ratio first / second.
pub fn table(reports: &[Report], settings: &Settings) -> String {
    let rows = rows(reports, settings);
    let ratio = reports.len() == 2;
    let mut header: Vec<String> = vec![String::new()];
    header.extend(reports.iter().map(|r| r.label.clone()));
    if ratio {
        header.push("ratio".into());
    }
    let mut lines: Vec<Vec<String>> = vec![header];
    for row in &rows {
        let mut line = vec![row.name.clone()];
        line.extend(row.cells.iter().cloned());
        if ratio {
            line.push(
                match (
                    row.values.first().copied().flatten(),
                    row.values.get(1).copied().flatten(),
                ) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
                    _ => String::new(),
                },
            );
        }
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    if ratio {
        let _ = writeln!(
            out,
            "ratio = {a} / {b}: for throughput and rate above 1 favours {a}, for round-trip times it favours {b}",
            a = reports[0].label,
            b = reports[1].label
        );
    }
    if settings
        .measurements
        .iter()
        .any(|m| matches!(m, Measurement::Discard | Measurement::Chargen))
    {
        let _ = writeln!(
            out,
            "discard and chargen: the median of the rounds; Gbit/s = 8 x payload bytes / s, from connect to close"
        );
    }
    for r in reports {
        for (m, f) in &r.failures {
            let _ = writeln!(out, "{}: {}: {}", r.label, m.name(), f.message);
        }
    }
    out
}

fn us(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        Value::Num((d.as_secs_f64() * 1e6 * 10.0).round() / 10.0)
    })
}

fn num(x: Option<f64>) -> Value {
    x.map_or(Value::Null, Value::Num)
}

/// Each complete round's throughput, in bits per second.
fn bits_rounds(t: &Throughput) -> Value {
    Value::Arr(t.rounds.iter().map(|r| Value::Num(r * 8.0)).collect())
}

fn report_json(r: &Report) -> Value {
    let mut fields = vec![
        ("label".to_owned(), Value::Str(r.label.clone())),
        (
            "address".to_owned(),
            Value::opt_str(r.addr.map(|a| a.to_string()).as_deref()),
        ),
        ("complete".to_owned(), Value::Bool(r.complete())),
        (
            "failures".to_owned(),
            Value::Arr(
                r.failures
                    .iter()
                    .map(|(m, f)| {
                        Value::obj([
                            ("measurement", Value::Str(m.name().into())),
                            ("message", Value::Str(f.message.clone())),
                            ("stopped_answering", Value::Bool(f.stopped)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ];
    if let Some(t) = &r.tcp {
        fields.push((
            "tcp".into(),
            Value::obj([
                ("bytes_expected", Value::Int(t.expected)),
                ("bytes_verified", Value::Int(t.verified)),
                ("seconds", Value::Num(t.elapsed.as_secs_f64())),
                ("bytes_per_second", num(t.rate())),
                ("bits_per_second_median", num(t.median().map(|r| r * 8.0))),
                ("bits_per_second_rounds", bits_rounds(t)),
            ]),
        ));
    }
    for (key, t, counted) in [
        ("discard", &r.discard, "bytes_delivered"),
        ("chargen", &r.chargen, "bytes_verified"),
    ] {
        if let Some(t) = t {
            fields.push((
                key.into(),
                Value::obj([
                    ("bytes_expected", Value::Int(t.expected)),
                    (counted, Value::Int(t.verified)),
                    ("seconds", Value::Num(t.elapsed.as_secs_f64())),
                    ("bytes_per_second", num(t.rate())),
                    ("bits_per_second_median", num(t.median().map(|r| r * 8.0))),
                    ("bits_per_second_rounds", bits_rounds(t)),
                ]),
            ));
        }
    }
    if let Some(u) = &r.udp {
        fields.push((
            "udp".into(),
            Value::obj([
                ("sent", Value::Int(u.sent)),
                ("answered", Value::Int(u.answered)),
                ("lost", Value::Int(u.lost)),
                ("late", Value::Int(u.late)),
                ("p50_us", us(u.percentile(50.0))),
                ("p90_us", us(u.percentile(90.0))),
                ("p99_us", us(u.percentile(99.0))),
                ("max_us", us(u.percentile(100.0))),
            ]),
        ));
    }
    if let Some(c) = &r.connect {
        fields.push((
            "connect".into(),
            Value::obj([
                ("attempts", Value::Int(c.attempts)),
                ("connected", Value::Int(c.connected)),
                ("refused", Value::Int(c.refused)),
                ("timed_out", Value::Int(c.timed_out)),
                ("other_errors", Value::Int(c.other)),
                ("seconds", Value::Num(c.elapsed.as_secs_f64())),
                ("per_second", num(c.rate())),
                ("ports_exhausted", Value::Bool(c.ports_exhausted)),
            ]),
        ));
    }
    if let Some(c) = &r.concurrency {
        fields.push((
            "concurrency".into(),
            Value::obj([
                ("clients", Value::Int(c.clients)),
                ("clients_verified", Value::Int(c.clients_verified)),
                ("bytes_expected", Value::Int(c.expected)),
                ("bytes_verified", Value::Int(c.verified)),
                ("seconds", Value::Num(c.elapsed.as_secs_f64())),
                ("bytes_per_second", num(c.rate())),
                ("slowest_client_bytes_per_second", num(c.slowest)),
            ]),
        ));
    }
    Value::Obj(fields)
}

/// The whole run as JSON: settings, one object per target, and the ratios.
pub fn to_json(reports: &[Report], settings: &Settings) -> Value {
    let mut fields = vec![(
        "settings".to_owned(),
        Value::obj([
            ("size", Value::Int(settings.size)),
            ("oneway_size", Value::Int(settings.oneway_size)),
            ("discard_port", Value::Int(settings.discard_port.into())),
            ("chargen_port", Value::Int(settings.chargen_port.into())),
            ("count", Value::Int(settings.count)),
            ("datagram_size", Value::Int(settings.datagram_size as u64)),
            (
                "duration_seconds",
                Value::Num(settings.duration.as_secs_f64()),
            ),
            ("clients", Value::Int(settings.clients)),
            ("rounds", Value::Int(settings.rounds)),
            (
                "timeout_seconds",
                Value::Num(settings.timeout.as_secs_f64()),
            ),
        ]),
    )];
    fields.push((
        "targets".into(),
        Value::Arr(reports.iter().map(report_json).collect()),
    ));
    if reports.len() == 2 {
        let ratios = rows(reports, settings)
            .into_iter()
            .filter_map(|row| {
                match (
                    row.values.first().copied().flatten(),
                    row.values.get(1).copied().flatten(),
                ) {
                    (Some(a), Some(b)) if b > 0.0 => {
                        Some((ratio_key(&row.name), Value::Num(a / b)))
                    }
                    _ => None,
                }
            })
            .collect();
        fields.push(("ratio".into(), Value::Obj(ratios)));
    }
    Value::Obj(fields)
}

fn ratio_key(name: &str) -> String {
    match name.trim() {
        "udp round trip p50" => "udp_p50".into(),
        "p90" => "udp_p90".into(),
        "p99" => "udp_p99".into(),
        "max" => "udp_max".into(),
        "tcp throughput" => "tcp_throughput".into(),
        "discard, host to target" => "discard_throughput".into(),
        "chargen, target to host" => "chargen_throughput".into(),
        "connect rate" => "connect_rate".into(),
        _ => "concurrency_throughput".into(),
    }
}

/// Writes every UDP round-trip time: a comment line naming the columns,
/// then `label<TAB>µs` per datagram answered, in the order measured.
fn write_samples(file: std::fs::File, reports: &[Report]) -> io::Result<()> {
    let mut out = io::BufWriter::new(file);
    writeln!(out, "# target\tround_trip_us")?;
    for r in reports {
        // A tab or line end in a label would break the columns.
        let label: String = r
            .label
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for rtt in r.udp.iter().flat_map(|u| &u.rtts) {
            writeln!(out, "{label}\t{:.1}", rtt.as_secs_f64() * 1e6)?;
        }
    }
    out.flush()
}

/// Runs `hostnet bench`.
pub fn run(args: Args) -> Result<(), Error> {
    let settings = Settings::from_args(&args)?;
    // Made before the run, so a bad path fails now rather than after it.
    let samples = match &args.samples {
        Some(path) => Some((
            path,
            std::fs::File::create(path).map_err(|e| {
                Error::failure(format!("cannot write samples to {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    let progress = Progress::new(!args.json);
    if !args.json && io::stdout().is_terminal() {
        let names: Vec<String> = settings
            .targets
            .iter()
            .map(|(l, a)| {
                if l == &a.to_string() {
                    l.clone()
                } else {
                    format!("{l} ({a})")
                }
            })
            .collect();
        let rounds = if settings.rounds == 1 {
            "1 round".to_owned()
        } else {
            format!("{} rounds", settings.rounds)
        };
        let alternating = if names.len() > 1 { ", alternating" } else { "" };
        let services = if settings
            .measurements
            .iter()
            .any(|m| matches!(m, Measurement::Discard | Measurement::Chargen))
        {
            format!(
                "echo, discard (port {}), chargen (port {})",
                settings.discard_port, settings.chargen_port
            )
        } else {
            "echo".to_owned()
        };
        println!(
            "hostnet bench: {services} at {}; {rounds}{alternating}",
            names.join(" vs ")
        );
    }
    let reports = measure(&settings, &progress);
    progress.clear();
    let mut out = io::stdout().lock();
    let printed = if args.json {
        writeln!(out, "{}", to_json(&reports, &settings))
    } else {
        write!(out, "{}", table(&reports, &settings))
    };
    let _ = printed.and_then(|()| out.flush());
    drop(out);
    if let Some((path, file)) = samples {
        write_samples(file, &reports).map_err(|e| {
            Error::failure(format!("cannot write samples to {}: {e}", path.display()))
        })?;
    }
    let failures: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.failures
                .iter()
                .map(move |(m, f)| format!("{}: {}: {}", r.label, m.name(), f.message))
        })
        .collect();
    match failures.first() {
        None => Ok(()),
        Some(first) if failures.len() == 1 => Err(Error::failure(format!(
            "bench: {first} (results so far above)"
        ))),
        Some(first) => Err(Error::failure(format!(
            "bench: {first}, and {} more failure(s) listed above (results so far above)",
            failures.len() - 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_share_the_total_exactly() {
        assert_eq!(
            (0..3).map(|r| share(100, 3, r)).collect::<Vec<_>>(),
            [33, 33, 34]
        );
        assert_eq!(share(5, 1, 0), 5);
        assert_eq!((0..16).map(|r| share(10, 16, r)).sum::<u64>(), 10);
    }

    #[test]
    fn the_pattern_is_periodic_and_any_chunk_is_a_slice() {
        let p = pattern();
        assert_eq!(p.len(), PERIOD + CHUNK);
        assert_eq!(expected(&p, PERIOD as u64 * 7 + 5, 10), &p[5..15]);
        // A run of 251 bytes lost or repeated changes what comes next.
        assert_ne!(&p[..251], &p[251..502]);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn only_complete_rounds_count_among_the_rates() {
        let mut total = Throughput::default();
        let round = |verified, ms| Throughput {
            expected: 1000,
            verified,
            elapsed: Duration::from_millis(ms),
            rounds: Vec::new(),
        };
        total.add(&round(1000, 1), true);
        total.add(&round(400, 1), false);
        total.add(&round(1000, 4), true);
        assert_eq!((total.expected, total.verified), (3000, 2400));
        assert_eq!(total.rounds, [1_000_000.0, 250_000.0]);
        assert_eq!(total.median(), Some(625_000.0));
    }

    #[test]
    fn the_chargen_check_names_the_first_wrong_byte() {
        let stream = chargen_stream();
        let period = chargen::PERIOD as u64;
        // Any offset, across the end of a period: right bytes pass.
        for offset in [0, 5, period - 3, 3 * period + 1000] {
            let mut received = vec![0u8; 20_000];
            chargen::fill((offset % period) as usize, &mut received);
            assert_eq!(
                chargen_mismatch(&stream, offset, &received),
                None,
                "{offset}"
            );
        }
        let offset = 2 * period + 17;
        let mut received = vec![0u8; 9_000];
        chargen::fill((offset % period) as usize, &mut received);
        let right = received[4321];
        received[4321] = b'#' ^ 0x80;
        received[5000] ^= 1; // a later one is not the one named
        assert_eq!(
            chargen_mismatch(&stream, offset, &received),
            Some((offset + 4321, right, b'#' ^ 0x80))
        );
        assert_eq!(show_byte(b'A'), "0x41 'A'");
        assert_eq!(show_byte(b'\r'), "0x0d");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_micros(99)));
        assert_eq!(
            percentile(&samples, 100.0),
            Some(Duration::from_micros(100))
        );
        assert_eq!(
            percentile(&samples[..1], 90.0),
            Some(Duration::from_micros(1))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }
}

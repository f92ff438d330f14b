//! The binary's std edge: command line, TAP, clock, signals, and the event
//! loop that drives the no_std [`tapstack::Stack`].
//!
//! The loop sleeps in `poll(2)` on the TAP and a `signalfd` until a frame
//! arrives, a signal comes, or the stack's next deadline (a TCP timer) is due:
//! no CPU is used while idle. On each wake-up [`tapstack::Stack::poll`] reads
//! every queued frame before it serves and transmits.

pub mod cli;
pub mod heap;
pub mod observe;
pub mod signals;
pub mod tap;

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

use static_cell::ConstStaticCell;
use tapstack::{Buffers, ConfigError, RAM_BUDGET, Sockets, Stack};

use self::cli::Settings;
use self::tap::Tap;
use tapstack::link::Mac;
use tapstack::services::Kind;

/// The stack's socket state, placed by the linker (as firmware would), never
/// on the heap. Taken once, by [`run`].
static SOCKETS: ConstStaticCell<Sockets<'static>> = ConstStaticCell::new(Sockets::new());
/// The stack's buffers: all zero, so they cost nothing until touched (`.bss`).
static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers::new());

/// Writes one line to stderr. A closed or broken stderr (`| head`) must not
/// stop the stack, so errors are ignored (`eprintln!` would panic on them).
pub fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Shows an `io::Error` without allocating, as `broken pipe (os error 32)`:
/// std's `Display` builds a `String` for an OS error's text, and this one is
/// printed while the stack serves (tests/heap.rs). The kind's text is static.
pub struct OsError<'a>(pub &'a io::Error);

impl fmt::Display for OsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(code) => write!(f, "{} (os error {code})", self.0.kind()),
            // Not from the OS: a static message or a caller's error, no allocation.
            None => self.0.fmt(f),
        }
    }
}

/// Why the binary stopped with an error.
#[derive(Debug)]
pub enum Error {
    /// The TAP could not be opened or configured.
    Open(tap::OpenError),
    /// The stack refused its configuration.
    Config(ConfigError),
    /// The TAP went away under the running stack.
    Gone { name: String, err: io::Error },
    /// Setting up signals or waiting failed.
    System { what: &'static str, err: io::Error },
    /// The pcap file could not be written.
    Pcap { path: String, err: io::Error },
}

impl Error {
    /// The process exit code: 2 for values the user gave, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => e.fmt(f),
            Self::Config(e) => e.fmt(f),
            Self::Gone { name, err } => write!(
                f,
                "TAP '{name}' went away while running ({err}): was it deleted? Start tapstack again when it is back"
            ),
            Self::System { what, err } => write!(f, "{what} failed: {err}"),
            Self::Pcap { path, err } => {
                write!(
                    f,
                    "cannot write the pcap file '{path}': {err}; pick a writable path, or `--pcap -` for stdout"
                )
            }
        }
    }
}

/// How the run ended without error.
pub struct Stopped {
    /// The signal (SIGINT or SIGTERM).
    pub signal: i32,
    /// Frames the kernel would not take from us (queue full, link down).
    pub tx_dropped: u64,
}

/// Opens the TAP, builds the stack, prints the banner and serves until a
/// signal stops it.
pub fn run(mut settings: Settings) -> Result<Stopped, Error> {
    // Block SIGINT/SIGTERM before anything else so they can only arrive
    // through the signalfd, where the loop reads them.
    let signals = signals::SignalFd::new().map_err(|err| Error::System {
        what: "setting up SIGINT/SIGTERM",
        err,
    })?;

    let mut observer = observer(&settings)?;
    let mut tap = Tap::open(&settings.tap, settings.create).map_err(Error::Open)?;
    if tap.created() {
        tap.configure_host(settings.host_ipv4, settings.host_ipv6)
            .map_err(Error::Open)?;
    }

    let clock = Clock::new();
    let mut stack = Stack::new(
        &settings.stack,
        SOCKETS.take(),
        BUFFERS.take(),
        &mut tap,
        clock.now(),
    )
    .map_err(Error::Config)?;

    print_banner(&settings, &tap, &stack);
    // From here on the stack serves: nothing below may allocate (the exit
    // line's `0 while serving`; test: tests/heap.rs).
    heap::mark_ready();

    let tap_fd = tap.fd();
    // --busy-poll: after a frame, poll without sleeping until this instant.
    let busy = std::time::Duration::from_micros(u64::from(settings.busy_poll));
    let mut busy_until = std::time::Instant::now();
    let mut frames_seen = 0;
    let result = loop {
        let delay = if observer.active() {
            let delay = stack.poll_observed(clock.now(), &mut tap, Some(&mut observer));
            observer.flush();
            delay
        } else {
            stack.poll(clock.now(), &mut tap)
        };
        if let Some(tap::Gone(err)) = tap.take_fatal() {
            break Err(Error::Gone {
                // Taken, not cloned: leaving the loop allocates nothing either.
                name: std::mem::take(&mut settings.tap),
                err,
            });
        }
        let timeout_ms = match delay {
            None => -1,
            // Round up: waking before the deadline would only spin.
            Some(d) => i32::try_from(d.total_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let timeout_ms = if busy.is_zero() {
            timeout_ms
        } else {
            let frames = stack.counters().link_in.frames;
            let now = std::time::Instant::now();
            if frames != frames_seen {
                frames_seen = frames;
                busy_until = now + busy;
            }
            // Bounded: only within `busy` of the last frame received.
            if now < busy_until { 0 } else { timeout_ms }
        };
        let mut fds = [
            libc::pollfd {
                fd: tap_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        match signals::poll(&mut fds, timeout_ms) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                break Err(Error::System {
                    what: "waiting on the TAP (poll)",
                    err,
                });
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            break match signals.read() {
                Ok(signal) => Ok(Stopped {
                    signal,
                    tx_dropped: tap.tx_dropped(),
                }),
                Err(err) => Err(Error::System {
                    what: "reading the signal",
                    err,
                }),
            };
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            let tap::Gone(err) = tap.probe_error();
            break Err(Error::Gone {
                name: std::mem::take(&mut settings.tap),
                err,
            });
        }
    };
    // Serving ended with the loop; what the exit summary allocates is not counted.
    let heap = heap::usage();
    // However the loop ended, the capture is complete up to here.
    observer.flush();
    say(format_args!("Counters:\n{}", stack.counters()));
    say(format_args!("{heap}"));
    result
}

/// Opens the pcap and trace outputs the settings ask for.
fn observer(settings: &Settings) -> Result<observe::HostObserver, Error> {
    use observe::{Output, Pcap};
    let pcap_to_stdout = settings.pcap.as_deref() == Some("-");
    let pcap = match settings.pcap.as_deref() {
        None => None,
        Some(path) => {
            let failed = |err| Error::Pcap {
                path: path.to_owned(),
                err,
            };
            let out = if pcap_to_stdout {
                Output::Stdout(io::BufWriter::new(io::stdout()))
            } else {
                Output::File(io::BufWriter::new(
                    std::fs::File::create(path).map_err(failed)?,
                ))
            };
            Some(Pcap::new(out).map_err(failed)?)
        }
    };
    let trace = settings.trace.then(|| {
        if pcap_to_stdout {
            Output::Stderr(io::stderr())
        } else {
            Output::Stdout(io::BufWriter::new(io::stdout()))
        }
    });
    Ok(observe::HostObserver::new(pcap, trace))
}

/// Microseconds since start, as smoltcp counts time.
struct Clock(std::time::Instant);

impl Clock {
    fn new() -> Self {
        Self(std::time::Instant::now())
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(
            i64::try_from(self.0.elapsed().as_micros()).unwrap_or(i64::MAX),
        )
    }
}

fn print_banner(settings: &Settings, tap: &Tap, stack: &Stack<'_>) {
    let a = stack.addresses();
    let v4 = a.ipv4.address();
    let v6 = a.ipv6.address();
    let mtu = tap.ip_mtu().unwrap_or(0);
    let mut out = String::new();
    use std::fmt::Write as _;
    let origin = if tap.created() {
        "created, removed on exit"
    } else {
        "existing"
    };
    let _ = writeln!(
        out,
        "tapstack {} on TAP {} ({origin})",
        env!("CARGO_PKG_VERSION"),
        tap.name()
    );
    let _ = writeln!(out, "  link       {}  MTU {mtu}", Mac(settings.stack.mac));
    let gw4 = a
        .gateway4
        .map(|g| format!("  gateway {g}"))
        .unwrap_or_default();
    let gw6 = a
        .gateway6
        .map(|g| format!("  gateway {g}"))
        .unwrap_or_default();
    let _ = writeln!(out, "  ipv4       {}{gw4}", a.ipv4);
    let _ = writeln!(
        out,
        "  ipv6       {}  {}/64{gw6}",
        a.ipv6,
        stack.link_local()
    );
    if tap.created() {
        let _ = writeln!(
            out,
            "  host side  {}  {}",
            settings.host_ipv4, settings.host_ipv6
        );
    } else if !tap.is_up().unwrap_or(true) {
        let _ = writeln!(
            out,
            "  warning    {0} is down: sudo ip link set {0} up",
            tap.name()
        );
    }
    let _ = writeln!(out, "RAM budget:\n{RAM_BUDGET}");
    let _ = writeln!(
        out,
        "Services (TCP connections at once: {} each for echo and upper-case, {} each for discard and chargen; more are refused with a reset):",
        tapstack::config::TCP_SOCKETS_PER_SERVICE,
        tapstack::config::BULK_SOCKETS
    );
    for service in stack.services() {
        let p = service.port;
        let (before, after) = match service.kind {
            Kind::Transform if p == settings.stack.upper_port => ("telnet", ""),
            Kind::Transform => ("nc", ""),
            Kind::Discard => ("nc -N", " < FILE"),
            Kind::Chargen => ("nc", " | head"),
        };
        let rows = [
            (
                "tcp",
                format!("{before} {v4} {p}{after}"),
                // telnet takes an IPv6 address as it is; nc needs -6.
                format!("{} -6 {v6} {p}{after}", before.replace("telnet", "nc")),
            ),
            (
                "udp",
                format!("nc -u {v4} {p}"),
                format!("nc -6 -u {v6} {p}"),
            ),
        ];
        for (i, (proto, try4, try6)) in rows.iter().enumerate() {
            let name = if i == 0 { service.name } else { "" };
            let _ = writeln!(out, "  {name:<11} {proto} {p:<6} {try4:<30} {try6}");
        }
    }
    let _ = writeln!(
        out,
        "  {:<11} {:<10} {:<30} ping -6 {v6}",
        "ping",
        "icmp",
        format!("ping {v4}")
    );
    let sp = settings.stack.status_port;
    let url = |host: &dyn std::fmt::Display| {
        if sp == 80 {
            format!("http://{host}/")
        } else {
            format!("http://{host}:{sp}/")
        }
    };
    let _ = writeln!(
        out,
        "  {:<11} tcp {sp:<6} {:<30} {}stats.json",
        "status",
        format!("curl {}", url(&v4)),
        url(&format_args!("[{v6}]"))
    );
    let _ = writeln!(out, "tapstack: ready (Ctrl-C to stop)");
    // A closed stdout must not stop the stack: the banner is for people.
    // With `--pcap -` stdout carries the capture, and the banner goes to stderr.
    if settings.pcap.as_deref() == Some("-") {
        let _ = io::stderr().write_all(out.as_bytes());
    } else {
        let mut stdout = io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_show_their_kind_and_number() {
        let show = |code| OsError(&io::Error::from_raw_os_error(code)).to_string();
        assert_eq!(show(libc::EPIPE), "broken pipe (os error 32)");
        assert_eq!(show(libc::ENOSPC), "no storage space (os error 28)");
        assert_eq!(show(libc::ENODEV), "uncategorized error (os error 19)");
        let err = io::Error::other("not from the OS");
        assert_eq!(OsError(&err).to_string(), "not from the OS");
    }
}

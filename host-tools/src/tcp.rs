//! `hostnet tcp`: the lessons' TCP client, and what `nc HOST PORT` does.
//!
//! Two byte pumps over one connection: input (stdin, or `--send TEXT`) to the
//! socket on a thread, the socket to stdout on the caller's. When the input
//! ends the client half-closes (sends FIN) and keeps reading until the server
//! closes too, so the whole reply is printed, the same way in a pipe and at a
//! terminal. Waiting for the user has no timeout; waiting for the server once
//! the input has ended does (`--timeout`). `--bytes N` stops after N bytes
//! received, for a server that never stops talking (chargen).

use std::io::{self, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tapstack::config::{CHARGEN_PORT, ECHO_PORT, STACK_IPV4, STACK_IPV6, UPPER_PORT};

use crate::Error;
use crate::net::{self, Family};
use crate::units::{fmt_duration, parse_duration, parse_size};

/// How often the reading side looks at the clock while the socket is quiet.
const TICK: Duration = Duration::from_millis(100);
/// Bytes moved per read.
const CHUNK: usize = 64 * 1024;

/// `hostnet tcp` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Host: an IPv4 or IPv6 address, or a name.
    pub host: String,
    /// Port: a number, or `echo` / `upper` / `discard` / `chargen` for the stack's services.
    #[arg(value_parser = net::parse_port)]
    pub port: u16,
    /// Send TEXT (instead of stdin), half-close, print the whole reply.
    #[arg(long, value_name = "TEXT")]
    pub send: Option<String>,
    /// Stop after receiving BYTES (exactly that many are printed) and close,
    /// whatever the server still sends: for chargen's endless stream. The
    /// end of the input then does not half-close.
    #[arg(short = 'n', long, value_name = "BYTES", value_parser = parse_size)]
    pub bytes: Option<u64>,
    /// Send CRLF line ends, like telnet (nc -C).
    #[arg(short = 'C', long)]
    pub crlf: bool,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Once the input has ended, give up when the server is silent this long.
    #[arg(short = 'w', long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Show the connection: local port, peer, time to connect, bytes each way.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened: its fields carry the docs
    pub family: Family,
}

/// Examples for `hostnet tcp --help`.
pub fn examples() -> String {
    let v4 = STACK_IPV4.address();
    let v6 = STACK_IPV6.address();
    format!(
        "Examples:
  hostnet tcp {v4} {ECHO_PORT}                        interactive, like nc (Ctrl-D half-closes)
  hostnet tcp {v6} upper --send 'hello'          prints HELLO
  printf 'abc\\n' | hostnet tcp -v {v4} {UPPER_PORT}    piped: sends, half-closes, prints the reply
  hostnet tcp -C {v4} {ECHO_PORT}                     CRLF line ends, like telnet
  hostnet tcp {v4} chargen --bytes 740      the first 10 lines of chargen (port {CHARGEN_PORT})
  hostnet tcp {v4} discard < file           sends the file, closes once discard has it all

Exit codes: 0 done, 1 refused / unreachable / timed out / reset, 2 bad usage."
    )
}

/// Runs `hostnet tcp`.
pub fn run(args: Args) -> Result<(), Error> {
    let addrs = net::resolve(&args.host, args.port, args.family)?;
    let conn = net::connect(&addrs, args.connect_timeout)?;
    let peer = conn.peer;
    if args.verbose {
        eprintln!(
            "hostnet: connected {} -> {} in {} (local port {} chosen by the kernel)",
            conn.local,
            peer,
            fmt_duration(conn.took),
            conn.local.port()
        );
        if args.send.is_none() && io::stdin().is_terminal() {
            eprintln!(
                "hostnet: type lines; Ctrl-D half-closes and waits for the rest, Ctrl-C quits"
            );
        }
    }
    let input: Box<dyn Read + Send> = match args.send {
        Some(text) => Box::new(io::Cursor::new(text.into_bytes())),
        None => Box::new(io::stdin()),
    };
    let started = Instant::now();
    let outcome = exchange(
        conn.stream,
        input,
        &mut io::stdout(),
        Options {
            crlf: args.crlf,
            timeout: args.timeout,
            limit: args.bytes,
        },
    );
    if args.verbose {
        eprintln!(
            "hostnet: sent {} bytes, received {} bytes in {}; {}",
            outcome.sent,
            outcome.received,
            fmt_duration(started.elapsed()),
            match &outcome.error {
                None if outcome.at_limit => "closed by us at --bytes",
                None => "closed by peer",
                Some(_) => "failed",
            }
        );
    }
    match outcome.error {
        None => Ok(()),
        Some(err) => Err(Error::failure(describe(&err, peer, args.timeout))),
    }
}

/// What an exchange did.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes written to the socket.
    pub sent: u64,
    /// Bytes read from the socket (and written out).
    pub received: u64,
    /// It ended because [`Options::limit`] bytes were received.
    pub at_limit: bool,
    /// Why it ended early, if it did.
    pub error: Option<ExchangeError>,
}

/// How an exchange runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Send CRLF line ends.
    pub crlf: bool,
    /// Silence allowed once the input has ended.
    pub timeout: Duration,
    /// Stop after receiving this many bytes (and write out exactly that
    /// many); the end of the input then does not half-close.
    pub limit: Option<u64>,
}

/// Why an exchange ended early.
#[derive(Debug)]
pub enum ExchangeError {
    /// The socket failed (reset, ...).
    Socket(io::Error),
    /// The input was done and the server said nothing for the timeout.
    Silent,
    /// Writing the reply out failed (not a broken pipe, which just ends).
    Output(io::Error),
}

fn describe(err: &ExchangeError, peer: SocketAddr, timeout: Duration) -> String {
    match err {
        ExchangeError::Socket(e) => net::describe_transfer(e, peer, timeout),
        ExchangeError::Silent => format!(
            "{peer} sent nothing for {} after the input ended (no reply, and no close)",
            fmt_duration(timeout)
        ),
        ExchangeError::Output(e) => format!("cannot write the reply: {e}"),
    }
}

/// Moves `input` to `stream` and `stream` to `output` at once, until the peer
/// closes (or `options.limit` bytes came). `options.timeout` bounds the
/// silence after the input has ended.
pub fn exchange(
    stream: TcpStream,
    input: Box<dyn Read + Send>,
    output: &mut dyn Write,
    options: Options,
) -> Outcome {
    let Options {
        crlf,
        timeout,
        limit,
    } = options;
    let done_sending = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let send_error: Arc<std::sync::Mutex<Option<io::Error>>> = Arc::default();
    match stream.try_clone() {
        Ok(writer) => {
            let (done, count, error) = (done_sending.clone(), sent.clone(), send_error.clone());
            // The input thread is not joined: at a terminal it may sit in
            // read(2) on stdin after the peer has closed, and the process
            // ends without waiting for it, like nc.
            thread::spawn(move || {
                let result = pump_input(input, &writer, crlf, &count);
                // FIN: tells the server this is all; it answers and closes.
                // With a limit the bytes asked for decide the end, and a FIN
                // would stop a server such as chargen before they come.
                if limit.is_none() {
                    let _ = writer.shutdown(Shutdown::Write);
                }
                if let (Err(e), Ok(mut slot)) = (result, error.lock()) {
                    *slot = Some(e);
                }
                done.store(true, Ordering::Release);
            });
        }
        Err(e) => {
            return Outcome {
                sent: 0,
                received: 0,
                at_limit: false,
                error: Some(ExchangeError::Socket(e)),
            };
        }
    }

    let mut received = 0u64;
    let mut at_limit = limit == Some(0);
    let mut error = None;
    let mut stream = stream;
    if let Err(e) = stream.set_read_timeout(Some(TICK)) {
        error = Some(ExchangeError::Socket(e));
    }
    let mut buf = vec![0u8; CHUNK];
    let mut quiet_since: Option<Instant> = None;
    while error.is_none() && !at_limit {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Within the limit: the rest of this read is dropped.
                let n = limit.map_or(n, |l| n.min(usize::try_from(l - received).unwrap_or(n)));
                received += n as u64;
                at_limit = limit == Some(received);
                quiet_since = None;
                match output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => error = Some(ExchangeError::Output(e)),
                }
            }
            Err(e) if net::is_timeout(&e) => {
                if done_sending.load(Ordering::Acquire) {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= timeout {
                        error = Some(ExchangeError::Silent);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => error = Some(ExchangeError::Socket(e)),
        }
    }
    // A write that failed because the peer reset explains more than our read.
    if error.is_none()
        && let Ok(mut slot) = send_error.lock()
        && let Some(e) = slot.take()
        && e.kind() == io::ErrorKind::ConnectionReset
    {
        error = Some(ExchangeError::Socket(e));
    }
    let _ = stream.shutdown(Shutdown::Both);
    Outcome {
        sent: sent.load(Ordering::Acquire),
        received,
        at_limit,
        error,
    }
}

fn pump_input(
    mut input: Box<dyn Read + Send>,
    mut socket: &TcpStream,
    crlf: bool,
    sent: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut wide = Vec::new();
    let mut last = 0u8;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = if crlf {
            wide.clear();
            for &b in &buf[..n] {
                if b == b'\n' && last != b'\r' {
                    wide.push(b'\r');
                }
                wide.push(b);
                last = b;
            }
            &wide[..]
        } else {
            &buf[..n]
        };
        socket.write_all(chunk)?;
        sent.fetch_add(chunk.len() as u64, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot upper-case server on loopback, answering with the core's transform.
    fn upper_once() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            tapstack::services::upper::to_upper(&mut all);
            s.write_all(&all).unwrap();
        });
        addr
    }

    #[test]
    fn sends_half_closes_and_prints_the_whole_reply() {
        let addr = upper_once();
        let stream = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        let input = Box::new(io::Cursor::new(b"line one\nline two\n".to_vec()));
        let options = Options {
            crlf: true,
            timeout: Duration::from_secs(5),
            limit: None,
        };
        let outcome = exchange(stream, input, &mut out, options);
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(out, b"LINE ONE\r\nLINE TWO\r\n");
        assert_eq!((outcome.sent, outcome.received), (20, 20));
    }

    /// `--bytes`: exactly that many bytes out of an endless stream, no FIN
    /// at the end of the input (chargen would stop), then our close.
    #[test]
    fn a_limit_takes_exactly_that_many_bytes_of_an_endless_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
            let mut line = [0u8; 1];
            let mut offset = 0;
            let mut chunk = [0u8; 1000];
            let mut sent = 0;
            // Until the client's FIN (read as Ok(0)) or close; returns what
            // was sent by then.
            while !matches!(s.read(&mut line), Ok(0)) {
                offset = tapstack::services::chargen::fill(offset, &mut chunk);
                if s.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        let options = Options {
            crlf: false,
            timeout: Duration::from_secs(5),
            limit: Some(123_456),
        };
        let outcome = exchange(stream, Box::new(io::empty()), &mut out, options);
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert!(outcome.at_limit);
        assert_eq!(outcome.received, 123_456);
        let mut expected = vec![0u8; 123_456];
        tapstack::services::chargen::fill(0, &mut expected);
        assert!(out == expected, "exactly the first 123456 bytes");
        let sent = server.join().unwrap();
        assert!(sent >= 123_456, "the client ended after {sent} bytes");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_held, _) = listener.accept().unwrap(); // accepted, never answers
        let mut out = Vec::new();
        let input = Box::new(io::Cursor::new(b"x".to_vec()));
        let options = Options {
            crlf: false,
            timeout: Duration::from_millis(300),
            limit: None,
        };
        let outcome = exchange(stream, input, &mut out, options);
        assert!(
            matches!(outcome.error, Some(ExchangeError::Silent)),
            "{:?}",
            outcome.error
        );
    }
}

//! `hostnet udp`: the lessons' UDP sender.
//!
//! One datagram per argument (or per line of stdin, without its line end),
//! then a wait of at most `--timeout` for the one reply. UDP does not
//! retransmit, so a datagram or its reply can be lost: that is shown plainly
//! (and makes the exit code 1), never waited on forever.
//!
//! The socket is *connected* to the target: the kernel then delivers only
//! datagrams from that address and port, and reports an ICMP "port
//! unreachable" for the next receive, so a closed port is told apart from a
//! lost datagram.
//!
//! Discard answers nothing: to it (port 9, or `--no-reply`) each datagram is
//! only sent, and the wait is a short one for a refusal, not for a reply.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tapstack::config::{CHARGEN_PORT, DISCARD_PORT, STACK_IPV4, STACK_IPV6, UPPER_PORT};

use crate::Error;
use crate::net::{self, Family};
use crate::units::{fmt_duration, parse_duration};

/// The largest UDP payload over IPv4 (65535 - 20 - 8) and so the receive buffer.
const MAX_DATAGRAM: usize = 65_507;
/// With `--no-reply`, how long each datagram waits (at most; `--timeout` if
/// shorter) for an ICMP port unreachable: from a TAP or loopback peer it
/// comes back within microseconds, and this leaves room for a loaded machine.
const REFUSAL_WAIT: Duration = Duration::from_millis(200);

/// `hostnet udp` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Host: an IPv4 or IPv6 address, or a name.
    pub host: String,
    /// Port: a number, or `echo` / `upper` / `discard` / `chargen` for the stack's services.
    #[arg(value_parser = net::parse_port)]
    pub port: u16,
    /// Datagrams to send, one per argument; without any, one per stdin line
    /// (empty lines are skipped).
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    /// Wait at most this long for each reply.
    #[arg(short = 'w', long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print only the replies (no round-trip times).
    #[arg(short, long)]
    pub quiet: bool,
    /// Expect no reply (a discard service; implied by port 9): send each
    /// datagram and wait only briefly for a refusal.
    #[arg(long)]
    pub no_reply: bool,
    /// Show the local port the kernel chose and the peer.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    #[command(flatten)]
    #[allow(missing_docs)] // flattened: its fields carry the docs
    pub family: Family,
}

/// Examples for `hostnet udp --help`.
pub fn examples() -> String {
    let v4 = STACK_IPV4.address();
    let v6 = STACK_IPV6.address();
    format!(
        "Examples:
  hostnet udp {v4} {UPPER_PORT} MixedCaseString    prints MIXEDCASESTRING and the round-trip time
  hostnet udp {v6} echo one two three        three datagrams, three replies
  printf 'a\\nb\\n' | hostnet udp {v4} upper     one datagram per line
  hostnet udp {v4} chargen x                one line of chargen (port {CHARGEN_PORT}) per datagram
  hostnet udp {v4} discard x                sent, no reply expected (port {DISCARD_PORT})

Exit codes: 0 every datagram answered, 1 some got no reply (or the port is closed), 2 bad usage."
    )
}

/// What became of one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answered, with the reply and the round-trip time.
    Answered(Vec<u8>, Duration),
    /// No reply within the timeout.
    Lost,
    /// ICMP port unreachable: nothing listens there.
    Refused,
}

/// A UDP client connected to one peer.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl Client {
    /// Binds an ephemeral port of `peer`'s family and connects it to `peer`.
    pub fn connect(peer: SocketAddr) -> io::Result<Self> {
        let any: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| io::Error::other("unspecified address"))?;
        let socket = UdpSocket::bind(any)?;
        socket.connect(peer)?;
        Ok(Self {
            socket,
            peer,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// The peer it talks to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The local address and the ephemeral port the kernel chose.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one datagram and waits at most `timeout` for its reply.
    pub fn ask(&mut self, datagram: &[u8], timeout: Duration) -> io::Result<Reply> {
        self.drain_late()?;
        let start = Instant::now();
        match self.socket.send(datagram) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Reply::Refused),
            Err(e) => return Err(e),
        }
        let deadline = start + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Reply::Lost);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv(&mut self.buf) {
                Ok(n) => return Ok(Reply::Answered(self.buf[..n].to_vec(), start.elapsed())),
                Err(e) if net::is_timeout(&e) => return Ok(Reply::Lost),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Ok(Reply::Refused);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Discards replies that arrived after their datagram was declared lost,
    /// so they are not taken for the answer to the next one.
    fn drain_late(&mut self) -> io::Result<()> {
        self.socket.set_nonblocking(true)?;
        let mut drained = Ok(());
        for _ in 0..1024 {
            match self.socket.recv(&mut self.buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {} // stale ICMP
                Err(e) => {
                    drained = Err(e);
                    break;
                }
            }
        }
        self.socket.set_nonblocking(false)?;
        drained
    }
}

/// Runs `hostnet udp`.
pub fn run(args: Args) -> Result<(), Error> {
    let addrs = net::resolve(&args.host, args.port, args.family)?;
    // UDP has no handshake to try each address with: use the first.
    let peer = addrs[0];
    let mut client = Client::connect(peer)
        .map_err(|e| Error::failure(net::describe_connect(&e, peer, args.timeout)))?;
    if args.verbose
        && let Ok(local) = client.local_addr()
    {
        eprintln!(
            "hostnet: sending from {local} (local port {} chosen by the kernel) to {peer}",
            local.port()
        );
    }

    let datagrams: Box<dyn Iterator<Item = io::Result<Vec<u8>>>> = if args.texts.is_empty() {
        Box::new(stdin_lines())
    } else {
        Box::new(args.texts.into_iter().map(|t| Ok(t.into_bytes())))
    };
    let no_reply = args.no_reply || args.port == DISCARD_PORT;
    let wait = if no_reply {
        args.timeout.min(REFUSAL_WAIT)
    } else {
        args.timeout
    };
    // `answered`: datagrams that went as they should (with no_reply, also
    // those that got no reply).
    let (mut sent, mut answered) = (0u32, 0u32);
    let mut refused = false;
    let mut out = io::stdout();
    for datagram in datagrams {
        let datagram = datagram.map_err(|e| Error::failure(format!("cannot read stdin: {e}")))?;
        sent += 1;
        match client.ask(&datagram, wait) {
            Ok(Reply::Answered(reply, rtt)) => {
                answered += 1;
                // One reply per line; a reply that ends its own line (chargen's
                // CR LF) gets no second line end.
                let end: &[u8] = if reply.ends_with(b"\n") { b"" } else { b"\n" };
                let _ = out
                    .write_all(&reply)
                    .and_then(|()| out.write_all(end))
                    .and_then(|()| out.flush());
                if !args.quiet {
                    eprintln!(
                        "hostnet: {} bytes from {peer} in {}",
                        reply.len(),
                        fmt_duration(rtt)
                    );
                }
            }
            Ok(Reply::Lost) if no_reply => {
                answered += 1;
                if !args.quiet {
                    eprintln!(
                        "hostnet: {} bytes sent to {peer}; no reply expected",
                        datagram.len()
                    );
                }
            }
            Ok(Reply::Lost) => eprintln!(
                "hostnet: datagram {sent} ({} bytes) got no reply within {}: UDP does not retransmit, it or its reply was lost",
                datagram.len(),
                fmt_duration(args.timeout)
            ),
            Ok(Reply::Refused) => {
                refused = true;
                eprintln!(
                    "hostnet: datagram {sent}: {peer} answered ICMP port unreachable: nothing listens on port {}",
                    peer.port()
                );
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                return Err(Error::usage(format!(
                    "datagram {sent} is too large for UDP ({} bytes)",
                    datagram.len()
                )));
            }
            Err(e) => {
                return Err(Error::failure(net::describe_transfer(
                    &e,
                    peer,
                    args.timeout,
                )));
            }
        }
    }
    if sent == answered {
        Ok(())
    } else if refused && answered == 0 {
        Err(Error::failure(format!(
            "{peer} refused every datagram: nothing listens on UDP port {}",
            peer.port()
        )))
    } else {
        Err(Error::failure(format!(
            "{} of {sent} datagrams got no reply",
            sent - answered
        )))
    }
}

/// stdin's lines without their line ends, empty lines skipped.
fn stdin_lines() -> impl Iterator<Item = io::Result<Vec<u8>>> {
    io::stdin()
        .lock()
        .split(b'\n')
        .filter_map(|line| match line {
            Ok(mut l) => {
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                (!l.is_empty()).then_some(Ok(l))
            }
            Err(e) => Some(Err(e)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_lost_and_refused_are_told_apart() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut client = Client::connect(server.local_addr().unwrap()).unwrap();
        let t = Duration::from_millis(300);

        // Lost: the server reads but does not answer.
        assert_eq!(client.ask(b"drop me", t).unwrap(), Reply::Lost);
        let mut buf = [0u8; 64];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"drop me");

        // A late reply to it is not taken for the answer to the next one.
        server.send_to(b"LATE", from).unwrap();
        client
            .socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.socket.peek(&mut [0u8; 8]).unwrap(); // LATE is queued before the next ask
        let answer = std::thread::spawn(move || {
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut reply = buf[..n].to_vec();
            tapstack::services::upper::to_upper(&mut reply);
            server.send_to(&reply, from).unwrap();
        });
        match client
            .ask(b"MixedCaseString", Duration::from_secs(5))
            .unwrap()
        {
            Reply::Answered(reply, _) => assert_eq!(reply, b"MIXEDCASESTRING"),
            other => panic!("{other:?}"),
        }
        answer.join().unwrap();

        // Refused: nothing listens on the port any more.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap();
        drop(closed);
        let mut client = Client::connect(port).unwrap();
        assert_eq!(client.ask(b"anyone?", t).unwrap(), Reply::Refused);
    }
}

//! What every subcommand does with the network's edge: parse a port, resolve
//! a host (IPv4, IPv6 or a name), connect with a timeout, and turn the
//! kernel's `errno` into one sentence that says what happened and what to try.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tapstack::config::{CHARGEN_PORT, DISCARD_PORT, ECHO_PORT, UPPER_PORT};

use crate::Error;

/// Parses a service port as typed: a number from 1 to 65535, or the name of
/// one of the stack's services (`echo`, `upper`, `discard`, `chargen`), with
/// the same rules as the stack's own parser.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s {
        "echo" => Ok(ECHO_PORT),
        "upper" | "upper-case" => Ok(UPPER_PORT),
        "discard" => Ok(DISCARD_PORT),
        "chargen" => Ok(CHARGEN_PORT),
        _ => tapstack::config::parse_port(s)
            .map_err(|e| format!("{s:?}: {e}, or echo / upper / discard / chargen")),
    }
}

/// Parses a port to listen on: like [`parse_port`], and `0` for "any free port".
pub fn parse_listen_port(s: &str) -> Result<u16, String> {
    if s == "0" { Ok(0) } else { parse_port(s) }
}

/// Which address families a command may use (`-4`, `-6`).
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Family {
    /// Use IPv4 addresses only.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6_only")]
    pub ipv4_only: bool,
    /// Use IPv6 addresses only.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6_only: bool,
}

impl Family {
    fn admits(&self, addr: &SocketAddr) -> bool {
        !(self.ipv4_only && addr.is_ipv6() || self.ipv6_only && addr.is_ipv4())
    }
}

/// Resolves `host` (an IPv4 address, an IPv6 address with or without
/// brackets, or a host name) to the addresses to try, in the resolver's order.
pub fn resolve(host: &str, port: u16, family: Family) -> Result<Vec<SocketAddr>, Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.is_empty() {
        return Err(Error::usage("empty host name"));
    }
    let all: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::failure(format!(
                "cannot resolve host {host:?}: {}",
                resolver_reason(&e)
            ))
        })?
        .collect();
    let admitted: Vec<SocketAddr> = all.iter().copied().filter(|a| family.admits(a)).collect();
    if admitted.is_empty() {
        let which = if family.ipv4_only { "IPv4" } else { "IPv6" };
        return Err(Error::failure(format!(
            "host {host:?} has no {which} address"
        )));
    }
    Ok(admitted)
}

/// Resolves a target written `HOST`, `HOST:PORT`, `IPv4:PORT` or
/// `[IPv6]:PORT`; without a port, `default_port` is used. A bare IPv6 address
/// (`fdaa::1`) is an address, never an address and a port.
pub fn resolve_target(
    target: &str,
    default_port: u16,
    family: Family,
) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(Error::usage(format!(
                "bad port in {target:?}: expected a port number from 1 to 65535"
            )));
        }
        return resolve(&addr.ip().to_string(), addr.port(), family);
    }
    if target.parse::<IpAddr>().is_ok() || target.starts_with('[') {
        return resolve(target, default_port, family);
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = parse_port(port)
                .map_err(|e| Error::usage(format!("bad port in {target:?}: {e}")))?;
            resolve(host, port, family)
        }
        _ => resolve(target, default_port, family),
    }
}

/// The resolver's reason, without std's "failed to lookup address information" prefix.
fn resolver_reason(err: &io::Error) -> String {
    let text = err.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_owned()
}

/// A connected stream and what the lessons want to see about it.
#[derive(Debug)]
pub struct Connected {
    /// The stream, blocking, with Nagle off (interactive and echo traffic).
    pub stream: TcpStream,
    /// The peer it reached.
    pub peer: SocketAddr,
    /// The local address and ephemeral port the kernel chose.
    pub local: SocketAddr,
    /// From the SYN to the SYN-ACK's acknowledgement.
    pub took: Duration,
}

/// Connects to the first of `addrs` that answers within `timeout` each.
/// The error is that of the last address tried, in words.
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<Connected, Error> {
    let mut last = Error::usage("no address to connect to");
    for &peer in addrs {
        let start = Instant::now();
        match TcpStream::connect_timeout(&peer, timeout) {
            Ok(stream) => {
                let took = start.elapsed();
                let local = stream
                    .local_addr()
                    .map_err(|e| Error::failure(format!("local address: {e}")))?;
                // Interactive lines and echoed chunks should leave at once.
                let _ = stream.set_nodelay(true);
                return Ok(Connected {
                    stream,
                    peer,
                    local,
                    took,
                });
            }
            Err(err) => last = Error::failure(describe_connect(&err, peer, timeout)),
        }
    }
    Err(last)
}

/// Says why a connection to `peer` failed, with what to try next.
pub fn describe_connect(err: &io::Error, peer: SocketAddr, timeout: Duration) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!(
                "connection refused by {peer}: nothing listens on port {} there",
                peer.port()
            )
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "timed out after {} connecting to {peer}: no answer (is the stack running? try `hostnet doctor`)",
            crate::units::fmt_duration(timeout)
        ),
        io::ErrorKind::NetworkUnreachable => format!(
            "network unreachable: no route to {} (is the TAP up with a host address? try `hostnet doctor`)",
            peer.ip()
        ),
        io::ErrorKind::HostUnreachable => format!(
            "host {} unreachable: nobody answered ARP/NDP for it (is the stack running?)",
            peer.ip()
        ),
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot connect to {peer}: no local address or port available ({err})")
        }
        _ => format!("cannot connect to {peer}: {err}"),
    }
}

/// Says why an established exchange with `peer` failed.
pub fn describe_transfer(err: &io::Error, peer: SocketAddr, timeout: Duration) -> String {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "{peer} stopped answering: nothing for {}",
            crate::units::fmt_duration(timeout)
        ),
        io::ErrorKind::ConnectionReset => format!("connection reset by {peer}"),
        io::ErrorKind::ConnectionRefused => {
            format!(
                "{peer} refused (ICMP port unreachable): nothing listens on port {} there",
                peer.port()
            )
        }
        io::ErrorKind::BrokenPipe => format!("{peer} closed the connection"),
        _ => describe_connect(err, peer, timeout),
    }
}

/// True for the errors a read or write with a timeout reports when it expires.
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An address as people read it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a
/// dual-stack listener sees) shown as the IPv4 address it is.
pub fn display_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_like_the_stack() {
        assert_eq!(parse_port("7"), Ok(7));
        assert_eq!(parse_port("echo"), Ok(ECHO_PORT));
        assert_eq!(parse_port("upper"), Ok(UPPER_PORT));
        assert_eq!(parse_port("upper-case"), Ok(UPPER_PORT));
        assert_eq!(parse_port("discard"), Ok(9));
        assert_eq!(parse_port("chargen"), Ok(19));
        assert!(parse_port("Discard").is_err());
        assert!(
            parse_port("daytime")
                .unwrap_err()
                .contains("echo / upper / discard / chargen"),
            "the error names every service"
        );
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("x").is_err());
        assert_eq!(parse_listen_port("0"), Ok(0));
    }

    #[test]
    fn targets_resolve_without_a_resolver() {
        let any = Family::default();
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(resolve("127.0.0.1", 7, any).unwrap(), vec![v4]);
        assert_eq!(resolve("::1", 7, any).unwrap(), vec![v6]);
        assert_eq!(resolve("[::1]", 7, any).unwrap(), vec![v6]);
        assert_eq!(resolve_target("127.0.0.1", 7, any).unwrap(), vec![v4]);
        assert_eq!(resolve_target("127.0.0.1:7", 9, any).unwrap(), vec![v4]);
        assert_eq!(resolve_target("[::1]:7", 9, any).unwrap(), vec![v6]);
        assert_eq!(resolve_target("::1", 7, any).unwrap(), vec![v6]);
        assert_eq!(resolve_target("[::1]", 7, any).unwrap(), vec![v6]);
        assert!(resolve_target("127.0.0.1:0", 7, any).is_err());
        assert_eq!(
            resolve_target("localhost:x", 7, any).unwrap_err().kind(),
            crate::error::Kind::Usage
        );
        let only6 = Family {
            ipv4_only: false,
            ipv6_only: true,
        };
        assert!(resolve("127.0.0.1", 7, only6).is_err());
    }
}

//! Every number the stack is built with, in one place.
//!
//! Two kinds of numbers live here:
//! - the *default contract* (addresses, MAC, ports) that the README, the docs,
//!   the tests and `hostnet` rely on; change them only through an issue;
//! - the *sizes* of every buffer and pool. The stack allocates nothing at run
//!   time: these constants are the whole memory it will ever use, and
//!   [`crate::stack::RamBudget`] adds them up so the binary can print it.
//!
//! It also holds the parsers for the values a user may type (MAC, CIDR,
//! port), so that the same rules apply on Linux and on a microcontroller.

use core::fmt;

use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

// ---------------------------------------------------------------------------
// The default contract (see README, "Defaults").
// ---------------------------------------------------------------------------

/// RFC 862 echo.
pub const ECHO_PORT: u16 = 7;
/// The lessons' upper-case service.
pub const UPPER_PORT: u16 = 11111;

/// RFC 863 discard: the one-way sink (benchmarks: host to stack).
pub const DISCARD_PORT: u16 = 9;
/// RFC 864 character generator: the one-way source (benchmarks: stack to host).
pub const CHARGEN_PORT: u16 = 19;

/// The status page (HTTP, RFC 9110).
pub const HTTP_PORT: u16 = 80;

/// The TAP interface the binary attaches to unless told otherwise.
pub const DEFAULT_TAP: &str = "tap0";

/// The stack's MAC: the locally administered bit (0x02) is set, so it can
/// never clash with a vendor-assigned address (IEEE 802, section 9.2).
pub const STACK_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
/// The stack's IPv4 address on the TAP subnet (RFC 1918 private range).
pub const STACK_IPV4: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 1), 24);
/// The stack's IPv6 address, in a unique local prefix (RFC 4193).
pub const STACK_IPV6: Ipv6Cidr = Ipv6Cidr::new(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1), 64);
/// The host's side of the TAP, which is also the stack's default gateway.
pub const HOST_IPV4: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 100), 24);
/// The host's IPv6 side of the TAP, also the stack's default IPv6 gateway.
pub const HOST_IPV6: Ipv6Cidr =
    Ipv6Cidr::new(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100), 64);

// ---------------------------------------------------------------------------
// Sizes. Each buffer is a named constant with the reason for its size.
// ---------------------------------------------------------------------------

// Two build-time settings, read by the compiler from the environment (the
// way firmware is configured: no run-time allocation means no run-time
// sizes). An unknown value stops the build with a message.
//
//   TAPSTACK_PROFILE=small   the small profile: 4 connections per service,
//                            2 KiB buffers, a RAM budget under 64 KiB
//   TAPSTACK_POOL=64         TCP connections per echo/upper-case pool

/// The small profile, for a microcontroller-sized RAM (`TAPSTACK_PROFILE=small`).
// A panic in a const stops the build with its message: it never runs.
#[allow(clippy::panic)]
pub const SMALL_PROFILE: bool = match option_env!("TAPSTACK_PROFILE") {
    None => false,
    Some(profile) if str_eq(profile, "small") => true,
    Some(profile) if str_eq(profile, "default") || profile.is_empty() => false,
    Some(_) => panic!("TAPSTACK_PROFILE must be `default` or `small`"),
};

/// This build's profile, as the banner shows it.
pub const PROFILE_NAME: &str = if SMALL_PROFILE { "small" } else { "default" };

/// `small` in the small profile, `default` otherwise.
const fn pick(small: usize, default: usize) -> usize {
    if SMALL_PROFILE { small } else { default }
}

/// Services the stack runs (echo, upper-case, discard, chargen); each has a
/// TCP pool and a UDP socket.
pub const SERVICE_COUNT: usize = 4;

/// TCP connections the echo and upper-case services each hold at once
/// (`TAPSTACK_POOL` at build time; 1 to [`MAX_POOL`]). The default 24: the
/// 16 concurrent clients the tests use, plus margin for sockets still finishing
/// a close (LAST-ACK) while back-to-back clients arrive.
pub const TCP_SOCKETS_PER_SERVICE: usize = env_count(option_env!("TAPSTACK_POOL"), pick(4, 24));
/// The largest `TAPSTACK_POOL` accepted.
pub const MAX_POOL: usize = 256;
/// Receive buffer per echo/upper-case socket: the advertised window.
/// 64 KiB (the largest window without scaling) keeps a TAP at MTU 1500 busy
/// with 44 full-size segments in flight.
pub const TCP_RX_BUFFER: usize = pick(2 * 1024, 64 * 1024);
/// Transmit buffer per echo/upper-case socket: holds what the service has
/// answered but the peer has not yet acknowledged. Same size as the window it answers.
pub const TCP_TX_BUFFER: usize = TCP_RX_BUFFER;

/// TCP connections the discard and chargen services each hold at once: they
/// are for measuring one stream at a time, so a few suffice.
pub const BULK_SOCKETS: usize = pick(1, 4);
/// The big side of a one-way socket: discard's receive buffer (the window
/// the host may fill) and chargen's transmit buffer. 256 KiB is four
/// segments at MTU 65000, so the window scales (RFC 7323) and a jumbo link
/// stays busy; 29 segments at MTU 9000.
pub const BULK_BUFFER: usize = pick(2 * 1024, 256 * 1024);
/// The idle side of a one-way socket: discard's transmit buffer (it sends
/// nothing) and chargen's receive buffer (what a client sends is dropped).
pub const BULK_IDLE_BUFFER: usize = pick(256, 1024);

/// Datagrams one UDP socket can queue in each direction.
pub const UDP_PACKET_SLOTS: usize = pick(4, 32);
/// Payload bytes one UDP socket can queue when receiving. Large enough for a
/// burst of full-size datagrams at MTU 1500 (32 x 1472 is about 46 KiB would
/// be the worst case; 16 KiB absorbs the bursts the tests and tools send).
/// A datagram larger than this is dropped: in the small profile that is
/// 512 bytes, the classic limit of DNS over UDP.
pub const UDP_RX_BUFFER: usize = pick(512, 16 * 1024);
/// Payload bytes one UDP socket can queue when sending. Equal to the receive
/// side, so any datagram that was received can always be answered.
pub const UDP_TX_BUFFER: usize = UDP_RX_BUFFER;

/// The work buffer: bytes move socket -> scratch -> transform -> socket; the
/// status page is rendered here whole before it is queued; the fault
/// injector corrupts a received frame in a copy here (frames are moved
/// before the services run). It holds the largest UDP datagram a socket can
/// receive and the largest page the status connection can queue.
pub const SCRATCH_BUFFER: usize = if UDP_RX_BUFFER > HTTP_TX_BUFFER {
    UDP_RX_BUFFER
} else {
    HTTP_TX_BUFFER
};

/// The fault injector's sink, where smoltcp builds a frame that the injector
/// then drops instead of sending: a jumbo frame (9216 bytes of IP) plus its
/// Ethernet header; a full frame at MTU 1500 in the small profile. Longer
/// frames pass the injector untouched.
pub const FAULT_FRAME_BUFFER: usize = pick(1500, 9216) + 14;

/// Addresses on the interface: IPv4, IPv6, IPv6 link-local. Must match
/// smoltcp's `iface-max-addr-count-3` feature in Cargo.toml.
pub const IFACE_ADDRESSES: usize = 3;

/// Status page connections at once: a browser plus a script or two.
pub const HTTP_SOCKETS: usize = pick(1, 4);
/// Receive buffer per status connection: a request head fits (see below).
pub const HTTP_RX_BUFFER: usize = pick(512, 2 * 1024);
/// Transmit buffer per status connection: a whole response is queued at
/// once, so it must hold the largest page (about 10 KiB with every socket
/// busy; 4.5 KiB in the small profile, which has few sockets: the page of
/// an idle stack fits, a larger one is answered 503, `/stats.json` fits).
pub const HTTP_TX_BUFFER: usize = pick(4 * 1024 + 512, 16 * 1024);
/// Largest request head (request line and headers) accepted; a larger one
/// is answered 431. curl sends about 80 bytes, a browser 400 to 700.
pub const HTTP_REQUEST_BUFFER: usize = 1024;

/// TCP sockets in all pools.
pub const TCP_SOCKET_COUNT: usize = 2 * TCP_SOCKETS_PER_SERVICE + 2 * BULK_SOCKETS;
/// UDP sockets: one per service.
pub const UDP_SOCKET_COUNT: usize = SERVICE_COUNT;
/// Slots in the socket set.
pub const SOCKET_COUNT: usize = TCP_SOCKET_COUNT + UDP_SOCKET_COUNT + HTTP_SOCKETS;

/// How often an idle TCP connection is probed (RFC 1122 keep-alive), so a
/// peer that vanished is noticed and its pool slot freed.
pub const TCP_KEEP_ALIVE_SECS: u64 = 30;
/// How long a TCP connection may go without an acknowledgement (data or
/// keep-alive) before it is aborted and its slot returned to the pool.
pub const TCP_TIMEOUT_SECS: u64 = 90;

/// How long a connection may stay half-open (SYN received, our SYN-ACK not
/// yet acknowledged) before it is reset and its slot re-armed: two SYN-ACK
/// retransmissions at smoltcp's initial 1 s timeout, then give up. Without
/// it a half-open connection holds a pool slot for the whole user timeout,
/// and a SYN flood would hold the whole pool.
pub const TCP_SYN_RECEIVED_TIMEOUT_SECS: u64 = 5;

/// How long a connection may hold data for a peer that takes none of it (it
/// never reads: its window stays shut, yet it answers every probe, so the
/// user timeout never fires) before it is reset and its slot re-armed.
/// As long as the user timeout, and longer than smoltcp's 60 s neighbour
/// lifetime: a shorter one resets every busy connection while a forged ARP
/// or NDP answer misdirects the stack's frames, which it otherwise survives.
pub const TCP_STALL_TIMEOUT_SECS: u64 = TCP_TIMEOUT_SECS;

/// How long a status page client may take to send its request head before
/// it is reset (a browser sends it at once; a client that says nothing
/// would hold one of the page's few slots for ever, keep-alives answered).
pub const HTTP_REQUEST_TIMEOUT_SECS: u64 = 10;

/// How long a connection the stack has closed may wait for the peer's FIN
/// (FIN-WAIT-2) before it is reset: the status page closes first, and a
/// client that reads the page but never closes would otherwise keep the
/// slot. Linux's default `tcp_fin_timeout`.
pub const TCP_FIN_WAIT_2_TIMEOUT_SECS: u64 = 60;

/// Frames received per round of [`crate::stack::Stack::poll`]: with
/// [`MAX_POLL_ROUNDS`], at most 512 frames per poll, so a flood cannot keep one
/// poll (and the binary's look at its signals) going for ever.
pub const MAX_FRAMES_PER_ROUND: usize = 64;

/// Upper bound on service/interface rounds in one [`crate::stack::Stack::poll`]:
/// keeps the work of one poll bounded under a flood.
pub const MAX_POLL_ROUNDS: usize = 8;

/// `a == b`, in a const context.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The pool size from `TAPSTACK_POOL` (`value`), or `default` when unset;
/// stops the build unless it is a number from 1 to [`MAX_POOL`]. Only
/// evaluated at compile time, so its panic is a build error, never a run-time one.
#[allow(clippy::panic)]
const fn env_count(value: Option<&str>, default: usize) -> usize {
    let Some(value) = value else {
        return default;
    };
    let digits = value.as_bytes();
    let mut n = 0usize;
    let mut i = 0;
    let mut ok = !digits.is_empty() && digits.len() <= 4;
    while ok && i < digits.len() {
        ok = digits[i].is_ascii_digit();
        if ok {
            n = n * 10 + (digits[i] - b'0') as usize;
        }
        i += 1;
    }
    if !ok || n == 0 || n > MAX_POOL {
        panic!("TAPSTACK_POOL must be a number from 1 to 256 (MAX_POOL)");
    }
    n
}

// ---------------------------------------------------------------------------
// Parsers for values a user types.
// ---------------------------------------------------------------------------

/// Why a value typed by a user was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not six hex bytes separated by `:` or `-`.
    Mac,
    /// A multicast MAC (lowest bit of the first byte set) cannot be a host's address.
    MacNotUnicast,
    /// Not an IPv4 address.
    Ipv4,
    /// Not an IPv6 address.
    Ipv6,
    /// A CIDR without `/prefix`, or with a prefix that is not a number.
    CidrForm,
    /// The prefix is longer than the address (32 for IPv4, 128 for IPv6).
    PrefixTooLong,
    /// Not a number from 1 to 65535.
    Port,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mac => "expected a MAC address like 02:00:00:00:00:01",
            Self::MacNotUnicast => {
                "a multicast MAC cannot be an interface address (the first byte must be even, e.g. 02:...)"
            }
            Self::Ipv4 => "expected an IPv4 address like 192.168.69.1",
            Self::Ipv6 => "expected an IPv6 address like fdaa::1",
            Self::CidrForm => "expected ADDRESS/PREFIX, like 192.168.69.1/24 or fdaa::1/64",
            Self::PrefixTooLong => "the prefix length is too long (at most 32 for IPv4, 128 for IPv6)",
            Self::Port => "expected a port number from 1 to 65535",
        })
    }
}

impl core::error::Error for ParseError {}

/// Parses `02:00:00:00:00:01` (or with `-`), and accepts only unicast MACs.
pub fn parse_mac(s: &str) -> Result<EthernetAddress, ParseError> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut bytes = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in bytes.iter_mut() {
        let part = parts.next().ok_or(ParseError::Mac)?;
        if part.is_empty() || part.len() > 2 {
            return Err(ParseError::Mac);
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| ParseError::Mac)?;
    }
    if parts.next().is_some() {
        return Err(ParseError::Mac);
    }
    let mac = EthernetAddress(bytes);
    if !mac.is_unicast() {
        return Err(ParseError::MacNotUnicast);
    }
    Ok(mac)
}

fn split_cidr(s: &str, max_prefix: u8) -> Result<(&str, u8), ParseError> {
    let (addr, prefix) = s.split_once('/').ok_or(ParseError::CidrForm)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::CidrForm);
    }
    let prefix: u8 = prefix.parse().map_err(|_| ParseError::PrefixTooLong)?;
    if prefix > max_prefix {
        return Err(ParseError::PrefixTooLong);
    }
    Ok((addr, prefix))
}

/// Parses an IPv4 address.
pub fn parse_ipv4(s: &str) -> Result<Ipv4Address, ParseError> {
    s.parse().map_err(|_| ParseError::Ipv4)
}

/// Parses an IPv6 address.
pub fn parse_ipv6(s: &str) -> Result<Ipv6Address, ParseError> {
    s.parse().map_err(|_| ParseError::Ipv6)
}

/// Parses `192.168.69.1/24`.
pub fn parse_ipv4_cidr(s: &str) -> Result<Ipv4Cidr, ParseError> {
    let (addr, prefix) = split_cidr(s, 32)?;
    Ok(Ipv4Cidr::new(parse_ipv4(addr)?, prefix))
}

/// Parses `fdaa::1/64`.
pub fn parse_ipv6_cidr(s: &str) -> Result<Ipv6Cidr, ParseError> {
    let (addr, prefix) = split_cidr(s, 128)?;
    Ok(Ipv6Cidr::new(parse_ipv6(addr)?, prefix))
}

/// Parses a port from 1 to 65535 (0 means "any" to sockets, never a service).
pub fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(ParseError::Port),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display_round_trip() {
        let mac = parse_mac("02:00:00:00:00:01").unwrap();
        assert_eq!(mac, STACK_MAC);
        let mut text = heapless::String::<32>::new();
        fmt::write(&mut text, format_args!("{mac}")).unwrap();
        assert_eq!(text.as_str(), "02-00-00-00-00-01");
        assert_eq!(parse_mac(&text), Ok(STACK_MAC));
        assert_eq!(
            parse_mac("2:0:0:0:0:a"),
            Ok(EthernetAddress([2, 0, 0, 0, 0, 10]))
        );
    }

    #[test]
    fn mac_rejects_bad_forms() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:zz",
            "020:0:0:0:0:1",
            "02::00:00:00:01",
        ] {
            assert_eq!(parse_mac(bad), Err(ParseError::Mac), "{bad:?}");
        }
        assert_eq!(
            parse_mac("01:00:5e:00:00:01"),
            Err(ParseError::MacNotUnicast)
        );
        assert_eq!(
            parse_mac("ff:ff:ff:ff:ff:ff"),
            Err(ParseError::MacNotUnicast)
        );
    }

    #[test]
    fn cidr_parse() {
        assert_eq!(parse_ipv4_cidr("192.168.69.1/24"), Ok(STACK_IPV4));
        assert_eq!(parse_ipv6_cidr("fdaa::1/64"), Ok(STACK_IPV6));
        assert_eq!(parse_ipv4_cidr("192.168.69.1"), Err(ParseError::CidrForm));
        assert_eq!(parse_ipv4_cidr("192.168.69.1/"), Err(ParseError::CidrForm));
        assert_eq!(
            parse_ipv4_cidr("192.168.69.1/+4"),
            Err(ParseError::CidrForm)
        );
        assert_eq!(
            parse_ipv4_cidr("192.168.69.1/33"),
            Err(ParseError::PrefixTooLong)
        );
        assert_eq!(
            parse_ipv4_cidr("192.168.69.1/999"),
            Err(ParseError::PrefixTooLong)
        );
        assert_eq!(parse_ipv4_cidr("192.168.69/24"), Err(ParseError::Ipv4));
        assert_eq!(
            parse_ipv6_cidr("fdaa::1/129"),
            Err(ParseError::PrefixTooLong)
        );
        assert_eq!(parse_ipv6_cidr("fdaa:::1/64"), Err(ParseError::Ipv6));
        assert_eq!(parse_ipv6_cidr("192.168.69.1/24"), Err(ParseError::Ipv6));
    }

    #[test]
    fn port_parse() {
        assert_eq!(parse_port("7"), Ok(7));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "", "seven", " 7"] {
            assert_eq!(parse_port(bad), Err(ParseError::Port), "{bad:?}");
        }
    }

    #[test]
    fn contract_is_consistent() {
        assert!(STACK_IPV4.contains_addr(&HOST_IPV4.address()));
        assert!(STACK_IPV6.contains_addr(&HOST_IPV6.address()));
        assert!(STACK_MAC.is_unicast() && STACK_MAC.is_local());
        assert_ne!(ECHO_PORT, UPPER_PORT);
    }
}

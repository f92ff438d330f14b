//! Frames written straight into a TAP from the host side, and read back.
//!
//! The robustness tests need to send what no well-behaved kernel sends:
//! truncated headers, wrong lengths and checksums, every TCP flag
//! combination, spoofed sources. [`Link`] is an `AF_PACKET` socket bound to
//! the host side of the stack's TAP inside a test namespace: what it sends
//! goes out of the TAP into the stack exactly as written (the kernel only
//! refuses frames shorter than an Ethernet header), and it sees every frame
//! the stack writes. The frame builders below write every header byte by
//! hand (no checksum or length is ever fixed up behind the test's back), so
//! a test can break exactly one field; [`Parsed`] reads replies with
//! smoltcp's checked `wire` parsers.
//!
//! It also reads what the binary tells about itself: the `Counters:` table it
//! prints on exit ([`stop_with_counters`]), its resident memory and CPU time
//! from `/proc` ([`Proc`]).
//!
//! Guarantees, like the netns harness: every wait is bounded; sockets are
//! made inside the test's namespace and closed on drop; nothing here sends
//! anything outside that namespace.

#![allow(dead_code)] // Each test uses a different part of it.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet,
    Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

use crate::netns::{Netns, StackProcess};

/// EtherTypes (IEEE 802.3; IANA).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol numbers (IANA).
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// IPv6 fragment header.
pub const PROTO_FRAGMENT: u8 = 44;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 hop-by-hop options header.
pub const PROTO_HOP_BY_HOP: u8 = 0;
/// IPv6 routing header.
pub const PROTO_ROUTING: u8 = 43;
/// IPv6 "no next header".
pub const PROTO_NO_NEXT: u8 = 59;

/// TCP flag bits (RFC 9293 3.1, RFC 3168 for ECE and CWR).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// The stack's side in the default contract (`tapstack::config`).
pub const STACK_MAC: EthernetAddress = tapstack::config::STACK_MAC;
/// The stack's IPv4 address.
pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// The stack's IPv6 address.
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
/// The stack's IPv6 link-local address (EUI-64 of [`STACK_MAC`]).
pub const STACK_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);
/// The host side of the TAP, the stack's gateway.
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
/// The host's IPv6 address.
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100);

// ---------------------------------------------------------------------------
// The raw link
// ---------------------------------------------------------------------------

/// `ETH_P_ALL` in network byte order, as `AF_PACKET` wants it.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// What [`Link::send_many`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames the kernel took for the TAP.
    pub taken: u64,
    /// Frames the kernel refused (`ENOBUFS`: its queue to the TAP was full).
    pub refused: u64,
    /// The TAP went down or away while sending (the stack stopped).
    pub gone: bool,
}

/// An `AF_PACKET` socket pair on the host side of a TAP: one to send, one to
/// see every frame the stack writes.
pub struct Link {
    tx: OwnedFd,
    rx: OwnedFd,
    /// The MAC of the host side of the TAP (the kernel's).
    pub host_mac: EthernetAddress,
}

impl Link {
    /// Opens both sockets on `dev` inside `ns`. The receiving one sees frames
    /// from now on.
    pub fn open(ns: &Netns, dev: &str) -> Self {
        let host_mac = host_mac(ns, dev);
        let dev = dev.to_owned();
        let (tx, rx) = ns.run(move || {
            let name = std::ffi::CString::new(dev.clone()).expect("no NUL in a device name");
            // SAFETY: `name` is a valid C string for the duration of the call.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(index != 0, "no interface {dev} in the namespace");
            // Protocol 0: the sending socket receives nothing.
            let tx = packet_socket(index as i32, 0);
            let rx = packet_socket(index as i32, eth_p_all());
            let size: libc::c_int = 8 * 1024 * 1024;
            // SAFETY: the option value is a live c_int of the size given.
            unsafe {
                libc::setsockopt(
                    rx.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&size as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            (tx, rx)
        });
        Self { tx, rx, host_mac }
    }

    /// Writes one frame into the TAP.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live slice of `frame.len()` bytes.
        let n = unsafe { libc::send(self.tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Writes one frame and fails the test if the kernel refuses it.
    pub fn inject(&self, frame: &[u8]) {
        // A full queue to the TAP refuses for a moment; retry a bounded number of times.
        for _ in 0..1000 {
            match self.send(frame) {
                Ok(()) => return,
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(err) => panic!("AF_PACKET send of a {}-byte frame: {err}", frame.len()),
            }
        }
        panic!("the kernel kept refusing a frame (ENOBUFS) for 200 ms");
    }

    /// Writes every frame as fast as the kernel takes them, never waiting:
    /// a flood. Counts what the kernel refused.
    pub fn send_many<'a>(&self, frames: impl IntoIterator<Item = &'a [u8]>) -> Sent {
        let mut sent = Sent::default();
        for frame in frames {
            match self.send(frame) {
                Ok(()) => sent.taken += 1,
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => sent.refused += 1,
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
                    ) =>
                {
                    sent.gone = true;
                    return sent;
                }
                Err(err) => panic!("AF_PACKET send: {err}"),
            }
        }
        sent
    }

    /// The next frame the stack wrote, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one live pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready <= 0 {
                return None;
            }
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are live and of the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                return Some(buf[..n as usize].to_vec());
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Waits at most `timeout` for a frame from the stack that `want`
    /// accepts; frames it does not accept are passed over.
    pub fn expect(&self, timeout: Duration, want: impl Fn(&Parsed) -> bool) -> Option<Parsed> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.recv(left)?;
            let parsed = Parsed::parse(&frame);
            if want(&parsed) {
                return Some(parsed);
            }
        }
    }

    /// Every frame the stack writes during `window` (the measured window of
    /// a "nothing comes back" check).
    pub fn collect_for(&self, window: Duration) -> Vec<Parsed> {
        let deadline = Instant::now() + window;
        let mut frames = Vec::new();
        while let Some(frame) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            frames.push(Parsed::parse(&frame));
        }
        frames
    }

    /// Drops whatever has been seen so far.
    pub fn drain(&self) {
        while self.recv(Duration::ZERO).is_some() {}
    }
}

/// An `AF_PACKET` raw socket bound to interface `index` for `protocol`.
fn packet_socket(index: i32, protocol: u16) -> OwnedFd {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {} (needs root)",
        io::Error::last_os_error()
    );
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = index;
    // SAFETY: `addr` is a live sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert!(
        rc == 0,
        "bind AF_PACKET socket: {}",
        io::Error::last_os_error()
    );
    fd
}

/// The MAC of `dev` in `ns`, from `ip -br link`.
pub fn host_mac(ns: &Netns, dev: &str) -> EthernetAddress {
    let out = ns.ip(&["-br", "link", "show", "dev", dev]);
    let field = out
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no MAC in `ip -br link show {dev}`: {out:?}"));
    let bytes: Vec<u8> = field
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC is hex bytes"))
        .collect();
    EthernetAddress::from_bytes(&bytes)
}

// ---------------------------------------------------------------------------
// Building frames, byte by byte
// ---------------------------------------------------------------------------

/// The Internet checksum (RFC 1071) of `parts` concatenated.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header of TCP, UDP and ICMPv6 checksums (RFC 9293 3.1, RFC 8200 8.1).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed address families {src} {dst}"),
    }
    p
}

/// An Ethernet II frame.
pub fn ethernet(
    dst: EthernetAddress,
    src: EthernetAddress,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 header (20 bytes plus `options`, correct checksum) and `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut p = Vec::with_capacity(total);
    p.push(0x40 | (header_len / 4) as u8);
    p.push(0);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00]); // ident, DF
    p.push(64);
    p.push(proto);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    let sum = checksum(&[&p[..header_len]]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Recomputes the IPv4 header checksum of `packet` in place (after a test
/// changed a field it wants to reach the stack as valid).
pub fn refill_ipv4_checksum(packet: &mut [u8]) {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum(&[&packet[..header_len.min(packet.len())]]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// An IPv6 header and `payload` (which starts with header `next`).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An IP packet of the family of `src` (and `dst`).
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, &[], payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, payload),
        _ => panic!("mixed address families {src} {dst}"),
    }
}

/// The EtherType for an IP packet from `src`.
pub fn ethertype_of(src: IpAddr) -> u16 {
    match src {
        IpAddr::V4(_) => ETHERTYPE_IPV4,
        IpAddr::V6(_) => ETHERTYPE_IPV6,
    }
}

/// A TCP segment: every field the test chooses, the checksum right for
/// `src` and `dst`. `options` is padded with zeros (end of list) to a
/// multiple of 4 bytes.
#[derive(Clone, Debug)]
pub struct Segment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// The flag byte (CWR ECE URG ACK PSH RST SYN FIN).
    pub flags: u8,
    /// Window field.
    pub window: u16,
    /// Raw option bytes.
    pub options: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// The segment's bytes, checksum filled for `src` -> `dst`.
    pub fn bytes(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let opt_len = self.options.len().div_ceil(4) * 4;
        assert!(opt_len <= 40, "TCP options are at most 40 bytes");
        let header_len = 20 + opt_len;
        let mut s = Vec::with_capacity(header_len + self.payload.len());
        s.extend_from_slice(&self.src_port.to_be_bytes());
        s.extend_from_slice(&self.dst_port.to_be_bytes());
        s.extend_from_slice(&self.seq.to_be_bytes());
        s.extend_from_slice(&self.ack.to_be_bytes());
        s.push(((header_len / 4) as u8) << 4);
        s.push(self.flags);
        s.extend_from_slice(&self.window.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        s.extend_from_slice(self.options);
        s.resize(header_len, 0);
        s.extend_from_slice(self.payload);
        let sum = checksum(&[&pseudo_header(src, dst, PROTO_TCP, s.len()), &s]);
        s[16..18].copy_from_slice(&sum.to_be_bytes());
        s
    }
}

/// A SYN from `src_port` to `dst_port`, MSS 1460, no other option.
pub fn syn(src_port: u16, dst_port: u16, seq: u32) -> Segment<'static> {
    Segment {
        src_port,
        dst_port,
        seq,
        ack: 0,
        flags: flags::SYN,
        window: 64240,
        options: &[2, 4, 0x05, 0xb4],
        payload: &[],
    }
}

/// A UDP datagram, checksum right for `src` -> `dst`.
pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&src_port.to_be_bytes());
    d.extend_from_slice(&dst_port.to_be_bytes());
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let mut sum = checksum(&[&pseudo_header(src, dst, PROTO_UDP, len), &d]);
    if sum == 0 {
        sum = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

/// An ICMPv4 echo request.
pub fn icmpv4_echo(ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let sum = checksum(&[&m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An ICMPv6 message of `kind` and `code` with `body` (after the checksum),
/// checksum right for `src` -> `dst`.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(body);
    let sum = checksum(&[
        &pseudo_header(src.into(), dst.into(), PROTO_ICMPV6, m.len()),
        &m,
    ]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An ICMPv6 echo request.
pub fn icmpv6_echo(src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&ident.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(data);
    icmpv6(src, dst, 128, 0, &body)
}

/// A neighbour advertisement (RFC 4861 4.4) for `target` at `mac`, with the
/// override flag if `override_`: what a spoofer sends.
pub fn neighbor_advert(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: EthernetAddress,
    override_: bool,
) -> Vec<u8> {
    let flag = if override_ { 0x20 } else { 0 } | 0x40; // solicited
    let mut body = vec![flag, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[2, 1]); // target link-layer address option, 8 bytes
    body.extend_from_slice(&mac.0);
    icmpv6(src, dst, 136, 0, &body)
}

/// A neighbour solicitation (RFC 4861 4.3) for `target`, with the source
/// link-layer address `mac`.
pub fn neighbor_solicit(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: EthernetAddress,
) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]); // source link-layer address option
    body.extend_from_slice(&mac.0);
    icmpv6(src, dst, 135, 0, &body)
}

/// The solicited-node multicast address of `addr` (RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464 7).
pub fn multicast_mac(group: Ipv6Addr) -> EthernetAddress {
    let o = group.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// An ARP packet for Ethernet and IPv4 (RFC 826).
pub fn arp(
    operation: u16,
    sender_mac: EthernetAddress,
    sender_ip: Ipv4Addr,
    target_mac: EthernetAddress,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&operation.to_be_bytes());
    a.extend_from_slice(&sender_mac.0);
    a.extend_from_slice(&sender_ip.octets());
    a.extend_from_slice(&target_mac.0);
    a.extend_from_slice(&target_ip.octets());
    a
}

/// A whole frame: Ethernet to the stack's MAC, IP, and a transport payload.
pub fn to_stack(
    src_mac: EthernetAddress,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    ethernet(
        STACK_MAC,
        src_mac,
        ethertype_of(src),
        &ip(src, dst, proto, l4),
    )
}

/// A whole TCP frame to the stack.
pub fn tcp_frame(src_mac: EthernetAddress, src: IpAddr, dst: IpAddr, seg: &Segment<'_>) -> Vec<u8> {
    to_stack(src_mac, src, dst, PROTO_TCP, &seg.bytes(src, dst))
}

/// A whole UDP frame to the stack.
pub fn udp_frame(
    src_mac: EthernetAddress,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    to_stack(
        src_mac,
        src,
        dst,
        PROTO_UDP,
        &udp(src, dst, src_port, dst_port, payload),
    )
}

/// A whole ICMP or ICMPv6 echo request frame to the stack.
pub fn ping_frame(
    src_mac: EthernetAddress,
    src: IpAddr,
    dst: IpAddr,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => to_stack(
            src_mac,
            src,
            dst,
            PROTO_ICMP,
            &icmpv4_echo(0x7e57, seq, data),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => to_stack(
            src_mac,
            src,
            dst,
            PROTO_ICMPV6,
            &icmpv6_echo(s, d, 0x7e57, seq, data),
        ),
        _ => panic!("mixed address families"),
    }
}

/// A deterministic address generator for spoofed sources (xorshift64).
pub struct Spoof(u64);

impl Spoof {
    /// Seeded; zero is replaced.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next 64 pseudo-random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// An IPv4 unicast address in 10.0.0.0/8 (off the stack's subnet: it
    /// answers through its gateway, the host, which drops it).
    pub fn off_link_v4(&mut self) -> Ipv4Addr {
        let n = self.next() as u32;
        Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff).max(1))
    }

    /// An IPv6 address in 2001:db8::/32 (documentation prefix, off-link).
    pub fn off_link_v6(&mut self) -> Ipv6Addr {
        let n = self.next();
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            (n >> 48) as u16,
            (n >> 32) as u16,
            (n >> 16) as u16,
            (n as u16).max(1),
        )
    }
}

// ---------------------------------------------------------------------------
// Reading frames
// ---------------------------------------------------------------------------

/// A frame from the stack, read with smoltcp's checked parsers.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// The whole frame.
    pub bytes: Vec<u8>,
    /// Ethernet source.
    pub src_mac: Option<EthernetAddress>,
    /// Ethernet destination.
    pub dst_mac: Option<EthernetAddress>,
    /// ARP: (operation, sender IP, sender MAC, target IP).
    pub arp: Option<(ArpOperation, Ipv4Addr, EthernetAddress, Ipv4Addr)>,
    /// IP source and destination.
    pub ip: Option<(IpAddr, IpAddr)>,
    /// TCP: source port, destination port, flags, seq, ack, window, payload.
    pub tcp: Option<Tcp>,
    /// UDP: source port, destination port, payload.
    pub udp: Option<(u16, u16, Vec<u8>)>,
    /// ICMP or ICMPv6: type, code, the message after the checksum.
    pub icmp: Option<(u8, u8, Vec<u8>)>,
}

/// The TCP part of a [`Parsed`] frame.
#[derive(Clone, Debug, Default)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Flag byte.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Window field.
    pub window: u16,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Parsed {
    /// Reads `bytes`; layers that do not parse stay `None`.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut p = Self {
            bytes: bytes.to_vec(),
            ..Self::default()
        };
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            return p;
        };
        p.src_mac = Some(eth.src_addr());
        p.dst_mac = Some(eth.dst_addr());
        let (src, dst, proto, payload) = match eth.ethertype() {
            EthernetProtocol::Arp => {
                if let Ok(a) = ArpPacket::new_checked(eth.payload())
                    && a.hardware_len() == 6
                    && a.protocol_len() == 4
                {
                    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                    p.arp = Some((
                        a.operation(),
                        ip(a.source_protocol_addr()),
                        EthernetAddress::from_bytes(a.source_hardware_addr()),
                        ip(a.target_protocol_addr()),
                    ));
                }
                return p;
            }
            EthernetProtocol::Ipv4 => {
                let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                    return p;
                };
                (
                    IpAddr::V4(ip.src_addr()),
                    IpAddr::V4(ip.dst_addr()),
                    ip.next_header(),
                    ip.payload().to_vec(),
                )
            }
            EthernetProtocol::Ipv6 => {
                let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                    return p;
                };
                (
                    IpAddr::V6(ip.src_addr()),
                    IpAddr::V6(ip.dst_addr()),
                    ip.next_header(),
                    ip.payload().to_vec(),
                )
            }
            _ => return p,
        };
        p.ip = Some((src, dst));
        match proto {
            IpProtocol::Tcp => {
                if let Ok(t) = TcpPacket::new_checked(&payload[..]) {
                    p.tcp = Some(Tcp {
                        src_port: t.src_port(),
                        dst_port: t.dst_port(),
                        flags: payload[13],
                        seq: t.seq_number().0 as u32,
                        ack: t.ack_number().0 as u32,
                        window: t.window_len(),
                        payload: t.payload().to_vec(),
                    });
                }
            }
            IpProtocol::Udp => {
                if let Ok(u) = UdpPacket::new_checked(&payload[..]) {
                    p.udp = Some((u.src_port(), u.dst_port(), u.payload().to_vec()));
                }
            }
            IpProtocol::Icmp => {
                if let Ok(i) = Icmpv4Packet::new_checked(&payload[..]) {
                    p.icmp = Some((i.msg_type().into(), i.msg_code(), payload[4..].to_vec()));
                }
            }
            IpProtocol::Icmpv6 => {
                if let Ok(i) = Icmpv6Packet::new_checked(&payload[..]) {
                    p.icmp = Some((i.msg_type().into(), i.msg_code(), payload[4..].to_vec()));
                }
            }
            _ => {}
        }
        p
    }

    /// True if this is a TCP segment with all of `set` flags and none of `clear`.
    pub fn is_tcp(&self, set: u8, clear: u8) -> bool {
        self.tcp
            .as_ref()
            .is_some_and(|t| t.flags & set == set && t.flags & clear == 0)
    }
}

// ---------------------------------------------------------------------------
// A hand-driven TCP peer
// ---------------------------------------------------------------------------

/// A TCP client written frame by frame: it answers exactly what the test
/// says (or nothing), from an address of its own on the TAP's subnet that
/// the host kernel does not own, so the kernel never answers for it.
pub struct RawPeer<'l> {
    link: &'l Link,
    /// The peer's MAC.
    pub mac: EthernetAddress,
    /// The peer's address.
    pub addr: IpAddr,
    /// The peer's port.
    pub port: u16,
    /// The stack's address and port.
    pub remote: (IpAddr, u16),
    /// Next sequence number to send.
    pub snd_nxt: u32,
    /// Next sequence number expected from the stack.
    pub rcv_nxt: u32,
    /// Window the peer advertises.
    pub window: u16,
}

/// A MAC for a raw peer: locally administered, unicast, tagged with `n`.
pub fn peer_mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0x99, 0, 0, 0, n])
}

impl<'l> RawPeer<'l> {
    /// A peer at `addr` with `mac`, talking to `remote`. It tells the stack
    /// where it is (an ARP request, or a neighbour solicitation, for the
    /// stack's address: smoltcp learns the sender from both), and waits for
    /// the answer so the stack is known to have its address.
    pub fn new(
        link: &'l Link,
        mac: EthernetAddress,
        addr: IpAddr,
        port: u16,
        remote: (IpAddr, u16),
    ) -> Self {
        let peer = Self {
            link,
            mac,
            addr,
            port,
            remote,
            snd_nxt: 0x1000_0000,
            rcv_nxt: 0,
            window: 64240,
        };
        peer.announce();
        peer
    }

    /// Tells the stack this peer's MAC and waits (bounded) for its answer.
    pub fn announce(&self) {
        for _ in 0..5 {
            match (self.addr, self.remote.0) {
                (IpAddr::V4(me), IpAddr::V4(stack)) => {
                    self.link.inject(&ethernet(
                        STACK_MAC,
                        self.mac,
                        ETHERTYPE_ARP,
                        &arp(1, self.mac, me, EthernetAddress([0; 6]), stack),
                    ));
                }
                (IpAddr::V6(me), IpAddr::V6(stack)) => {
                    let group = solicited_node(stack);
                    self.link.inject(&ethernet(
                        multicast_mac(group),
                        self.mac,
                        ETHERTYPE_IPV6,
                        &ndp_packet(me, group, &neighbor_solicit(me, group, stack, self.mac)),
                    ));
                }
                _ => panic!("mixed address families"),
            }
            let answered = self
                .link
                .expect(Duration::from_secs(1), |f| {
                    f.dst_mac == Some(self.mac) && (f.arp.is_some() || f.icmp.is_some())
                })
                .is_some();
            if answered {
                return;
            }
        }
        panic!("the stack never answered {}'s ARP/NDP", self.addr);
    }

    /// A segment from this peer, to the stack, as a frame.
    pub fn frame(&self, seg: &Segment<'_>) -> Vec<u8> {
        tcp_frame(self.mac, self.addr, self.remote.0, seg)
    }

    /// Sends a segment with these fields from this peer's port.
    pub fn send(&self, flags: u8, seq: u32, ack: u32, window: u16, payload: &[u8]) {
        self.link.inject(&self.frame(&Segment {
            src_port: self.port,
            dst_port: self.remote.1,
            seq,
            ack,
            flags,
            window,
            options: &[],
            payload,
        }));
    }

    /// The next segment from the stack to this peer, at most `timeout`.
    pub fn next_segment(&self, timeout: Duration) -> Option<Tcp> {
        self.link
            .expect(timeout, |f| {
                f.dst_mac == Some(self.mac)
                    && f.tcp
                        .as_ref()
                        .is_some_and(|t| t.dst_port == self.port && t.src_port == self.remote.1)
            })
            .and_then(|f| f.tcp)
    }

    /// The next segment from the stack to this peer that `want` accepts,
    /// passing over the others, at most `timeout`.
    pub fn link_expect(&self, timeout: Duration, want: impl Fn(&Tcp) -> bool) -> Option<Tcp> {
        self.link
            .expect(timeout, |f| {
                f.dst_mac == Some(self.mac)
                    && f.tcp.as_ref().is_some_and(|t| {
                        t.dst_port == self.port && t.src_port == self.remote.1 && want(t)
                    })
            })
            .and_then(|f| f.tcp)
    }

    /// Sends a SYN with `window` and `options`, and returns the stack's
    /// answer (SYN-ACK or RST), if any within `timeout`.
    pub fn syn(&mut self, window: u16, options: &[u8], timeout: Duration) -> Option<Tcp> {
        self.link.inject(&self.frame(&Segment {
            src_port: self.port,
            dst_port: self.remote.1,
            seq: self.snd_nxt,
            ack: 0,
            flags: flags::SYN,
            window,
            options,
            payload: &[],
        }));
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.next_segment(timeout)
    }

    /// The three-way handshake with `window` and `options` in the SYN;
    /// fails the test unless the stack answers with a SYN-ACK.
    pub fn connect(&mut self, window: u16, options: &[u8]) {
        let answer = self
            .syn(window, options, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{}:{}: no answer to the SYN", self.addr, self.port));
        assert_eq!(
            answer.flags & (flags::SYN | flags::ACK | flags::RST),
            flags::SYN | flags::ACK,
            "{}:{}: expected a SYN-ACK, got {answer:?}",
            self.addr,
            self.port
        );
        assert_eq!(answer.ack, self.snd_nxt, "SYN-ACK acknowledges our SYN");
        self.rcv_nxt = answer.seq.wrapping_add(1);
        self.window = window;
        self.send(flags::ACK, self.snd_nxt, self.rcv_nxt, window, &[]);
    }

    /// Sends `data` in one segment (with ACK and PSH) at the next sequence number.
    pub fn write(&mut self, data: &[u8]) {
        self.send(
            flags::ACK | flags::PSH,
            self.snd_nxt,
            self.rcv_nxt,
            self.window,
            data,
        );
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
    }

    /// Reads in-order data from the stack until `want` bytes arrived,
    /// acknowledging each segment with the peer's window. Fails the test
    /// after `timeout`.
    pub fn read(&mut self, want: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let seg = self.next_segment(left).unwrap_or_else(|| {
                panic!(
                    "{}:{}: {} of {want} bytes after {timeout:?}",
                    self.addr,
                    self.port,
                    got.len()
                )
            });
            if seg.seq == self.rcv_nxt && !seg.payload.is_empty() {
                got.extend_from_slice(&seg.payload);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(seg.payload.len() as u32);
            }
            self.send(flags::ACK, self.snd_nxt, self.rcv_nxt, self.window, &[]);
        }
        got
    }
}

/// An IPv6 packet carrying an NDP message, with the hop limit of 255 that
/// NDP requires (RFC 4861 7.1.1: anything else is dropped).
pub fn ndp_packet(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    let mut p = ipv6(src, dst, PROTO_ICMPV6, icmp);
    p[7] = 255;
    p
}

// ---------------------------------------------------------------------------
// What the binary says about itself
// ---------------------------------------------------------------------------

/// The `Counters:` table the binary prints on stderr when it exits, by
/// (layer, counter name): (in, out).
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<(String, String), (u64, Option<u64>)>);

impl Counters {
    /// Parses the table from the binary's stderr. The rows are matched by
    /// position against the library's own `Counters::rows()` (the same code
    /// prints them), so a missing or extra row fails loudly.
    pub fn parse(stderr: &str) -> Option<Self> {
        let table = stderr.split("Counters:\n").nth(1)?;
        let names = tapstack::counters::Counters::default().rows();
        let lines: Vec<&str> = table.lines().skip(1).take(names.len()).collect();
        if lines.len() < names.len() {
            return None;
        }
        let mut map = BTreeMap::new();
        for ((layer, name, _, out), line) in names.iter().zip(lines) {
            let rest = line.trim_start().strip_prefix(layer)?.trim_start();
            let rest = rest.strip_prefix(name)?;
            let numbers: Vec<u64> = rest
                .split_whitespace()
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            let value = match (numbers.as_slice(), out) {
                ([i, o], Some(_)) => (*i, Some(*o)),
                ([i], None) => (*i, None),
                _ => return None,
            };
            map.insert((layer.to_string(), name.to_string()), value);
        }
        Some(Self(map))
    }

    /// The "in" value of a row (fails the test if the row does not exist).
    pub fn get(&self, layer: &str, name: &str) -> u64 {
        self.row(layer, name).0
    }

    /// The "out" value of a row.
    pub fn out(&self, layer: &str, name: &str) -> u64 {
        self.row(layer, name)
            .1
            .unwrap_or_else(|| panic!("counter {layer}/{name} has no out column"))
    }

    fn row(&self, layer: &str, name: &str) -> (u64, Option<u64>) {
        *self
            .0
            .get(&(layer.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no counter {layer}/{name} in {:?}", self.0.keys()))
    }

    /// Drops by reason, for messages.
    pub fn drops(&self) -> String {
        self.0
            .iter()
            .filter(|((layer, _), _)| layer == "dropped")
            .map(|((_, name), (n, _))| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a stopped stack ended, and what it printed.
pub struct Report {
    /// Exit status.
    pub status: ExitStatus,
    /// Its counters at exit.
    pub counters: Counters,
    /// Its whole stderr.
    pub stderr: String,
}

/// Stops `stack` with `signal` (by its PID), waits for it to exit, and
/// returns its exit status and the counters it printed. Fails the test if
/// it does not exit within the harness's bound or prints no table.
pub fn stop_with_counters(stack: StackProcess<'_>, signal: libc::c_int) -> Report {
    let pid = stack.pid();
    // SAFETY: kill has no memory effects; the PID is our own unreaped child
    // (StackProcess reaps it only in stop or drop), so it cannot be reused.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let proc_ = Proc(pid);
    let deadline = Instant::now() + crate::netns::EXIT_TIMEOUT;
    while !proc_.exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Exited (a zombie until reaped): everything it wrote is in the pipe;
    // wait until the reader thread has it all.
    let rows = tapstack::counters::Counters::default().rows().len();
    let mut counters = None;
    while Instant::now() < deadline {
        let err = stack.stderr();
        let complete = err
            .split("Counters:\n")
            .nth(1)
            .is_some_and(|t| t.lines().count() > rows && t.ends_with('\n'));
        if complete {
            counters = Counters::parse(&err);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let stderr = stack.stderr();
    let status = stack.stop();
    let counters = counters.unwrap_or_else(|| {
        panic!("tapstack ({status}) printed no complete Counters table; stderr:\n{stderr}")
    });
    Report {
        status,
        counters,
        stderr,
    }
}

/// A process, read from `/proc/PID`.
#[derive(Clone, Copy, Debug)]
pub struct Proc(pub u32);

impl Proc {
    /// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`, `VmData`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0))
            .unwrap_or_else(|err| panic!("read /proc/{}/status: {err}", self.0));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.0))
    }

    /// Resident memory in kB.
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    /// CPU time (user + system) used so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .unwrap_or_else(|err| panic!("read /proc/{}/stat: {err}", self.0));
        // Fields after the command name (which may hold spaces) start at ") ".
        let rest = &stat[stat.rfind(')').expect("stat has the command in parens") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5), here 11 and 12.
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / hz)
    }

    /// True once the process has exited (a zombie, or gone).
    pub fn exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
            Ok(stat) => stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].chars().next())
                .is_some_and(|state| state == 'Z' || state == 'X'),
            Err(_) => true,
        }
    }
}

/// The kernel's count of frames it dropped on their way into `dev` in
/// `ns` (its transmit side: the queue to the TAP was full).
pub fn kernel_tx_dropped(ns: &Netns, dev: &str) -> u64 {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev]);
    // "tx":{"bytes":..,"packets":..,"errors":..,"dropped":N,...}
    let tx = out
        .split("\"tx\":{")
        .nth(1)
        .unwrap_or_else(|| panic!("no tx stats in {out}"));
    tx.split("\"dropped\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no tx dropped in {out}"))
}

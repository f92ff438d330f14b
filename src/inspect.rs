//! Reading a frame layer by layer, for the counters and the trace.
//!
//! [`Frame::parse`] never panics and never allocates: every header is read
//! through smoltcp's checked `wire` accessors, and whatever does not parse is
//! reported as [`Net::Malformed`] or [`Transport::Malformed`] at the layer
//! where it broke. `Display` prints the one-line trace of a frame, in the
//! stack's own words, with each layer in its own column.

use core::fmt;

use crate::link::Mac;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet,
    Icmpv6Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Packet, TcpPacket, TcpRepr,
    UdpPacket, UdpRepr,
};

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the wire to the stack.
    In,
    /// From the stack to the wire.
    Out,
}

/// The Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethernet {
    /// Source MAC.
    pub src: EthernetAddress,
    /// Destination MAC.
    pub dst: EthernetAddress,
    /// EtherType.
    pub ethertype: EthernetProtocol,
}

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// ARP request or reply.
    Arp {
        /// Request or reply.
        operation: ArpOperation,
        /// Who asks (request) or answers (reply).
        sender: Ipv4Address,
        /// The sender's MAC (the answer, in a reply).
        sender_mac: EthernetAddress,
        /// Who is asked for.
        target: Ipv4Address,
    },
    /// IPv4 or IPv6 header.
    Ip {
        /// Source address.
        src: IpAddress,
        /// Destination address.
        dst: IpAddress,
        /// TTL (IPv4) or hop limit (IPv6).
        hop_limit: u8,
        /// The header checksum is wrong (IPv4 only; IPv6 has none).
        bad_checksum: bool,
    },
    /// Another EtherType.
    Other,
    /// The header does not parse.
    Malformed,
}

/// The transport layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// No transport layer (ARP, other EtherTypes, malformed IP).
    None,
    /// ICMPv4 or ICMPv6.
    Icmp {
        /// 4 or 6.
        version: u8,
        /// Message type.
        kind: u8,
        /// Message code.
        code: u8,
    },
    /// UDP.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Payload bytes.
        len: usize,
    },
    /// TCP.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Flags, as in the header: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10.
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Window field (before scaling).
        window: u16,
        /// Payload bytes.
        len: usize,
    },
    /// Another IP protocol.
    Other(IpProtocol),
    /// An IP fragment (IPv4 more-fragments or offset, IPv6 fragment
    /// header): the stack does no reassembly, so it drops every fragment.
    Fragment,
    /// The header does not parse, or breaks a rule smoltcp enforces (port
    /// 0, more than one of SYN/FIN/RST, a malformed TCP option).
    Malformed,
}

/// TCP flag bits (RFC 9293, 3.1).
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgement field is significant.
    pub const ACK: u8 = 0x10;
}

/// ICMP echo types: request and reply, for IPv4 (RFC 792) and IPv6 (RFC 4443).
pub mod icmp_types {
    /// ICMPv4 echo request.
    pub const V4_ECHO_REQUEST: u8 = 8;
    /// ICMPv4 echo reply.
    pub const V4_ECHO_REPLY: u8 = 0;
    /// ICMPv6 echo request.
    pub const V6_ECHO_REQUEST: u8 = 128;
    /// ICMPv6 echo reply.
    pub const V6_ECHO_REPLY: u8 = 129;
}

/// A frame, read layer by layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes on the wire.
    pub len: usize,
    /// The Ethernet header, or `None` if the frame is shorter than one.
    pub ethernet: Option<Ethernet>,
    /// The network layer.
    pub net: Net,
    /// The transport layer.
    pub transport: Transport,
}

impl Frame {
    /// Reads `bytes` as an Ethernet frame. Cheap: headers only, except that
    /// the IPv4 header checksum is checked (20 bytes).
    pub fn parse(bytes: &[u8]) -> Self {
        let mut frame = Self {
            len: bytes.len(),
            ethernet: None,
            net: Net::Malformed,
            transport: Transport::None,
        };
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            return frame;
        };
        frame.ethernet = Some(Ethernet {
            src: eth.src_addr(),
            dst: eth.dst_addr(),
            ethertype: eth.ethertype(),
        });
        let payload = eth.payload();
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                frame.net = match ArpPacket::new_checked(payload) {
                    Ok(arp) if arp.protocol_len() == 4 && arp.hardware_len() == 6 => {
                        let ip = |b: &[u8]| Ipv4Address::new(b[0], b[1], b[2], b[3]);
                        Net::Arp {
                            operation: arp.operation(),
                            sender: ip(arp.source_protocol_addr()),
                            sender_mac: EthernetAddress::from_bytes(arp.source_hardware_addr()),
                            target: ip(arp.target_protocol_addr()),
                        }
                    }
                    _ => Net::Malformed,
                };
            }
            EthernetProtocol::Ipv4 => {
                let Ok(ip) = Ipv4Packet::new_checked(payload) else {
                    return frame;
                };
                if ip.version() != 4 {
                    return frame;
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                frame.net = Net::Ip {
                    src,
                    dst,
                    hop_limit: ip.hop_limit(),
                    bad_checksum: !ip.verify_checksum(),
                };
                frame.transport = if ip.more_frags() || ip.frag_offset() != 0 {
                    Transport::Fragment
                } else {
                    transport(ip.next_header(), ip.payload(), src, dst)
                };
            }
            EthernetProtocol::Ipv6 => {
                let Ok(ip) = Ipv6Packet::new_checked(payload) else {
                    return frame;
                };
                if ip.version() != 6 {
                    return frame;
                }
                let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
                frame.net = Net::Ip {
                    src,
                    dst,
                    hop_limit: ip.hop_limit(),
                    bad_checksum: false,
                };
                frame.transport = match skip_hop_by_hop(ip.next_header(), ip.payload()) {
                    Some((IpProtocol::Ipv6Frag, _)) => Transport::Fragment,
                    Some((next, payload)) => transport(next, payload, src, dst),
                    None => Transport::Malformed,
                };
            }
            _ => frame.net = Net::Other,
        }
        frame
    }

    /// TCP flags, if this is a TCP segment.
    pub fn tcp_flags(&self) -> Option<u8> {
        match self.transport {
            Transport::Tcp { flags, .. } => Some(flags),
            _ => None,
        }
    }
}

/// Steps over a Hop-by-Hop options header (RFC 8200, 4.3), which MLD
/// reports carry, to the protocol behind it. `None` if it is truncated.
pub(crate) fn skip_hop_by_hop(next: IpProtocol, payload: &[u8]) -> Option<(IpProtocol, &[u8])> {
    if next != IpProtocol::HopByHop {
        return Some((next, payload));
    }
    // Next header, then the length in 8-octet units, not counting the first 8.
    let (&next, rest) = payload.split_first()?;
    let len = (usize::from(*rest.first()?) + 1) * 8;
    Some((IpProtocol::from(next), payload.get(len..)?))
}

fn transport(protocol: IpProtocol, payload: &[u8], src: IpAddress, dst: IpAddress) -> Transport {
    let version = if matches!(src, IpAddress::Ipv4(_)) {
        4
    } else {
        6
    };
    // Checksums are judged apart (`link::observed`); anything else smoltcp's
    // parsers refuse (port 0, SYN with FIN or RST, a bad TCP option) is
    // malformed: smoltcp drops it.
    let caps = ChecksumCapabilities::ignored();
    match protocol {
        IpProtocol::Tcp => match TcpPacket::new_checked(payload) {
            Ok(tcp) if TcpRepr::parse(&tcp, &src, &dst, &caps).is_err() => Transport::Malformed,
            Ok(tcp) => {
                let raw = payload.get(13).copied().unwrap_or(0);
                Transport::Tcp {
                    src: tcp.src_port(),
                    dst: tcp.dst_port(),
                    flags: raw & 0x1f,
                    seq: tcp.seq_number().0 as u32,
                    ack: tcp.ack_number().0 as u32,
                    window: tcp.window_len(),
                    len: tcp.payload().len(),
                }
            }
            Err(_) => Transport::Malformed,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(payload) {
            Ok(udp) if UdpRepr::parse(&udp, &src, &dst, &caps).is_err() => Transport::Malformed,
            Ok(udp) => Transport::Udp {
                src: udp.src_port(),
                dst: udp.dst_port(),
                len: udp.payload().len(),
            },
            Err(_) => Transport::Malformed,
        },
        IpProtocol::Icmp if version == 4 => match Icmpv4Packet::new_checked(payload) {
            Ok(icmp) => Transport::Icmp {
                version,
                kind: icmp.msg_type().into(),
                code: icmp.msg_code(),
            },
            Err(_) => Transport::Malformed,
        },
        IpProtocol::Icmpv6 if version == 6 => match Icmpv6Packet::new_checked(payload) {
            Ok(icmp) => Transport::Icmp {
                version,
                kind: icmp.msg_type().into(),
                code: icmp.msg_code(),
            },
            Err(_) => Transport::Malformed,
        },
        other => Transport::Other(other),
    }
}

/// Pads what `args` prints to `width` columns (left-aligned), without allocating.
struct Padded<T: fmt::Display>(T, usize);

impl<T: fmt::Display> fmt::Display for Padded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Count<'a, 'b> {
            inner: &'a mut fmt::Formatter<'b>,
            n: usize,
        }
        impl fmt::Write for Count<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.n += s.chars().count();
                self.inner.write_str(s)
            }
        }
        let mut count = Count { inner: f, n: 0 };
        fmt::write(&mut count, format_args!("{}", self.0))?;
        let pad = self.1.saturating_sub(count.n);
        for _ in 0..pad {
            f.write_str(" ")?;
        }
        Ok(())
    }
}

/// The TCP flags as tcpdump writes them: `[S.]` is SYN+ACK.
pub struct Flags(pub u8);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tcp_flags::*;
        f.write_str("[")?;
        for (bit, c) in [(SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, ".")] {
            if self.0 & bit != 0 {
                f.write_str(c)?;
            }
        }
        f.write_str("]")
    }
}

struct Link<'a>(&'a Option<Ethernet>);

impl fmt::Display for Link<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("eth  (truncated)"),
            Some(e) => {
                let kind = match e.ethertype {
                    EthernetProtocol::Arp => "ARP ",
                    EthernetProtocol::Ipv4 => "IPv4",
                    EthernetProtocol::Ipv6 => "IPv6",
                    _ => "?   ",
                };
                write!(f, "eth {} > {} {kind}", Mac(e.src), Mac(e.dst))
            }
        }
    }
}

struct Network<'a>(&'a Net);

impl fmt::Display for Network<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            Net::Arp {
                operation,
                sender,
                sender_mac,
                target,
            } => match operation {
                ArpOperation::Request => write!(f, "arp who-has {target} tell {sender}"),
                ArpOperation::Reply => write!(f, "arp reply {sender} is-at {}", Mac(sender_mac)),
                _ => write!(f, "arp op ? {sender} > {target}"),
            },
            Net::Ip {
                src,
                dst,
                hop_limit,
                bad_checksum,
            } => {
                let v = if matches!(src, IpAddress::Ipv4(_)) {
                    "ip4"
                } else {
                    "ip6"
                };
                let ttl = if v == "ip4" { "ttl" } else { "hop" };
                write!(f, "{v} {src} > {dst} {ttl} {hop_limit}")?;
                if bad_checksum {
                    f.write_str(" BAD-CHECKSUM")?;
                }
                Ok(())
            }
            Net::Other => f.write_str("(not IP or ARP)"),
            Net::Malformed => f.write_str("MALFORMED network header"),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use icmp_types::*;
        match *self {
            Transport::None => Ok(()),
            Transport::Icmp {
                version,
                kind,
                code,
            } => {
                let name = match (version, kind) {
                    (4, V4_ECHO_REQUEST) | (6, V6_ECHO_REQUEST) => "echo request",
                    (4, V4_ECHO_REPLY) | (6, V6_ECHO_REPLY) => "echo reply",
                    (4, 3) | (6, 1) => "destination unreachable",
                    (6, 133) => "router solicitation",
                    (6, 134) => "router advertisement",
                    (6, 135) => "neighbor solicitation",
                    (6, 136) => "neighbor advertisement",
                    (6, 143) => "MLDv2 report",
                    _ => "",
                };
                write!(
                    f,
                    "icmp{} type {kind} code {code} {name}",
                    if version == 6 { "6" } else { "" }
                )
            }
            Transport::Udp { src, dst, len } => write!(f, "udp {src} > {dst} len {len}"),
            Transport::Tcp {
                src,
                dst,
                flags,
                seq,
                ack,
                window,
                len,
            } => {
                write!(f, "tcp {src} > {dst} {} seq {seq}", Padded(Flags(flags), 5))?;
                if flags & tcp_flags::ACK != 0 {
                    write!(f, " ack {ack}")?;
                }
                write!(f, " win {window} len {len}")
            }
            Transport::Other(p) => write!(f, "ip protocol {p}"),
            Transport::Fragment => f.write_str("fragment (not reassembled)"),
            Transport::Malformed => f.write_str("MALFORMED transport header"),
        }
    }
}

impl fmt::Display for Frame {
    /// One trace line: link | network | transport, each layer in its own column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} | {} | {}",
            Padded(self.len, 5),
            Link(&self.ethernet),
            Padded(Network(&self.net), 44),
            self.transport
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    /// A real frame: host 192.168.69.100 SYN to 192.168.69.1:7, as Linux sends it
    /// (60 bytes, no options), with correct checksums.
    fn syn() -> std::vec::Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{EthernetRepr, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};
        let src = Ipv4Address::new(192, 168, 69, 100);
        let dst = Ipv4Address::new(192, 168, 69, 1);
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 7,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 64240,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x64]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = std::vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let mut e = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut e);
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(
            &mut t,
            &src.into(),
            &dst.into(),
            &ChecksumCapabilities::default(),
        );
        buf
    }

    #[test]
    fn parse_tcp_syn() {
        let f = Frame::parse(&syn());
        assert_eq!(f.len, 54);
        assert_eq!(
            f.net,
            Net::Ip {
                src: Ipv4Address::new(192, 168, 69, 100).into(),
                dst: Ipv4Address::new(192, 168, 69, 1).into(),
                hop_limit: 64,
                bad_checksum: false
            }
        );
        assert_eq!(
            f.transport,
            Transport::Tcp {
                src: 40000,
                dst: 7,
                flags: tcp_flags::SYN,
                seq: 1000,
                ack: 0,
                window: 64240,
                len: 0
            }
        );
        assert_eq!(
            f.to_string(),
            "54    eth 02:00:00:00:00:64 > 02:00:00:00:00:01 IPv4 | ip4 192.168.69.100 > 192.168.69.1 ttl 64     | tcp 40000 > 7 [S]   seq 1000 win 64240 len 0"
        );
    }

    #[test]
    fn bad_ipv4_checksum_is_seen() {
        let mut bytes = syn();
        bytes[14 + 10] ^= 0xff; // IPv4 header checksum field
        assert!(matches!(
            Frame::parse(&bytes).net,
            Net::Ip {
                bad_checksum: true,
                ..
            }
        ));
    }

    #[test]
    fn truncation_at_every_length_never_panics() {
        let bytes = syn();
        for n in 0..bytes.len() {
            let f = Frame::parse(&bytes[..n]);
            let _ = f.to_string();
            if n < 14 {
                assert_eq!(f.ethernet, None);
            }
        }
        // Cut inside TCP: the IP total length now exceeds the frame, so IP is what breaks.
        assert_eq!(Frame::parse(&bytes[..14 + 20 + 10]).net, Net::Malformed);
        // A TCP data offset of 15 words (60 bytes) in a 20-byte segment: TCP breaks.
        let mut bad_tcp = bytes.clone();
        bad_tcp[14 + 20 + 12] = 0xf0;
        let f = Frame::parse(&bad_tcp);
        assert!(matches!(f.net, Net::Ip { .. }));
        assert_eq!(f.transport, Transport::Malformed);
    }

    #[test]
    fn mld_behind_hop_by_hop_is_icmpv6() {
        // An MLDv2 report as Linux sends it: IPv6, Hop-by-Hop (router alert),
        // then ICMPv6 type 143.
        let mut f = std::vec![0u8; 14 + 40 + 8 + 8];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[14 + 4..14 + 6].copy_from_slice(&8u16.wrapping_add(8).to_be_bytes());
        f[14 + 6] = 0; // next header: Hop-by-Hop
        f[14 + 7] = 1; // hop limit
        let hbh = 14 + 40;
        f[hbh] = 58; // next header: ICMPv6
        f[hbh + 1] = 0; // 8 bytes in all
        f[hbh + 2..hbh + 6].copy_from_slice(&[5, 2, 0, 0]); // router alert
        f[hbh + 8] = 143; // MLDv2 report
        let frame = Frame::parse(&f);
        assert_eq!(
            frame.transport,
            Transport::Icmp {
                version: 6,
                kind: 143,
                code: 0
            }
        );
        assert!(
            frame
                .to_string()
                .ends_with("icmp6 type 143 code 0 MLDv2 report"),
            "{frame}"
        );
        // A Hop-by-Hop header that claims more than there is: malformed.
        f[hbh + 1] = 4;
        assert_eq!(Frame::parse(&f).transport, Transport::Malformed);
    }

    #[test]
    fn what_smoltcp_refuses_is_not_a_segment() {
        let bytes = syn();
        // Version 6 in an IPv4 header (checksum made right again).
        let mut v6 = bytes.clone();
        v6[14] = 0x65;
        Ipv4Packet::new_unchecked(&mut v6[14..]).fill_checksum();
        assert_eq!(Frame::parse(&v6).net, Net::Malformed);
        // A first fragment (more fragments set): no transport, a fragment.
        let mut frag = bytes.clone();
        frag[14 + 6] |= 0x20;
        assert_eq!(Frame::parse(&frag).transport, Transport::Fragment);
        // SYN+FIN, and source port 0: smoltcp drops both.
        let mut synfin = bytes.clone();
        synfin[14 + 20 + 13] |= tcp_flags::FIN;
        assert_eq!(Frame::parse(&synfin).transport, Transport::Malformed);
        let mut port0 = bytes;
        port0[14 + 20..14 + 22].copy_from_slice(&[0, 0]);
        assert_eq!(Frame::parse(&port0).transport, Transport::Malformed);
    }

    #[test]
    fn flags_like_tcpdump() {
        use tcp_flags::*;
        assert_eq!(Flags(SYN | ACK).to_string(), "[S.]");
        assert_eq!(Flags(FIN | PSH | ACK).to_string(), "[FP.]");
        assert_eq!(Flags(RST).to_string(), "[R]");
    }
}

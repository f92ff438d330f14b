//! Counters per layer, kept in a fixed-size struct (no heap), and what they
//! mean.
//!
//! Frame-level counters are updated by [`crate::link::Observed`] for every
//! frame in and out; TCP connection counters by [`crate::stack::Stack`] from
//! its sockets' state changes. `Display` prints them as a table; the HTTP
//! status service shows them as HTML and JSON.

use core::fmt;

use smoltcp::wire::{ArpOperation, IpAddress};

use crate::faults::Fault;
use crate::inspect::{Direction, Frame, Net, Transport, icmp_types, tcp_flags};

/// Frames and bytes, one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames.
    pub frames: u64,
    /// Bytes, Ethernet header included.
    pub bytes: u64,
}

/// In and out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InOut {
    /// Received.
    pub r#in: u64,
    /// Sent.
    pub out: u64,
}

/// Why a received frame went no further. Each is a reason the stack can know
/// from the frame and its own configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Not addressed to the stack (another MAC, another IP).
    pub not_for_us: u64,
    /// The source address can never send (loopback, multicast, broadcast).
    pub bad_source: u64,
    /// The IPv4 header, TCP or UDP checksum is wrong.
    pub bad_checksum: u64,
    /// A header does not parse (truncated, bad length).
    pub malformed: u64,
    /// TCP or UDP to a port no service listens on (answered by RST or ICMP port unreachable).
    pub no_socket: u64,
    /// A TCP connection attempt while every socket of the service's pool was busy (answered by RST).
    pub pool_full: u64,
    /// An IP fragment: the stack does no reassembly.
    pub fragment: u64,
    /// Dropped on purpose by the fault injector, either direction.
    pub injected: u64,
}

/// Every counter of the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Link: all frames received.
    pub link_in: Traffic,
    /// Link: all frames sent.
    pub link_out: Traffic,
    /// ARP requests.
    pub arp_requests: InOut,
    /// ARP replies.
    pub arp_replies: InOut,
    /// IPv4 packets.
    pub ipv4: InOut,
    /// IPv6 packets.
    pub ipv6: InOut,
    /// ICMP and ICMPv6 echo requests.
    pub icmp_echo_requests: InOut,
    /// ICMP and ICMPv6 echo replies.
    pub icmp_echo_replies: InOut,
    /// Other ICMP messages (NDP, unreachable, ...).
    pub icmp_other: InOut,
    /// UDP datagrams.
    pub udp: InOut,
    /// TCP segments.
    pub tcp: InOut,
    /// TCP connections that reached ESTABLISHED.
    pub tcp_opened: u64,
    /// TCP connections closed with FIN in both directions.
    pub tcp_closed: u64,
    /// TCP connections ended by a reset or a timeout.
    pub tcp_reset: u64,
    /// TCP connection attempts answered with a reset (no socket or pool full).
    pub tcp_refused: u64,
    /// Frames with injected corruption, either direction.
    pub corrupted: u64,
    /// Received frames that went no further, by reason.
    pub dropped: Drops,
}

/// Most ports the classifier knows per protocol: the services plus the status page.
pub const MAX_SERVICE_PORTS: usize = crate::config::SERVICE_COUNT + 1;

/// What the frame path needs to know to classify a received frame: a small
/// copy, taken before each poll of the interface.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The stack's MAC.
    pub mac: smoltcp::wire::EthernetAddress,
    /// The stack's addresses.
    pub addresses: heapless::Vec<smoltcp::wire::IpCidr, { crate::config::IFACE_ADDRESSES }>,
    /// TCP service ports and how many listening sockets each has left.
    pub tcp_ports: heapless::Vec<(u16, usize), MAX_SERVICE_PORTS>,
    /// UDP service ports.
    pub udp_ports: heapless::Vec<u16, MAX_SERVICE_PORTS>,
}

fn bump(io: &mut InOut, dir: Direction) {
    match dir {
        Direction::In => io.r#in += 1,
        Direction::Out => io.out += 1,
    }
}

impl Counters {
    /// Counts one frame. `checksum_ok` tells whether the received frame's
    /// TCP/UDP checksum verified (always true for sent frames).
    pub fn record(
        &mut self,
        dir: Direction,
        frame: &Frame,
        fault: Option<Fault>,
        policy: &mut Policy,
        checksum_ok: bool,
    ) {
        let traffic = match dir {
            Direction::In => &mut self.link_in,
            Direction::Out => &mut self.link_out,
        };
        traffic.frames += 1;
        traffic.bytes += frame.len as u64;
        match fault {
            Some(Fault::Dropped(_)) => {
                self.dropped.injected += 1;
                return;
            }
            Some(Fault::Corrupted { .. }) => self.corrupted += 1,
            None => {}
        }
        match frame.net {
            Net::Arp {
                operation: ArpOperation::Request,
                ..
            } => bump(&mut self.arp_requests, dir),
            Net::Arp {
                operation: ArpOperation::Reply,
                ..
            } => bump(&mut self.arp_replies, dir),
            Net::Ip { src, .. } => bump(
                if matches!(src, IpAddress::Ipv4(_)) {
                    &mut self.ipv4
                } else {
                    &mut self.ipv6
                },
                dir,
            ),
            _ => {}
        }
        match frame.transport {
            Transport::Icmp { version, kind, .. } => {
                use icmp_types::*;
                match (version, kind) {
                    (4, V4_ECHO_REQUEST) | (6, V6_ECHO_REQUEST) => {
                        bump(&mut self.icmp_echo_requests, dir)
                    }
                    (4, V4_ECHO_REPLY) | (6, V6_ECHO_REPLY) => {
                        bump(&mut self.icmp_echo_replies, dir)
                    }
                    _ => bump(&mut self.icmp_other, dir),
                }
            }
            Transport::Udp { .. } => bump(&mut self.udp, dir),
            Transport::Tcp { .. } => bump(&mut self.tcp, dir),
            _ => {}
        }
        if dir == Direction::In {
            self.classify_drop(frame, policy, checksum_ok);
        }
    }

    /// Decides whether a received frame will go no further, and why.
    fn classify_drop(&mut self, frame: &Frame, policy: &mut Policy, checksum_ok: bool) {
        let Some(eth) = frame.ethernet else {
            self.dropped.malformed += 1;
            return;
        };
        if !(eth.dst == policy.mac || eth.dst.is_broadcast() || eth.dst.is_multicast()) {
            self.dropped.not_for_us += 1;
            return;
        }
        let dst = match frame.net {
            Net::Ip { src, .. }
                if crate::network::is_martian_source(&src)
                    || is_broadcast(src, &policy.addresses) =>
            {
                self.dropped.bad_source += 1;
                return;
            }
            Net::Malformed => {
                self.dropped.malformed += 1;
                return;
            }
            Net::Ip {
                bad_checksum: true, ..
            } => {
                self.dropped.bad_checksum += 1;
                return;
            }
            Net::Ip { dst, .. } => dst,
            Net::Arp {
                operation,
                sender,
                sender_mac,
                target,
            } => {
                // What smoltcp ignores (RFC 826 and its own rules): an ARP for
                // another address, an unknown operation, a sender that is not
                // one unicast host on the stack's subnet.
                let on_subnet = policy.addresses.iter().any(
                    |c| matches!(c, smoltcp::wire::IpCidr::Ipv4(c) if c.contains_addr(&sender)),
                );
                if !policy
                    .addresses
                    .iter()
                    .any(|c| c.address() == IpAddress::Ipv4(target))
                {
                    self.dropped.not_for_us += 1;
                } else if matches!(operation, ArpOperation::Unknown(_)) {
                    self.dropped.malformed += 1;
                } else if !sender_mac.is_unicast()
                    || !on_subnet
                    || sender.is_broadcast()
                    || sender.is_multicast()
                    || sender.is_unspecified()
                    || is_broadcast(IpAddress::Ipv4(sender), &policy.addresses)
                {
                    self.dropped.bad_source += 1;
                }
                return;
            }
            Net::Other => {
                self.dropped.not_for_us += 1;
                return;
            }
        };
        let ours = policy.addresses.iter().any(|c| c.address() == dst);
        if !ours && !dst.is_multicast() && !is_broadcast(dst, &policy.addresses) {
            self.dropped.not_for_us += 1;
            return;
        }
        match frame.transport {
            Transport::Malformed => self.dropped.malformed += 1,
            Transport::Fragment => self.dropped.fragment += 1,
            Transport::Tcp { .. } | Transport::Udp { .. } | Transport::Icmp { .. }
                if !checksum_ok =>
            {
                self.dropped.bad_checksum += 1
            }
            Transport::Tcp {
                dst: port, flags, ..
            } if ours => {
                let syn =
                    flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN;
                match policy.tcp_ports.iter_mut().find(|(p, _)| *p == port) {
                    None if flags & tcp_flags::RST == 0 => {
                        self.dropped.no_socket += 1;
                        if syn {
                            self.tcp_refused += 1;
                        }
                    }
                    Some((_, free)) if syn => {
                        if *free == 0 {
                            self.dropped.pool_full += 1;
                            self.tcp_refused += 1;
                        } else {
                            *free -= 1;
                        }
                    }
                    _ => {}
                }
            }
            Transport::Udp { dst: port, .. } if ours && !policy.udp_ports.contains(&port) => {
                self.dropped.no_socket += 1
            }
            _ => {}
        }
    }

    /// All drops together.
    pub fn dropped_total(&self) -> u64 {
        let d = &self.dropped;
        d.not_for_us
            + d.bad_source
            + d.bad_checksum
            + d.malformed
            + d.no_socket
            + d.pool_full
            + d.fragment
            + d.injected
    }

    /// Writes the counters as one JSON object (no allocation).
    pub fn write_json(&self, w: &mut impl fmt::Write) -> fmt::Result {
        let io = |w: &mut dyn fmt::Write, name: &str, v: &InOut| {
            write!(w, "\"{name}\":{{\"in\":{},\"out\":{}}}", v.r#in, v.out)
        };
        write!(
            w,
            "{{\"link\":{{\"in\":{{\"frames\":{},\"bytes\":{}}},\"out\":{{\"frames\":{},\"bytes\":{}}}}},",
            self.link_in.frames, self.link_in.bytes, self.link_out.frames, self.link_out.bytes
        )?;
        w.write_str("\"arp\":{")?;
        io(w, "requests", &self.arp_requests)?;
        w.write_str(",")?;
        io(w, "replies", &self.arp_replies)?;
        w.write_str("},")?;
        io(w, "ipv4", &self.ipv4)?;
        w.write_str(",")?;
        io(w, "ipv6", &self.ipv6)?;
        w.write_str(",\"icmp\":{")?;
        io(w, "echo_requests", &self.icmp_echo_requests)?;
        w.write_str(",")?;
        io(w, "echo_replies", &self.icmp_echo_replies)?;
        w.write_str(",")?;
        io(w, "other", &self.icmp_other)?;
        w.write_str("},")?;
        io(w, "udp", &self.udp)?;
        w.write_str(",\"tcp\":{")?;
        write!(
            w,
            "\"segments\":{{\"in\":{},\"out\":{}}},\"opened\":{},\"closed\":{},\"reset\":{},\"refused\":{}}},",
            self.tcp.r#in,
            self.tcp.out,
            self.tcp_opened,
            self.tcp_closed,
            self.tcp_reset,
            self.tcp_refused
        )?;
        let d = &self.dropped;
        write!(
            w,
            "\"corrupted\":{},\"dropped\":{{\"not_for_us\":{},\"bad_source\":{},\"bad_checksum\":{},\"malformed\":{},\"no_socket\":{},\"pool_full\":{},\"fragment\":{},\"injected\":{},\"total\":{}}}}}",
            self.corrupted,
            d.not_for_us,
            d.bad_source,
            d.bad_checksum,
            d.malformed,
            d.no_socket,
            d.pool_full,
            d.fragment,
            d.injected,
            self.dropped_total()
        )
    }

    /// The counters as rows of (layer, name, in, out): one table for text and HTML.
    pub fn rows(&self) -> [(&'static str, &'static str, u64, Option<u64>); 22] {
        let d = &self.dropped;
        [
            (
                "link",
                "frames",
                self.link_in.frames,
                Some(self.link_out.frames),
            ),
            (
                "link",
                "bytes",
                self.link_in.bytes,
                Some(self.link_out.bytes),
            ),
            (
                "link",
                "ARP requests",
                self.arp_requests.r#in,
                Some(self.arp_requests.out),
            ),
            (
                "link",
                "ARP replies",
                self.arp_replies.r#in,
                Some(self.arp_replies.out),
            ),
            (
                "network",
                "IPv4 packets",
                self.ipv4.r#in,
                Some(self.ipv4.out),
            ),
            (
                "network",
                "IPv6 packets",
                self.ipv6.r#in,
                Some(self.ipv6.out),
            ),
            (
                "network",
                "ICMP echo requests",
                self.icmp_echo_requests.r#in,
                Some(self.icmp_echo_requests.out),
            ),
            (
                "network",
                "ICMP echo replies",
                self.icmp_echo_replies.r#in,
                Some(self.icmp_echo_replies.out),
            ),
            (
                "network",
                "ICMP other (NDP, ...)",
                self.icmp_other.r#in,
                Some(self.icmp_other.out),
            ),
            (
                "transport",
                "UDP datagrams",
                self.udp.r#in,
                Some(self.udp.out),
            ),
            (
                "transport",
                "TCP segments",
                self.tcp.r#in,
                Some(self.tcp.out),
            ),
            (
                "transport",
                "TCP opened / closed",
                self.tcp_opened,
                Some(self.tcp_closed),
            ),
            (
                "transport",
                "TCP reset / refused",
                self.tcp_reset,
                Some(self.tcp_refused),
            ),
            ("dropped", "not for us", d.not_for_us, None),
            ("dropped", "bad source address", d.bad_source, None),
            ("dropped", "bad checksum", d.bad_checksum, None),
            ("dropped", "malformed", d.malformed, None),
            ("dropped", "no socket", d.no_socket, None),
            ("dropped", "pool full", d.pool_full, None),
            ("dropped", "fragment (no reassembly)", d.fragment, None),
            ("dropped", "injected fault", d.injected, None),
            ("faults", "corrupted (injected)", self.corrupted, None),
        ]
    }
}

fn is_broadcast(addr: IpAddress, addresses: &[smoltcp::wire::IpCidr]) -> bool {
    match addr {
        IpAddress::Ipv4(a) => {
            a.is_broadcast()
                || addresses.iter().any(
                    |c| matches!(c, smoltcp::wire::IpCidr::Ipv4(c) if c.broadcast() == Some(a)),
                )
        }
        IpAddress::Ipv6(_) => false,
    }
}

impl fmt::Display for Counters {
    /// A table: layer, counter, in, out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<10} {:<24} {:>12} {:>12}",
            "layer", "counter", "in", "out"
        )?;
        for (layer, name, i, o) in self.rows() {
            match o {
                Some(o) => writeln!(f, "  {layer:<10} {name:<24} {i:>12} {o:>12}")?,
                None => writeln!(f, "  {layer:<10} {name:<24} {i:>12} {:>12}", "")?,
            }
        }
        Ok(())
    }
}

//! Writes the seed corpus: `cargo run --example seeds` (in `fuzz/`) fills
//! `fuzz/corpus/<target>/` with real frames and conversations. The files
//! are committed; run this again only to change them.
//!
//! - `frame_parse`: one frame each: ARP request, ICMP and ICMPv6 echo
//!   requests, UDP and TCP SYN over IPv4 and IPv6, an NDP solicitation.
//! - `stack_rx`: whole conversations in the `delay, length, frame` records
//!   of `harness::records`, made against the same stack the target runs
//!   (same settings and random seed), so the sequence numbers match: a ping
//!   each way, UDP to both services, a TCP echo and upper-case exchange with
//!   handshake and close over IPv4 and IPv6, a status page request.
//! - `transforms`, `http_request`: text and requests.

#[path = "../harness.rs"]
mod harness;

use std::path::Path;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, NdiscRepr,
    RawHardwareAddress, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};
use tapstack::config::{
    ECHO_PORT, HOST_IPV4, HOST_IPV6, HTTP_PORT, STACK_IPV4, STACK_IPV6, STACK_MAC, UPPER_PORT,
};

const HOST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x64]);

fn host4() -> Ipv4Address {
    HOST_IPV4.address()
}
fn stack4() -> Ipv4Address {
    STACK_IPV4.address()
}
fn host6() -> Ipv6Address {
    HOST_IPV6.address()
}
fn stack6() -> Ipv6Address {
    STACK_IPV6.address()
}

/// Ethernet + IP header around `len` bytes written by `body`.
fn ip_frame(
    src: IpAddress,
    dst: IpAddress,
    proto: IpProtocol,
    len: usize,
    body: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let (ethertype, ip_len) = match src {
        IpAddress::Ipv4(_) => (EthernetProtocol::Ipv4, 20),
        IpAddress::Ipv6(_) => (EthernetProtocol::Ipv6, 40),
    };
    let mut frame = vec![0u8; 14 + ip_len + len];
    let eth = EthernetRepr {
        src_addr: HOST_MAC,
        dst_addr: STACK_MAC,
        ethertype,
    };
    let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut e);
    match (src, dst) {
        (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: len,
                hop_limit: 64,
            };
            let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
            ip.emit(&mut p, &caps);
            body(p.payload_mut());
        }
        (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: len,
                hop_limit: 64,
            };
            let mut p = Ipv6Packet::new_unchecked(e.payload_mut());
            ip.emit(&mut p);
            body(p.payload_mut());
        }
        _ => unreachable!("one family per frame"),
    }
    frame
}

fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: HOST_MAC,
        source_protocol_addr: host4(),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: stack4(),
    };
    let mut frame = vec![0u8; 14 + arp.buffer_len()];
    let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: HOST_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut e);
    arp.emit(&mut ArpPacket::new_unchecked(e.payload_mut()));
    frame
}

fn neighbor_solicit() -> Vec<u8> {
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: stack6(),
        lladdr: Some(RawHardwareAddress::from(HOST_MAC)),
    });
    let (src, dst) = (host6(), stack6());
    let mut frame = ip_frame(
        src.into(),
        dst.into(),
        IpProtocol::Icmpv6,
        ns.buffer_len(),
        |b| {
            ns.emit(
                &src,
                &dst,
                &mut Icmpv6Packet::new_unchecked(b),
                &ChecksumCapabilities::default(),
            );
        },
    );
    frame[14 + 7] = 255; // NDP needs hop limit 255
    frame
}

fn ping(v6: bool, seq: u16) -> Vec<u8> {
    let data = b"seed ping";
    if v6 {
        let r = Icmpv6Repr::EchoRequest {
            ident: 1,
            seq_no: seq,
            data,
        };
        let (s, d) = (host6(), stack6());
        ip_frame(
            s.into(),
            d.into(),
            IpProtocol::Icmpv6,
            r.buffer_len(),
            |b| {
                r.emit(
                    &s,
                    &d,
                    &mut Icmpv6Packet::new_unchecked(b),
                    &ChecksumCapabilities::default(),
                )
            },
        )
    } else {
        let r = Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: seq,
            data,
        };
        ip_frame(
            host4().into(),
            stack4().into(),
            IpProtocol::Icmp,
            r.buffer_len(),
            |b| {
                r.emit(
                    &mut Icmpv4Packet::new_unchecked(b),
                    &ChecksumCapabilities::default(),
                )
            },
        )
    }
}

fn addrs(v6: bool) -> (IpAddress, IpAddress) {
    if v6 {
        (host6().into(), stack6().into())
    } else {
        (host4().into(), stack4().into())
    }
}

fn udp(v6: bool, port: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = addrs(v6);
    let r = UdpRepr {
        src_port: 40000,
        dst_port: port,
    };
    ip_frame(
        src,
        dst,
        IpProtocol::Udp,
        r.header_len() + payload.len(),
        |b| {
            r.emit(
                &mut UdpPacket::new_unchecked(b),
                &src,
                &dst,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            )
        },
    )
}

fn tcp(
    v6: bool,
    port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = addrs(v6);
    let r = TcpRepr {
        src_port: 41000,
        dst_port: port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 64240,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    ip_frame(src, dst, IpProtocol::Tcp, r.buffer_len(), |b| {
        r.emit(
            &mut TcpPacket::new_unchecked(b),
            &src,
            &dst,
            &ChecksumCapabilities::default(),
        )
    })
}

/// The stack's last TCP segment to port 41000: (seq, ack, payload length, FIN).
fn last_segment(wire: &harness::Wire) -> (u32, u32, usize, bool) {
    wire.tx
        .iter()
        .rev()
        .find_map(|f| {
            let e = EthernetFrame::new_checked(&f[..]).ok()?;
            let payload = match e.ethertype() {
                EthernetProtocol::Ipv4 => Ipv4Packet::new_checked(e.payload())
                    .ok()?
                    .payload()
                    .to_vec(),
                EthernetProtocol::Ipv6 => Ipv6Packet::new_checked(e.payload())
                    .ok()?
                    .payload()
                    .to_vec(),
                _ => return None,
            };
            let t = TcpPacket::new_checked(&payload[..]).ok()?;
            (t.dst_port() == 41000).then(|| {
                (
                    t.seq_number().0 as u32,
                    t.ack_number().0 as u32,
                    t.payload().len(),
                    t.fin(),
                )
            })
        })
        .expect("the stack answered")
}

/// A TCP conversation with the stack: handshake, `request`, half-close,
/// the reply and the stack's FIN, the last ACK. Returns its records.
fn conversation(v6: bool, port: u16, request: &[u8]) -> Vec<(u8, Vec<u8>)> {
    harness::with_stack(|stack, wire, now| {
        let mut records = Vec::new();
        let mut send = |stack: &mut tapstack::Stack<'_>,
                        wire: &mut harness::Wire,
                        now: &mut _,
                        frame: Vec<u8>| {
            harness::feed(stack, wire, now, 1, &frame);
            records.push((1u8, frame));
        };
        send(
            stack,
            wire,
            now,
            if v6 {
                neighbor_solicit()
            } else {
                arp_request()
            },
        );
        let isn = 1000;
        send(
            stack,
            wire,
            now,
            tcp(v6, port, TcpControl::Syn, isn, None, &[]),
        );
        let (their, _, _, _) = last_segment(wire);
        let mut ack = their.wrapping_add(1);
        send(
            stack,
            wire,
            now,
            tcp(v6, port, TcpControl::None, isn + 1, Some(ack), &[]),
        );
        send(
            stack,
            wire,
            now,
            tcp(v6, port, TcpControl::Psh, isn + 1, Some(ack), request),
        );
        let seq = isn + 1 + request.len() as u32;
        send(
            stack,
            wire,
            now,
            tcp(v6, port, TcpControl::Fin, seq, Some(ack), &[]),
        );
        let (s, _, len, fin) = last_segment(wire);
        ack = s.wrapping_add(len as u32).wrapping_add(u32::from(fin));
        send(
            stack,
            wire,
            now,
            tcp(v6, port, TcpControl::None, seq + 1, Some(ack), &[]),
        );
        let c = stack.counters();
        assert_eq!(
            (c.tcp_opened, c.tcp_closed, c.tcp_reset),
            (1, 1, 0),
            "port {port}: the conversation did not complete"
        );
        assert!(
            c.tcp.out >= 3,
            "port {port}: the stack answered {} segments",
            c.tcp.out
        );
        records
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create a corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let frames = [
        ("arp-request", arp_request()),
        ("ndp-solicit", neighbor_solicit()),
        ("icmp-echo", ping(false, 1)),
        ("icmpv6-echo", ping(true, 1)),
        ("udp4-echo", udp(false, ECHO_PORT, b"Hello, UDP")),
        ("udp6-upper", udp(true, UPPER_PORT, b"MixedCaseString")),
        (
            "tcp4-syn",
            tcp(false, ECHO_PORT, TcpControl::Syn, 1000, None, &[]),
        ),
        (
            "tcp6-syn",
            tcp(true, UPPER_PORT, TcpControl::Syn, 1000, None, &[]),
        ),
    ];
    for (name, frame) in &frames {
        write(&corpus.join("frame_parse"), name, frame);
        write(
            &corpus.join("stack_rx"),
            name,
            &harness::encode(&[(1, frame.clone())]),
        );
    }
    let pings = vec![
        (1, arp_request()),
        (1, ping(false, 1)),
        (1, neighbor_solicit()),
        (1, ping(true, 2)),
    ];
    write(&corpus.join("stack_rx"), "pings", &harness::encode(&pings));
    let udp_both = vec![
        (1, arp_request()),
        (1, udp(false, ECHO_PORT, b"echo me")),
        (1, neighbor_solicit()),
        (1, udp(true, UPPER_PORT, b"upper me")),
        (1, udp(false, 9, b"closed port")),
    ];
    write(&corpus.join("stack_rx"), "udp", &harness::encode(&udp_both));
    for (name, v6, port, request) in [
        ("tcp4-echo", false, ECHO_PORT, &b"Hello, World!\n"[..]),
        ("tcp6-upper", true, UPPER_PORT, b"hello telnet\r\n"),
        (
            "tcp4-status",
            false,
            HTTP_PORT,
            b"GET /stats.json HTTP/1.1\r\nHost: tapstack\r\n\r\n",
        ),
        (
            "tcp6-status-404",
            true,
            HTTP_PORT,
            b"GET /nothing HTTP/1.0\r\n\r\n",
        ),
    ] {
        write(
            &corpus.join("stack_rx"),
            name,
            &harness::encode(&conversation(v6, port, request)),
        );
    }
    for (name, text) in [
        ("ascii", &b"Hello, World 123!\n"[..]),
        ("utf8", "\u{3}h\u{e9}llo w\u{f6}rld".as_bytes()),
        ("all-bytes", &(0..=255u8).collect::<Vec<_>>()),
    ] {
        write(&corpus.join("transforms"), name, text);
    }
    for (name, request) in [
        ("get-root", &b"GET / HTTP/1.1\r\nHost: tapstack\r\n\r\n"[..]),
        (
            "head-json",
            b"HEAD /stats.json HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        ),
        ("telnet-lf", b"GET /index.html HTTP/1.0\n\n"),
        (
            "post",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
        ("no-host", b"GET / HTTP/1.1\r\n\r\n"),
        ("bad-header", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
    ] {
        write(&corpus.join("http_request"), name, request);
    }
    println!("seeds written to {}", corpus.display());
}

//! `Observed`: the device as the stack sees it, with every frame counted,
//! shown to an [`Observer`] (trace, pcap) and, if asked, broken on purpose.
//!
//! It wraps the real device for the duration of one `Interface::poll`. On
//! the normal path it copies nothing: a received frame is handed to smoltcp
//! straight from the device's buffer, and a sent frame is built in it.
//! Only an injected fault needs a buffer of its own: a received frame that is
//! corrupted is copied first (the device's buffer is read-only), and a sent
//! frame that is dropped is built in a junk buffer and never written.

use core::cell::RefCell;

use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use crate::counters::{Counters, Policy};
use crate::faults::{Fault, Injector};
use crate::inspect::{Direction, Frame, Net};
use crate::network::is_martian_source;

/// Sees every frame that crosses the link, in both directions.
pub trait Observer {
    /// `bytes` are the frame as it crossed (after an injected corruption);
    /// `frame` is its parsed form; `fault` says what the injector did to it.
    /// A frame with `Some(Fault::Dropped(_))` never reached its receiver.
    fn frame(
        &mut self,
        now: Instant,
        dir: Direction,
        bytes: &[u8],
        frame: &Frame,
        fault: Option<Fault>,
    );
}

/// What the rx and tx tokens of one poll share. A received frame's reply
/// (ARP, ICMP) is sent from inside the receive token, so both tokens must
/// reach the counters at once: through a `RefCell`, never borrowed across a
/// call into smoltcp.
pub struct Shared<'a, 'o> {
    /// The stack's counters.
    pub counters: &'a mut Counters,
    /// The fault injector.
    pub injector: &'a mut Injector,
    /// What the counters need to classify received frames.
    pub policy: Policy,
    /// Who else wants to see the frames.
    pub observer: Option<&'a mut (dyn Observer + 'o)>,
}

impl Shared<'_, '_> {
    /// Counts and shows one frame. For a received frame, says whether the
    /// stack may see it: not if its source address is impossible.
    fn see(&mut self, now: Instant, dir: Direction, bytes: &[u8], fault: Option<Fault>) -> bool {
        let frame = Frame::parse(bytes);
        let checksum_ok = dir == Direction::Out || frame_checksum_ok(bytes);
        // smoltcp takes a zero UDP checksum as "none" over IPv6 too, where
        // RFC 8200 8.1 requires the datagram to be discarded: so it is, here.
        let martian = matches!(frame.net, Net::Ip { src, .. } if is_martian_source(&src));
        let no_udp6_checksum = dir == Direction::In && is_udp6_without_checksum(bytes);
        let deliver = !martian && !no_udp6_checksum;
        self.counters
            .record(dir, &frame, fault, &mut self.policy, checksum_ok);
        if let Some(observer) = self.observer.as_deref_mut() {
            observer.frame(now, dir, bytes, &frame, fault);
        }
        deliver
    }
}

/// An IPv6 UDP datagram whose checksum field is zero (RFC 8200 8.1: invalid).
fn is_udp6_without_checksum(bytes: &[u8]) -> bool {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv6Packet, UdpPacket};
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return false;
    }
    Ipv6Packet::new_checked(eth.payload()).is_ok_and(|ip| {
        ip.next_header() == IpProtocol::Udp
            && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.checksum() == 0)
    })
}

/// Verifies the TCP, UDP, ICMP or ICMPv6 checksum of a received frame (true
/// for anything else). A zero UDP checksum over IPv6 is wrong (RFC 8200 8.1).
fn frame_checksum_ok(bytes: &[u8]) -> bool {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv6Packet, IpAddress, IpProtocol,
        Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
    };
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return true;
    };
    let (src, dst, proto, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) if ip.frag_offset() == 0 && !ip.more_frags() => (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.next_header(),
                ip.payload(),
            ),
            _ => return true,
        },
        EthernetProtocol::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
            Ok(ip) => (
                ip.src_addr().into(),
                ip.dst_addr().into(),
                ip.next_header(),
                ip.payload(),
            ),
            Err(_) => return true,
        },
        _ => return true,
    };
    match proto {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(payload).is_ok_and(|p| p.verify_checksum(&src, &dst))
        }
        IpProtocol::Udp => UdpPacket::new_checked(payload).is_ok_and(|p| {
            p.verify_checksum(&src, &dst)
                && !(matches!(src, IpAddress::Ipv6(_)) && p.checksum() == 0)
        }),
        IpProtocol::Icmp => Icmpv4Packet::new_checked(payload).is_ok_and(|p| p.verify_checksum()),
        IpProtocol::Icmpv6 => match (src, dst) {
            (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) => {
                Icmpv6Packet::new_checked(payload).is_ok_and(|p| p.verify_checksum(&s, &d))
            }
            _ => false,
        },
        _ => true,
    }
}

/// The device wrapped for one poll.
pub struct Observed<'d, 's, 'a, 'o, D: Device + ?Sized> {
    inner: &'d mut D,
    shared: &'s RefCell<Shared<'a, 'o>>,
    rx_copy: &'d mut [u8],
    tx_junk: &'d mut [u8],
    now: Instant,
}

impl<'d, 's, 'a, 'o, D: Device + ?Sized> Observed<'d, 's, 'a, 'o, D> {
    /// Wraps `inner`; `rx_copy` and `tx_junk` are only used by injected faults
    /// (frames longer than them pass the injector untouched).
    pub fn new(
        inner: &'d mut D,
        shared: &'s RefCell<Shared<'a, 'o>>,
        rx_copy: &'d mut [u8],
        tx_junk: &'d mut [u8],
        now: Instant,
    ) -> Self {
        Self {
            inner,
            shared,
            rx_copy,
            tx_junk,
            now,
        }
    }
}

impl<'d, 's, 'a, 'o, D: Device + ?Sized> Device for Observed<'d, 's, 'a, 'o, D> {
    type RxToken<'t>
        = RxToken<'t, 'a, 'o, D::RxToken<'t>>
    where
        Self: 't;
    type TxToken<'t>
        = TxToken<'t, 'a, 'o, D::TxToken<'t>>
    where
        Self: 't;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            RxToken {
                inner: rx,
                shared: self.shared,
                copy: self.rx_copy,
                now: self.now,
            },
            TxToken {
                inner: tx,
                shared: self.shared,
                junk: self.tx_junk,
                now: self.now,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(TxToken {
            inner: tx,
            shared: self.shared,
            junk: self.tx_junk,
            now: self.now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        // Unlike smoltcp's FaultInjector, never shrink the real MTU.
        self.inner.capabilities()
    }
}

/// A received frame, looked at before smoltcp gets it.
pub struct RxToken<'t, 'a, 'o, T> {
    inner: T,
    shared: &'t RefCell<Shared<'a, 'o>>,
    copy: &'t mut [u8],
    now: Instant,
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, '_, '_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let Self {
            inner,
            shared,
            copy,
            now,
        } = self;
        inner.consume(|bytes| {
            let mut fault = shared.borrow_mut().injector.decide(true, bytes.len(), now);
            if matches!(fault, Some(Fault::Corrupted { .. })) && bytes.len() > copy.len() {
                fault = None; // too long for the copy buffer: passes untouched
            }
            match fault {
                Some(Fault::Dropped(_)) => {
                    shared.borrow_mut().see(now, Direction::In, bytes, fault);
                    // smoltcp ignores an empty frame: as if it never arrived.
                    f(&[])
                }
                Some(Fault::Corrupted { byte, bit }) => {
                    let frame = &mut copy[..bytes.len()];
                    frame.copy_from_slice(bytes);
                    frame[byte] ^= bit;
                    let deliver = shared.borrow_mut().see(now, Direction::In, frame, fault);
                    f(if deliver { frame } else { &[] })
                }
                None => {
                    let deliver = shared.borrow_mut().see(now, Direction::In, bytes, None);
                    f(if deliver { bytes } else { &[] })
                }
            }
        })
    }

    fn meta(&self) -> phy::PacketMeta {
        self.inner.meta()
    }
}

/// Room for a frame to send, looked at after smoltcp built it.
pub struct TxToken<'t, 'a, 'o, T> {
    inner: T,
    shared: &'t RefCell<Shared<'a, 'o>>,
    junk: &'t mut [u8],
    now: Instant,
}

impl<T: phy::TxToken> phy::TxToken for TxToken<'_, '_, '_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let Self {
            inner,
            shared,
            junk,
            now,
        } = self;
        let mut fault = shared.borrow_mut().injector.decide(false, len, now);
        if matches!(fault, Some(Fault::Dropped(_))) && len > junk.len() {
            fault = None; // too long for the junk buffer: sent untouched
        }
        if let Some(Fault::Dropped(_)) = fault {
            let frame = &mut junk[..len];
            let result = f(frame);
            shared.borrow_mut().see(now, Direction::Out, frame, fault);
            return result;
        }
        inner.consume(len, |frame| {
            let result = f(frame);
            if let Some(Fault::Corrupted { byte, bit }) = fault {
                frame[byte] ^= bit;
            }
            shared.borrow_mut().see(now, Direction::Out, frame, fault);
            result
        })
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.inner.set_meta(meta);
    }
}

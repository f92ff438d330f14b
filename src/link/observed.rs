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

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities};
use smoltcp::time::Instant;

use crate::counters::{Counters, Policy};
use crate::faults::{Fault, Injector};
use crate::inspect::{Direction, Frame, Net, skip_hop_by_hop};
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
        // Every received checksum is verified here, once: a frame that fails
        // is counted and dropped, and smoltcp does not verify it again
        // (`rx_verified`). A zero UDP checksum over IPv6 fails too (smoltcp
        // takes it as "none", where RFC 8200 8.1 requires a discard).
        let checksum_ok = dir == Direction::Out
            || (!matches!(
                frame.net,
                Net::Ip {
                    bad_checksum: true,
                    ..
                }
            ) && frame_checksum_ok(bytes));
        let martian = matches!(frame.net, Net::Ip { src, .. } if is_martian_source(&src));
        let deliver = !martian && checksum_ok;
        self.counters
            .record(dir, &frame, fault, &mut self.policy, checksum_ok);
        if let Some(observer) = self.observer.as_deref_mut() {
            observer.frame(now, dir, bytes, &frame, fault);
        }
        deliver
    }
}

/// Verifies the TCP, UDP, ICMP or ICMPv6 checksum of a received frame (true
/// for anything else; IPv6 behind a hop-by-hop header too). A zero UDP
/// checksum over IPv6 is wrong (RFC 8200 8.1). Under a fuzzer, true, as
/// smoltcp does: mutated frames must get past the checksums.
fn frame_checksum_ok(bytes: &[u8]) -> bool {
    if cfg!(fuzzing) {
        return true;
    }
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
            Ok(ip) => match skip_hop_by_hop(ip.next_header(), ip.payload()) {
                Some((next, payload)) => {
                    (ip.src_addr().into(), ip.dst_addr().into(), next, payload)
                }
                None => return true,
            },
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
        rx_verified(self.inner.capabilities())
    }
}

/// `caps` with smoltcp's verification of received checksums switched off
/// (it still computes them on transmit): [`Observed`] verifies every
/// received frame first, counts and drops a bad one, so a second pass over
/// every byte would be wasted. Give the interface these from the start
/// ([`Verified`]): smoltcp reads them when it is built.
pub fn rx_verified(mut caps: DeviceCapabilities) -> DeviceCapabilities {
    let c = &mut caps.checksum;
    for checksum in [
        &mut c.ipv4,
        &mut c.udp,
        &mut c.tcp,
        &mut c.icmpv4,
        &mut c.icmpv6,
    ] {
        *checksum = if checksum.tx() {
            Checksum::Tx
        } else {
            Checksum::None
        };
    }
    caps
}

/// A device as the interface is built on: itself, with [`rx_verified`]
/// capabilities. Only for `Interface::new`; every poll goes through
/// [`Observed`], which does the verifying.
pub struct Verified<'d, D: Device + ?Sized>(pub &'d mut D);

impl<D: Device + ?Sized> Device for Verified<'_, D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.0.receive(now)
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.0.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        rx_verified(self.0.capabilities())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoltcp_computes_checksums_and_leaves_verifying_to_the_link() {
        let caps = rx_verified(DeviceCapabilities::default());
        let c = &caps.checksum;
        for (name, checksum) in [
            ("ipv4", &c.ipv4),
            ("udp", &c.udp),
            ("tcp", &c.tcp),
            ("icmpv4", &c.icmpv4),
            ("icmpv6", &c.icmpv6),
        ] {
            assert!(checksum.tx() && !checksum.rx(), "{name}");
        }
    }

    #[test]
    fn a_bad_checksum_behind_a_hop_by_hop_header_is_seen() {
        use smoltcp::wire::{EthernetProtocol, IpProtocol, Ipv6Address};
        // Ethernet, IPv6 (next: hop-by-hop), an 8-byte hop-by-hop header
        // (next: ICMPv6, PadN), an ICMPv6 echo request with a wrong checksum.
        let src = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100);
        let dst = Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
        let mut frame = [0u8; 14 + 40 + 8 + 8];
        frame[12..14].copy_from_slice(&u16::from(EthernetProtocol::Ipv6).to_be_bytes());
        let ip = &mut frame[14..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&16u16.to_be_bytes());
        ip[6] = u8::from(IpProtocol::HopByHop);
        ip[7] = 64;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&dst.octets());
        ip[40] = u8::from(IpProtocol::Icmpv6);
        ip[42..44].copy_from_slice(&[1, 4]); // PadN, 4 bytes
        ip[48] = 128; // echo request; checksum left zero: wrong
        assert!(!frame_checksum_ok(&frame));
        // The same without the hop-by-hop header, checksum still wrong.
        let mut plain = [0u8; 14 + 40 + 8];
        plain[..14].copy_from_slice(&frame[..14]);
        plain[14..54].copy_from_slice(&frame[14..54]);
        plain[14 + 4..14 + 6].copy_from_slice(&8u16.to_be_bytes());
        plain[14 + 6] = u8::from(IpProtocol::Icmpv6);
        plain[54] = 128;
        assert!(!frame_checksum_ok(&plain));
    }
}

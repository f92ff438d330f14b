//! Transport layer: the TCP and UDP sockets and the static memory behind them.
//!
//! Each socket's buffers are fixed arrays inside [`crate::stack::Buffers`]
//! and [`crate::stack::Sockets`];
//! nothing here allocates. TCP sockets are tuned for request/response services:
//! Nagle off (an echo is answered at once, not held back for a full segment),
//! keep-alive and a user timeout so that a peer which vanished gives its pool
//! slot back.

use smoltcp::socket::{tcp, udp};
use smoltcp::time::Duration;

use crate::config::{
    BULK_BUFFER, BULK_IDLE_BUFFER, HTTP_RX_BUFFER, HTTP_TX_BUFFER, TCP_KEEP_ALIVE_SECS,
    TCP_RX_BUFFER, TCP_TIMEOUT_SECS, TCP_TX_BUFFER, UDP_PACKET_SLOTS, UDP_RX_BUFFER, UDP_TX_BUFFER,
};

/// The memory of one TCP socket: `RX` bytes of receive buffer (the largest
/// window it advertises; above 64 KiB the window is scaled, RFC 7323) and
/// `TX` bytes of transmit buffer.
pub struct TcpBuffers<const RX: usize, const TX: usize> {
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> TcpBuffers<RX, TX> {
    /// Zeroed buffers, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            rx: [0; RX],
            tx: [0; TX],
        }
    }

    /// A TCP socket over these buffers, tuned for the services.
    pub fn socket(&mut self) -> tcp::Socket<'_> {
        tuned(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut self.rx[..]),
            tcp::SocketBuffer::new(&mut self.tx[..]),
        ))
    }
}

impl<const RX: usize, const TX: usize> Default for TcpBuffers<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// An echo or upper-case connection: the same window each way.
pub type StreamBuffers = TcpBuffers<TCP_RX_BUFFER, TCP_TX_BUFFER>;
/// A discard connection: a big window in, nearly nothing out.
pub type DiscardBuffers = TcpBuffers<BULK_BUFFER, BULK_IDLE_BUFFER>;
/// A chargen connection: nearly nothing in, a big transmit buffer out.
pub type ChargenBuffers = TcpBuffers<BULK_IDLE_BUFFER, BULK_BUFFER>;
/// A status page (HTTP) connection: a small receive window (requests are
/// short), a transmit buffer that holds a whole page.
pub type HttpBuffers = TcpBuffers<HTTP_RX_BUFFER, HTTP_TX_BUFFER>;

/// Nagle off, keep-alive and user timeout on.
fn tuned(mut socket: tcp::Socket<'_>) -> tcp::Socket<'_> {
    socket.set_nagle_enabled(false);
    socket.set_keep_alive(Some(Duration::from_secs(TCP_KEEP_ALIVE_SECS)));
    socket.set_timeout(Some(Duration::from_secs(TCP_TIMEOUT_SECS)));
    socket
}

/// The payload memory of one UDP socket, each direction. All zero at start,
/// so it lands in `.bss`.
pub struct UdpBuffers {
    rx: [u8; UDP_RX_BUFFER],
    tx: [u8; UDP_TX_BUFFER],
}

impl UdpBuffers {
    /// Zeroed buffers, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            rx: [0; UDP_RX_BUFFER],
            tx: [0; UDP_TX_BUFFER],
        }
    }

    /// A UDP socket over these payload buffers and the datagram slots `meta`.
    pub fn socket<'a>(&'a mut self, meta: &'a mut UdpSlots) -> udp::Socket<'a> {
        udp::Socket::new(
            udp::PacketBuffer::new(&mut meta.rx[..], &mut self.rx[..]),
            udp::PacketBuffer::new(&mut meta.tx[..], &mut self.tx[..]),
        )
    }
}

impl Default for UdpBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The datagram metadata of one UDP socket (endpoint and size of each queued
/// datagram), each direction. Not all-zero when empty, so it is kept apart
/// from the payload bytes.
pub struct UdpSlots {
    rx: [udp::PacketMetadata; UDP_PACKET_SLOTS],
    tx: [udp::PacketMetadata; UDP_PACKET_SLOTS],
}

impl UdpSlots {
    /// Empty slots, usable in a `static`.
    pub const fn new() -> Self {
        Self {
            rx: [udp::PacketMetadata::EMPTY; UDP_PACKET_SLOTS],
            tx: [udp::PacketMetadata::EMPTY; UDP_PACKET_SLOTS],
        }
    }
}

impl Default for UdpSlots {
    fn default() -> Self {
        Self::new()
    }
}

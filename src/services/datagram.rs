//! The UDP adapter: one datagram in, one datagram out, to the sender.
//!
//! Guarantees, for one call of [`serve`]:
//! - each datagram is answered whole, from the address it was sent to, or
//!   stays queued until the transmit buffer has room (never truncated);
//! - datagrams whose source could not be a single host (multicast, broadcast,
//!   unspecified) are dropped, so the stack cannot be used to amplify a
//!   spoofed packet onto a whole subnet.

use smoltcp::socket::udp::{SendError, Socket, UdpMetadata};
use smoltcp::wire::IpAddress;

use super::Transform;

/// What one call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Datagrams answered.
    pub answered: usize,
    /// Datagrams dropped (bad source, or too large to answer).
    pub dropped: usize,
}

impl Progress {
    /// True when the call queued or dropped anything.
    pub fn any(&self) -> bool {
        self.answered > 0 || self.dropped > 0
    }
}

/// Serves one UDP socket. `is_peer` tells whether a source address may be
/// answered (see [`crate::network::is_unicast_peer`]).
pub fn serve(
    socket: &mut Socket<'_>,
    scratch: &mut [u8],
    transform: Transform,
    is_peer: impl Fn(&IpAddress) -> bool,
) -> Progress {
    answer_each(socket, scratch, is_peer, |buffer, len, _| {
        transform(&mut buffer[..len]);
        len
    })
}

/// Serves the discard socket (RFC 863): every datagram is dropped, unanswered.
pub fn discard(socket: &mut Socket<'_>) -> Progress {
    let mut progress = Progress::default();
    while socket.recv().is_ok() {
        progress.dropped += 1;
    }
    progress
}

/// Serves the chargen socket (RFC 864): each datagram from a peer is
/// answered with the next line of the pattern, `lines` counting them.
pub fn chargen(
    socket: &mut Socket<'_>,
    scratch: &mut [u8],
    lines: &mut usize,
    is_peer: impl Fn(&IpAddress) -> bool,
) -> Progress {
    let first = *lines;
    let progress = answer_each(socket, scratch, is_peer, |buffer, _, answered| {
        let line = super::chargen::line(first.wrapping_add(answered));
        let n = line.len().min(buffer.len());
        buffer[..n].copy_from_slice(&line[..n]);
        n
    });
    *lines = first.wrapping_add(progress.answered);
    progress
}

/// Answers each queued datagram from a peer: copies it into `scratch`, lets
/// `answer(scratch, its length, datagrams answered so far)` write the reply
/// there, over it, and return the reply's length, and sends the reply back
/// to where the datagram came from. Drops a datagram from a
/// source that may not be answered, or too large for `scratch`.
fn answer_each(
    socket: &mut Socket<'_>,
    scratch: &mut [u8],
    is_peer: impl Fn(&IpAddress) -> bool,
    mut answer: impl FnMut(&mut [u8], usize, usize) -> usize,
) -> Progress {
    let mut progress = Progress::default();
    loop {
        // Peek first: the datagram leaves the receive queue only once its
        // answer is queued, so a full transmit buffer delays, never drops.
        let (len, request) = match socket.peek() {
            Ok((payload, meta))
                if payload.len() <= scratch.len() && is_peer(&meta.endpoint.addr) =>
            {
                scratch[..payload.len()].copy_from_slice(payload);
                (payload.len(), *meta)
            }
            Ok(_) => {
                let _ = socket.recv();
                progress.dropped += 1;
                continue;
            }
            Err(_) => break,
        };
        let len = answer(scratch, len, progress.answered).min(scratch.len());
        let reply = UdpMetadata {
            endpoint: request.endpoint,
            local_address: request.local_address,
            meta: Default::default(),
        };
        match socket.send_slice(&scratch[..len], reply) {
            Ok(()) => {
                let _ = socket.recv();
                progress.answered += 1;
            }
            Err(SendError::BufferFull) => break, // answered after the next egress
            Err(SendError::Unaddressable) => {
                let _ = socket.recv();
                progress.dropped += 1;
            }
        }
    }
    progress
}

//! The TCP adapter: moves bytes from a socket's receive buffer through a
//! [`Transform`] into the same socket's transmit buffer.
//!
//! Guarantees, for one call of [`serve`]:
//! - every readable byte is moved unless the transmit buffer is full, in which
//!   case the rest stays in the receive buffer and the window closes: flow
//!   control, never a loss;
//! - when the peer has closed its side (FIN received, CLOSE-WAIT) and every
//!   byte it sent has been answered, the socket is closed in the same call, so
//!   smoltcp sends the FIN with the last data (a separate, late FIN is easily
//!   dropped by a Linux client that closes at once, leaving the socket in
//!   LAST-ACK for a retransmission about a second later);
//! - a socket that has finished (CLOSED, or TIME-WAIT) listens again at once
//!   (an aborted one as soon as its RST has left),
//!   so the pool is re-armed before the next frame is read.

use smoltcp::socket::tcp::{Socket, State};

use super::Transform;

/// What one call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes moved from the receive to the transmit buffer.
    pub bytes: usize,
    /// The socket was closed (FIN queued) or re-armed as a listener.
    pub state_changed: bool,
}

impl Progress {
    /// True when the call changed anything that must go out on the wire.
    pub fn any(&self) -> bool {
        self.bytes > 0 || self.state_changed
    }
}

/// A socket that was just aborted: CLOSED, with its peer still known. smoltcp
/// sends the RST on its next egress and then forgets the peer; re-arming it
/// before that (`listen` forgets the peer too) would lose the RST, and the
/// peer would learn of the reset only when it next sends.
pub fn resetting(socket: &Socket<'_>) -> bool {
    socket.state() == State::Closed && socket.remote_endpoint().is_some()
}

/// True if the socket has a connection to serve. Otherwise re-arms a socket
/// that has finished: CLOSED after LAST-ACK or a reset, or TIME-WAIT, takes
/// the next client (an aborted one once its RST has left).
fn ready(socket: &mut Socket<'_>, port: u16, progress: &mut Progress) -> bool {
    if resetting(socket) {
        return false; // the RST leaves with the next egress; re-armed after
    }
    if !socket.is_open() {
        // `listen` only fails for port 0 or an open socket, neither possible here.
        progress.state_changed = socket.listen(port).is_ok();
        return false;
    }
    true
}

/// Closes our side once the peer has closed its side and nothing it sent is
/// left to read: the FIN leaves with the last data.
fn close_after_peer(socket: &mut Socket<'_>, progress: &mut Progress) {
    if socket.state() == State::CloseWait && socket.recv_queue() == 0 {
        socket.close();
        progress.state_changed = true;
    }
}

/// Throws away everything that arrived (discard, and what a chargen client
/// sends), reading in place: no copy. Returns the bytes dropped.
fn drain(socket: &mut Socket<'_>) -> usize {
    let mut dropped = 0;
    // The receive buffer is a ring: at most two contiguous pieces.
    for _ in 0..2 {
        match socket.recv(|b| (b.len(), b.len())) {
            Ok(n @ 1..) => dropped += n,
            _ => break,
        }
    }
    dropped
}

/// Serves one socket of the discard pool (RFC 863) listening on `port`.
pub fn discard(socket: &mut Socket<'_>, port: u16) -> Progress {
    let mut progress = Progress::default();
    if ready(socket, port, &mut progress) {
        progress.bytes = drain(socket);
        close_after_peer(socket, &mut progress);
    }
    progress
}

/// Serves one socket of the chargen pool (RFC 864) listening on `port`:
/// fills its transmit buffer with the pattern from stream offset `offset`
/// on (reset to 0 for each new connection), drops what the client sends, and
/// stops when the client closes its side.
pub fn chargen(socket: &mut Socket<'_>, port: u16, offset: &mut usize) -> Progress {
    let mut progress = Progress::default();
    if !ready(socket, port, &mut progress) {
        if progress.state_changed {
            *offset = 0;
        }
        return progress;
    }
    drain(socket);
    if socket.state() == State::CloseWait {
        // The client is done: what is queued still leaves, then the FIN.
        close_after_peer(socket, &mut progress);
        return progress;
    }
    // Write the pattern straight into the transmit ring (two pieces at most).
    for _ in 0..2 {
        let at = *offset;
        match socket.send(|b| (b.len(), (b.len(), super::chargen::fill(at, b)))) {
            Ok((n @ 1.., next)) => {
                progress.bytes += n;
                *offset = next;
            }
            _ => break,
        }
    }
    progress
}

/// Serves one TCP socket of a service pool listening on `port`.
pub fn serve(
    socket: &mut Socket<'_>,
    port: u16,
    scratch: &mut [u8],
    transform: Transform,
) -> Progress {
    let mut progress = Progress::default();
    if !ready(socket, port, &mut progress) {
        return progress;
    }

    while socket.can_recv() && socket.may_send() {
        let room = socket.send_capacity() - socket.send_queue();
        let want = room.min(scratch.len());
        if want == 0 {
            break; // the peer is not reading: keep the rest, the window closes
        }
        let chunk = &mut scratch[..want];
        let got = match socket.recv_slice(chunk) {
            Ok(0) | Err(_) => break,
            Ok(got) => got,
        };
        transform(&mut chunk[..got]);
        // `room >= got`, so the whole chunk fits: `send_slice` cannot fall short.
        match socket.send_slice(&chunk[..got]) {
            Ok(sent) if sent == got => progress.bytes += got,
            _ => {
                // Unreachable by the check above; refuse to lose bytes silently.
                socket.abort();
                progress.state_changed = true;
                return progress;
            }
        }
    }

    close_after_peer(socket, &mut progress);
    progress
}

//! Services: what the stack does with the bytes it receives.
//!
//! Each service is a pure, in-place byte [`Transform`] (tested on its own)
//! plus two adapters that move bytes between a smoltcp socket and the
//! transform:
//! - [`stream`] for TCP, a byte stream: the transform sees chunks whose
//!   boundaries mean nothing, so it must work byte by byte;
//! - [`datagram`] for UDP: one datagram in, one datagram out.
//!
//! Both adapters drain every readable byte on each call, so windows reopen and
//! answers leave in the same poll (no stall waiting for a timer).

pub mod chargen;
pub mod datagram;
pub mod discard;
pub mod echo;
pub mod http;
pub mod stream;
pub mod upper;

/// A service's whole behaviour: rewrite the bytes in place.
pub type Transform = fn(&mut [u8]);

/// A service as the stack runs it: a name for people, a port, a transform.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// Short name shown in the start-up banner and the docs.
    pub name: &'static str,
    /// TCP and UDP port it listens on.
    pub port: u16,
    /// What it does to the bytes.
    pub transform: Transform,
}

impl Service {
    /// RFC 862 echo on `port`.
    pub const fn echo(port: u16) -> Self {
        Self {
            name: echo::NAME,
            port,
            transform: echo::transform,
        }
    }

    /// Upper-case on `port`.
    pub const fn upper(port: u16) -> Self {
        Self {
            name: upper::NAME,
            port,
            transform: upper::to_upper,
        }
    }
}

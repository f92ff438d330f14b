//! Services: what the stack does with the bytes it receives.
//!
//! Echo and upper-case are each a pure, in-place byte [`Transform`] (tested
//! on its own) plus two adapters that move bytes between a smoltcp socket
//! and the transform:
//! - [`stream`] for TCP, a byte stream: the transform sees chunks whose
//!   boundaries mean nothing, so it must work byte by byte;
//! - [`datagram`] for UDP: one datagram in, one datagram out.
//!
//! Both adapters drain every readable byte on each call, so windows reopen and
//! answers leave in the same poll (no stall waiting for a timer).
//!
//! Discard and chargen are one-way ([`Kind`]): the adapters read discard's
//! bytes straight out of the socket and write chargen's pattern straight into
//! it, with no copy through a work buffer.

pub mod chargen;
pub mod datagram;
pub mod discard;
pub mod echo;
pub mod http;
pub mod stream;
pub mod upper;

/// A service's whole behaviour: rewrite the bytes in place.
pub type Transform = fn(&mut [u8]);

/// What a service does with a connection or a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Answers every byte with the service's [`Transform`] of it.
    Transform,
    /// Takes everything in, answers nothing (RFC 863).
    Discard,
    /// Sends the [`chargen`] pattern, drops what it receives (RFC 864).
    Chargen,
}

/// A service as the stack runs it: a name for people, a port, what it does.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    /// Short name shown in the start-up banner and the docs.
    pub name: &'static str,
    /// TCP and UDP port it listens on.
    pub port: u16,
    /// How it answers.
    pub kind: Kind,
    /// What it does to the bytes ([`Kind::Transform`]; unused by the others).
    pub transform: Transform,
}

impl Service {
    /// RFC 862 echo on `port`.
    pub const fn echo(port: u16) -> Self {
        Self {
            name: echo::NAME,
            port,
            kind: Kind::Transform,
            transform: echo::transform,
        }
    }

    /// Upper-case on `port`.
    pub const fn upper(port: u16) -> Self {
        Self {
            name: upper::NAME,
            port,
            kind: Kind::Transform,
            transform: upper::to_upper,
        }
    }

    /// RFC 863 discard on `port`.
    pub const fn discard(port: u16) -> Self {
        Self {
            name: discard::NAME,
            port,
            kind: Kind::Discard,
            transform: echo::transform,
        }
    }

    /// RFC 864 character generator on `port`.
    pub const fn chargen(port: u16) -> Self {
        Self {
            name: chargen::NAME,
            port,
            kind: Kind::Chargen,
            transform: echo::transform,
        }
    }
}

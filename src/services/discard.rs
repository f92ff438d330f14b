//! Discard (RFC 863): the one-way sink. Every byte received over TCP and
//! every UDP datagram is thrown away, unanswered. The TCP stream is read
//! straight out of the socket's receive buffer without a copy, so a client
//! measures how fast the stack can take data in.

/// Name shown to people.
pub const NAME: &str = "discard";

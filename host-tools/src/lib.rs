//! `hostnet`: the host side of the tapstack demo, written with `std::net` only.
//!
//! What `telnet`, `nc` and the lessons' "TCP client", "UDP sender" and
//! "socketserver" programs do, as one tool, plus the project's yardstick:
//!
//! | subcommand | module       | what it is                                                      |
//! |------------|--------------|-----------------------------------------------------------------|
//! | `tcp`      | [`tcp`]      | a TCP client: stdin to the socket, the socket to stdout         |
//! | `udp`      | [`udp`]      | a UDP sender: one datagram per argument or line, one reply each |
//! | `serve`    | [`serve`]    | echo, upper-case, discard, chargen on the kernel's own stack (the baseline) |
//! | `bench`    | [`mod@bench`] | throughput (echo, discard, chargen), round-trip time, connection rate, concurrency |
//! | `doctor`   | [`doctor`]   | checks the host side of the TAP before a first run              |
//!
//! Defaults (ports, addresses, the TAP's name) and the byte transforms come
//! from the `tapstack` library, so they are defined once for the stack and for
//! its host tools. Every wait has a timeout: a target that stops answering
//! ends a command with one clear line and a non-zero exit, never a hang.
//!
//! Exit codes, as `nc` users expect: 0 success, 1 the network said no (refused,
//! unreachable, timed out, lost, a failed check), 2 bad usage.

pub mod bench;
pub mod cli;
pub mod doctor;
pub mod error;
pub mod json;
pub mod net;
pub mod progress;
pub mod serve;
pub mod tcp;
pub mod udp;
pub mod units;

pub use error::Error;

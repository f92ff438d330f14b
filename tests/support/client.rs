//! What the TAP test binaries share on the client side: the stack's
//! addresses, the safety bounds on a wait, a TCP connect with both
//! timeouts set, and a reproducible byte source.
//!
//! A test binary includes it, after `mod netns` (tests/support/netns.rs),
//! with
//!
//! ```ignore
//! #[path = "support/client.rs"]
//! mod client;
//! ```

// Each test binary that includes this file uses a different part of it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

use crate::netns::{Netns, require_tool, run_bounded};

/// The stack's IPv4 address in the default contract.
pub const STACK_V4: Ipv4Addr = tapstack::config::STACK_IPV4.address();
/// The stack's IPv6 address in the default contract.
pub const STACK_V6: Ipv6Addr = tapstack::config::STACK_IPV6.address();

/// Safety bound on one TCP connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Safety bound on any single socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Safety bound for a tool run that should take milliseconds.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(15);

/// A TCP connection to `addr` with read and write timeouts of [`IO_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set a write timeout");
    stream
}

/// Bytes as text, for messages.
pub fn shown(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// xorshift64 (Marsaglia 2003): reproducible test data without a crate. The
/// byte stream depends only on the seed, not on how it is cut into chunks,
/// so a writer and a checker with the same seed agree.
pub struct XorShift {
    state: u64,
    word: u64,
    left: u32,
}

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self {
            state: seed | 1,
            word: 0,
            left: 0,
        }
    }

    /// The next 64-bit word (not shared with the byte stream's position).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            if self.left == 0 {
                self.word = self.next_u64();
                self.left = 8;
            }
            *byte = self.word as u8;
            self.word >>= 8;
            self.left -= 1;
        }
    }

    /// The next `n` bytes of the stream.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.fill(&mut out);
        out
    }
}

/// Checks a failed run: exit `code`, exactly one stderr line that starts
/// with `tapstack: ` and contains every one of `needles`, no panic.
pub fn assert_error(out: &Output, code: i32, needles: &[&str], what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "{what}: exit {}, stderr {stderr:?}, stdout {}",
        out.status,
        shown(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(code), "{context}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr; {context}");
    assert!(stderr.starts_with("tapstack: "), "{context}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{context}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}; {context}"
        );
    }
}

/// Runs `ping args...` in `ns` and checks that all `count` requests were answered.
pub fn ping(ns: &Netns, args: &[&str], count: usize) {
    require_tool("ping");
    let mut command = ns.command("ping");
    command.args(args);
    let out = run_bounded(command, b"", TOOL_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains(&format!("{count} packets transmitted, {count} received")),
        "ping {}: exit {}\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

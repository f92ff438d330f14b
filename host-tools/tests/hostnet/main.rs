//! End-to-end tests of the `hostnet` binary.
//!
//! - [`loopback`]: every subcommand against `hostnet serve` on 127.0.0.1 and
//!   ::1; no root needed.
//! - [`tap`]: the same against tapstack on a TAP, each test in a private
//!   network namespace (root; the `tapstack` binary must be built).
//! - [`doctor`]: `hostnet doctor` on a good setup and on each broken one it
//!   claims to detect, each in a private namespace (root).
//!
//! Benchmarks are checked for consistency (bytes verified, counts that add
//! up), never for speed.

// A test binary: a failed unwrap is a failed test with its location (what
// clippy.toml allows in #[test] functions, extended to the helpers here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/netns.rs"]
mod netns;

mod doctor;
mod loopback;
mod support;
mod tap;

//! tapstack: an embedded-style TCP/IP stack on smoltcp.
//!
//! The library is `#![no_std]` and uses no allocator: every buffer is a fixed
//! array sized by a constant in [`config`], so the whole RAM budget
//! ([`stack::RAM_BUDGET`]) is known at compile time. It is organised by layer:
//!
//! | layer     | module        | owns                                                  |
//! |-----------|---------------|-------------------------------------------------------|
//! | link      | [`link`]      | Ethernet over the device, the MAC, the MTU check      |
//! | network   | [`network`]   | IPv4/IPv6 addresses, link-local, routes, ICMP echo    |
//! | transport | [`transport`] | TCP and UDP sockets over static buffers               |
//! | services  | [`services`]  | echo (RFC 862) and upper-case, over TCP and UDP       |
//!
//! [`stack::Stack`] ties them together and is driven by [`stack::Stack::poll`].
//! The Linux TAP binary (`src/main.rs`, feature `std`) is one way to run it.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod config;
pub mod counters;
pub mod faults;
pub mod inspect;
pub mod link;
pub mod network;
pub mod services;
pub mod stack;
pub mod transport;

pub use stack::{Buffers, ConfigError, RAM_BUDGET, RamBudget, Settings, Sockets, Stack};

//! `hostnet`: the host side of the tapstack demo, written with `std::net` only.
//!
//! Its subcommands arrive with their own issue; this binary exists so the
//! workspace has its member.

fn main() {
    println!(
        "hostnet: tapstack serves echo on port {} and upper-case on port {}",
        tapstack::config::ECHO_PORT,
        tapstack::config::UPPER_PORT
    );
}

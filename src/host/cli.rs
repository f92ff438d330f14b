//! The command line: raw arguments ([`Args`]) and the settings derived from
//! them ([`Settings`]), kept apart so that validation happens in one place.

use std::fmt;

use clap::Parser;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};
use tapstack::config::{self, ParseError};
use tapstack::network::Addresses;

/// A MAC shown the way `ip link` shows it (smoltcp prints dashes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub EthernetAddress);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

fn mac(s: &str) -> Result<Mac, ParseError> {
    config::parse_mac(s).map(Mac)
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ - 1), no `/`, no white space.
pub const IFNAME_MAX: usize = 15;

fn tap_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > IFNAME_MAX
        || s == "."
        || s == ".."
        || s.contains(['/', ':'])
        || s.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "expected an interface name of 1 to {IFNAME_MAX} characters without '/', ':' or spaces, like tap0"
        ));
    }
    Ok(s.to_owned())
}

const EXAMPLES: &str = "\
Examples:
  sudo tapstack --create                 create tap0, give the host 192.168.69.100, serve
  tapstack --tap tap0                    attach to a TAP you own (see README: without root)
  sudo tapstack --create --tap tap1 --ipv4 10.0.0.2/24 --host-ipv4 10.0.0.1/24

Then, from the host:  ping 192.168.69.1   nc 192.168.69.1 7   telnet 192.168.69.1 11111

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 the TAP or the system said no, 2 bad arguments.";

/// tapstack: an embedded-style TCP/IP stack (smoltcp, no heap) on a Linux TAP,
/// serving echo and upper-case over TCP and UDP, IPv4 and IPv6.
#[derive(Parser, Debug)]
#[command(name = "tapstack", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// TAP interface to attach to.
    #[arg(long, value_name = "NAME", default_value = config::DEFAULT_TAP, value_parser = tap_name)]
    pub tap: String,

    /// Create the TAP if it does not exist, bring it up and give the host side
    /// its addresses; what is created is removed on exit. Needs root.
    #[arg(long)]
    pub create: bool,

    /// The stack's MAC address.
    #[arg(long, value_name = "MAC", default_value_t = Mac(config::STACK_MAC), value_parser = mac)]
    pub mac: Mac,

    /// The stack's IPv4 address and subnet.
    #[arg(long, value_name = "CIDR", default_value_t = config::STACK_IPV4, value_parser = config::parse_ipv4_cidr)]
    pub ipv4: Ipv4Cidr,

    /// IPv4 default gateway [default: the --host-ipv4 address].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_ipv4)]
    pub gateway: Option<Ipv4Address>,

    /// The stack's IPv6 address and prefix (a link-local address is added from the MAC).
    #[arg(long, value_name = "CIDR", default_value_t = config::STACK_IPV6, value_parser = config::parse_ipv6_cidr)]
    pub ipv6: Ipv6Cidr,

    /// IPv6 default gateway [default: the --host-ipv6 address].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_ipv6)]
    pub gateway6: Option<Ipv6Address>,

    /// Port of the echo service (TCP and UDP).
    #[arg(long, value_name = "PORT", default_value_t = config::ECHO_PORT, value_parser = config::parse_port)]
    pub echo_port: u16,

    /// Port of the upper-case service (TCP and UDP).
    #[arg(long, value_name = "PORT", default_value_t = config::UPPER_PORT, value_parser = config::parse_port)]
    pub upper_port: u16,

    /// With --create: the host's IPv4 address on the TAP.
    #[arg(long, value_name = "CIDR", default_value_t = config::HOST_IPV4, value_parser = config::parse_ipv4_cidr)]
    pub host_ipv4: Ipv4Cidr,

    /// With --create: the host's IPv6 address on the TAP.
    #[arg(long, value_name = "CIDR", default_value_t = config::HOST_IPV6, value_parser = config::parse_ipv6_cidr)]
    pub host_ipv6: Ipv6Cidr,
}

/// What the binary runs with, derived from [`Args`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// TAP interface name.
    pub tap: String,
    /// Create the TAP (and configure the host side) if it does not exist.
    pub create: bool,
    /// The host's side of the TAP, configured only when the TAP is created.
    pub host_ipv4: Ipv4Cidr,
    /// The host's IPv6 side of the TAP.
    pub host_ipv6: Ipv6Cidr,
    /// The core's settings.
    pub stack: tapstack::Settings,
}

impl Args {
    /// Checks the combination of values and derives the settings.
    pub fn settings(self) -> Result<Settings, String> {
        if self.echo_port == self.upper_port {
            return Err(format!(
                "--echo-port and --upper-port are both {}: each service needs its own port",
                self.echo_port
            ));
        }
        if self.host_ipv4.address() == self.ipv4.address() {
            return Err(format!(
                "--host-ipv4 and --ipv4 are both {}: the host and the stack need different addresses",
                self.ipv4.address()
            ));
        }
        if self.host_ipv6.address() == self.ipv6.address() {
            return Err(format!(
                "--host-ipv6 and --ipv6 are both {}: the host and the stack need different addresses",
                self.ipv6.address()
            ));
        }
        if self.create && !self.ipv4.contains_addr(&self.host_ipv4.address()) {
            return Err(format!(
                "--host-ipv4 {} is not on the stack's subnet {}: the host could not reach the stack",
                self.host_ipv4, self.ipv4
            ));
        }
        if self.create && !self.ipv6.contains_addr(&self.host_ipv6.address()) {
            return Err(format!(
                "--host-ipv6 {} is not on the stack's prefix {}: the host could not reach the stack",
                self.host_ipv6, self.ipv6
            ));
        }
        let addresses = Addresses {
            ipv4: self.ipv4,
            gateway4: Some(self.gateway.unwrap_or(self.host_ipv4.address())),
            ipv6: self.ipv6,
            gateway6: Some(self.gateway6.unwrap_or(self.host_ipv6.address())),
        };
        tapstack::network::check(&addresses).map_err(|e| e.to_string())?;
        Ok(Settings {
            tap: self.tap,
            create: self.create,
            host_ipv4: self.host_ipv4,
            host_ipv6: self.host_ipv6,
            stack: tapstack::Settings {
                mac: self.mac.0,
                addresses,
                echo_port: self.echo_port,
                upper_port: self.upper_port,
                random_seed: random_seed(),
            },
        })
    }
}

/// A seed that differs on every start (std seeds `RandomState` from the OS),
/// so TCP initial sequence numbers are not predictable across restarts.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// clap's error as one line: what is wrong, and where to look.
pub fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (see tapstack --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let args = Args::try_parse_from(std::iter::once("tapstack").chain(args.iter().copied()))
            .map_err(|e| one_line(&e))?;
        args.settings()
    }

    #[test]
    fn defaults_are_the_contract() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.tap, "tap0");
        assert!(!s.create);
        assert_eq!(s.stack.mac, config::STACK_MAC);
        assert_eq!(s.stack.addresses.ipv4, config::STACK_IPV4);
        assert_eq!(
            s.stack.addresses.gateway4,
            Some(config::HOST_IPV4.address())
        );
        assert_eq!(s.stack.addresses.ipv6, config::STACK_IPV6);
        assert_eq!(
            s.stack.addresses.gateway6,
            Some(config::HOST_IPV6.address())
        );
        assert_eq!((s.stack.echo_port, s.stack.upper_port), (7, 11111));
        assert_eq!(
            (s.host_ipv4, s.host_ipv6),
            (config::HOST_IPV4, config::HOST_IPV6)
        );
    }

    #[test]
    fn gateway_follows_host_address() {
        let s = parse(&[
            "--create",
            "--ipv4",
            "10.0.0.2/24",
            "--host-ipv4",
            "10.0.0.1/24",
        ])
        .unwrap();
        assert_eq!(
            s.stack.addresses.gateway4,
            Some(Ipv4Address::new(10, 0, 0, 1))
        );
    }

    #[test]
    fn bad_values_get_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--ipv4", "192.168.69.1"],
                "'--ipv4 <CIDR>': expected ADDRESS/PREFIX",
            ),
            (
                &["--mac", "zz:00:00:00:00:01"],
                "'--mac <MAC>': expected a MAC",
            ),
            (&["--mac", "01:00:00:00:00:01"], "multicast MAC"),
            (
                &["--echo-port", "0"],
                "'--echo-port <PORT>': expected a port",
            ),
            (&["--echo-port", "70000"], "'--echo-port <PORT>'"),
            (&["--tap", "a/b"], "'--tap <NAME>'"),
            (&["--tap", "a-name-much-too-long"], "'--tap <NAME>'"),
            (&["--frobnicate"], "unexpected argument '--frobnicate'"),
            (&["--echo-port", "11111"], "each service needs its own port"),
            (
                &["--host-ipv4", "192.168.69.1/24"],
                "need different addresses",
            ),
            (
                &["--create", "--host-ipv4", "10.1.1.1/24"],
                "not on the stack's subnet",
            ),
            (
                &["--gateway", "10.0.0.1"],
                "gateway must be another address on the stack's subnet",
            ),
        ];
        for (args, expected) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: more than one line: {err}");
        }
    }

    #[test]
    fn mac_display_uses_colons() {
        assert_eq!(Mac(config::STACK_MAC).to_string(), "02:00:00:00:00:01");
    }
}

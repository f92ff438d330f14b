//! The command line: raw arguments ([`Args`]) and the settings derived from
//! them ([`Settings`]), kept apart so that validation happens in one place.

use clap::Parser;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};
use tapstack::config::{self, ParseError};
use tapstack::faults::FaultSettings;
use tapstack::link::Mac;
use tapstack::network::Addresses;

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
#[command(name = "tapstack", version, about, after_help = EXAMPLES, allow_negative_numbers = true)]
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

    /// Port of the discard service (RFC 863, TCP and UDP): the one-way sink.
    #[arg(long, value_name = "PORT", default_value_t = config::DISCARD_PORT, value_parser = config::parse_port)]
    pub discard_port: u16,

    /// Port of the chargen service (RFC 864, TCP and UDP): the one-way source.
    #[arg(long, value_name = "PORT", default_value_t = config::CHARGEN_PORT, value_parser = config::parse_port)]
    pub chargen_port: u16,

    /// Port of the status page (HTTP: counters and sockets, as HTML and JSON).
    #[arg(long, value_name = "PORT", default_value_t = config::HTTP_PORT, value_parser = config::parse_port)]
    pub status_port: u16,

    /// With --create: the host's IPv4 address on the TAP.
    #[arg(long, value_name = "CIDR", default_value_t = config::HOST_IPV4, value_parser = config::parse_ipv4_cidr)]
    pub host_ipv4: Ipv4Cidr,

    /// With --create: the host's IPv6 address on the TAP.
    #[arg(long, value_name = "CIDR", default_value_t = config::HOST_IPV6, value_parser = config::parse_ipv6_cidr)]
    pub host_ipv6: Ipv6Cidr,

    /// Write every frame, both ways, to a pcap file for Wireshark; `-` streams
    /// to stdout (`tapstack --pcap - | wireshark -k -i -`), and the banner and
    /// trace then go to stderr.
    #[arg(long, value_name = "FILE", help_heading = "Seeing the layers")]
    pub pcap: Option<String>,

    /// Print one line per frame, layer by layer (Ethernet | IP | TCP/UDP/ICMP).
    #[arg(long, help_heading = "Seeing the layers")]
    pub trace: bool,

    /// Drop this percentage of frames, each direction.
    #[arg(long, value_name = "PCT", default_value_t = 0, value_parser = percent, help_heading = "Fault injection")]
    pub drop_chance: u8,

    /// Flip one bit in this percentage of frames, each direction.
    #[arg(long, value_name = "PCT", default_value_t = 0, value_parser = percent, help_heading = "Fault injection")]
    pub corrupt_chance: u8,

    /// Drop frames longer than this many bytes (Ethernet header included).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Fault injection")]
    pub size_limit: Option<u32>,

    /// Let at most PACKETS frames through per INTERVAL, each direction, e.g. 100/1s or 10/50ms.
    #[arg(long, value_name = "PACKETS/INTERVAL", value_parser = rate, help_heading = "Fault injection")]
    pub rate_limit: Option<(u32, smoltcp::time::Duration)>,

    /// Seed of the fault generator: the same seed gives the same faults [default: random].
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    pub seed: Option<u64>,

    /// After a frame, keep polling the TAP for this many microseconds before
    /// sleeping (0 to 1000): lower latency under load, for CPU; idle stays idle.
    #[arg(long, value_name = "MICROS", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub busy_poll: u16,
}

fn percent(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err("expected a percentage from 0 to 100".into()),
    }
}

fn rate(s: &str) -> Result<(u32, smoltcp::time::Duration), String> {
    let bad = || "expected PACKETS/INTERVAL with a unit, like 100/1s or 10/50ms".to_string();
    let (packets, interval) = s.split_once('/').ok_or_else(bad)?;
    let packets: u32 = packets.parse().ok().filter(|&p| p > 0).ok_or_else(bad)?;
    let (number, scale) = if let Some(n) = interval.strip_suffix("ms") {
        (n, 1_000)
    } else if let Some(n) = interval.strip_suffix("us") {
        (n, 1)
    } else if let Some(n) = interval.strip_suffix('s') {
        (n, 1_000_000)
    } else {
        return Err(bad());
    };
    let micros = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&m| m > 0)
        .ok_or_else(bad)?;
    Ok((packets, smoltcp::time::Duration::from_micros(micros)))
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
    /// `--pcap`: a path, or `-` for stdout.
    pub pcap: Option<String>,
    /// `--trace`.
    pub trace: bool,
    /// `--busy-poll`, in microseconds.
    pub busy_poll: u16,
}

impl Args {
    /// Checks the combination of values and derives the settings.
    pub fn settings(self) -> Result<Settings, String> {
        let ports = [
            ("--echo-port", self.echo_port),
            ("--upper-port", self.upper_port),
            ("--discard-port", self.discard_port),
            ("--chargen-port", self.chargen_port),
            ("--status-port", self.status_port),
        ];
        for (i, (flag, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return Err(format!(
                    "{other} and {flag} are both {port}: each service needs its own port"
                ));
            }
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
        // The default gateway is the host's side of the TAP, when it is on the
        // stack's subnet; otherwise there is none (the stack answers on-link).
        let host4 = self.host_ipv4.address();
        let host6 = self.host_ipv6.address();
        let addresses = Addresses {
            ipv4: self.ipv4,
            gateway4: self
                .gateway
                .or(self.ipv4.contains_addr(&host4).then_some(host4)),
            ipv6: self.ipv6,
            gateway6: self
                .gateway6
                .or(self.ipv6.contains_addr(&host6).then_some(host6)),
        };
        tapstack::network::check(&addresses).map_err(|e| {
            use tapstack::ConfigError::*;
            let (flag, value) = match e {
                Ipv4NotHost => ("--ipv4", self.ipv4.to_string()),
                Ipv6NotHost => ("--ipv6", self.ipv6.to_string()),
                Gateway4OffLink => (
                    "--gateway",
                    addresses
                        .gateway4
                        .map(|g| g.to_string())
                        .unwrap_or_default(),
                ),
                Gateway6OffLink => (
                    "--gateway6",
                    addresses
                        .gateway6
                        .map(|g| g.to_string())
                        .unwrap_or_default(),
                ),
                _ => ("", String::new()),
            };
            format!("{flag} {value}: {e}")
        })?;
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
                discard_port: self.discard_port,
                chargen_port: self.chargen_port,
                status_port: self.status_port,
                random_seed: random_seed(),
                faults: FaultSettings {
                    drop_pct: self.drop_chance,
                    corrupt_pct: self.corrupt_chance,
                    size_limit: self.size_limit.map_or(0, |n| n as usize),
                    rate_limit: self.rate_limit.map_or(0, |(n, _)| n),
                    rate_interval: self
                        .rate_limit
                        .map_or(smoltcp::time::Duration::ZERO, |(_, d)| d),
                    seed: self.seed.unwrap_or_else(random_seed),
                },
            },
            pcap: self.pcap,
            trace: self.trace,
            busy_poll: self.busy_poll,
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
    fn gateway_only_by_default_when_on_link() {
        let s = parse(&["--ipv4", "10.0.0.2/24"]).unwrap();
        assert_eq!(s.stack.addresses.gateway4, None);
        assert_eq!(
            s.stack.addresses.gateway6,
            Some(config::HOST_IPV6.address())
        );
        let err = parse(&["--ipv4", "192.168.69.0/24"]).unwrap_err();
        assert!(
            err.starts_with("--ipv4 192.168.69.0/24: the IPv4 address is not a host address"),
            "{err}"
        );
        let err = parse(&["--gateway", "10.0.0.1"]).unwrap_err();
        assert!(
            err.starts_with("--gateway 10.0.0.1: the IPv4 gateway must be"),
            "{err}"
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
            (
                &["--drop-chance", "101"],
                "'--drop-chance <PCT>': expected a percentage from 0 to 100",
            ),
            (&["--corrupt-chance", "-5"], "'--corrupt-chance <PCT>'"),
            (
                &["--rate-limit", "10"],
                "'--rate-limit <PACKETS/INTERVAL>': expected PACKETS/INTERVAL",
            ),
            (&["--rate-limit", "0/1s"], "expected PACKETS/INTERVAL"),
            (&["--rate-limit", "10/5"], "expected PACKETS/INTERVAL"),
            (&["--size-limit", "0"], "'--size-limit <BYTES>'"),
            (&["--seed", "x"], "'--seed <N>'"),
        ];
        for (args, expected) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: more than one line: {err}");
        }
    }

    #[test]
    fn fault_flags() {
        let s = parse(&[
            "--drop-chance",
            "10",
            "--corrupt-chance",
            "5",
            "--size-limit",
            "600",
            "--rate-limit",
            "10/50ms",
            "--seed",
            "7",
        ])
        .unwrap();
        let f = s.stack.faults;
        assert_eq!(
            (
                f.drop_pct,
                f.corrupt_pct,
                f.size_limit,
                f.rate_limit,
                f.seed
            ),
            (10, 5, 600, 10, 7)
        );
        assert_eq!(f.rate_interval, smoltcp::time::Duration::from_millis(50));
        assert_eq!(
            parse(&["--rate-limit", "3/2s"])
                .unwrap()
                .stack
                .faults
                .rate_interval,
            smoltcp::time::Duration::from_secs(2)
        );
        assert!(!parse(&[]).unwrap().stack.faults.any());
    }

    #[test]
    fn mac_display_uses_colons() {
        assert_eq!(Mac(config::STACK_MAC).to_string(), "02:00:00:00:00:01");
    }
}

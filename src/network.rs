//! Network layer: IPv4 and IPv6 addresses, default routes, and what may be
//! answered.
//!
//! The interface gets three addresses: the IPv4 address, the IPv6 address, and
//! the IPv6 link-local address derived from the MAC (RFC 4291, appendix A),
//! which NDP uses. smoltcp answers ARP, NDP neighbour solicitations and ICMP /
//! ICMPv6 echo requests for these addresses by itself.

use smoltcp::iface::Interface;
use smoltcp::wire::{
    EthernetAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr,
};

use crate::stack::ConfigError;

/// Prefix length of the IPv6 link-local subnet fe80::/64 (RFC 4291, 2.5.6).
pub const LINK_LOCAL_PREFIX_LEN: u8 = 64;

/// The stack's addresses and gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 address and subnet.
    pub ipv4: Ipv4Cidr,
    /// IPv4 default gateway, on the subnet.
    pub gateway4: Option<Ipv4Address>,
    /// IPv6 address and prefix.
    pub ipv6: Ipv6Cidr,
    /// IPv6 default gateway, on the prefix or link-local.
    pub gateway6: Option<Ipv6Address>,
}

/// The modified EUI-64 link-local address for a MAC: fe80::/64 with the
/// MAC split by ff:fe and its universal/local bit flipped (RFC 4291, app. A).
pub fn link_local(mac: EthernetAddress) -> Ipv6Address {
    let m = mac.0;
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// Checks the addresses: each must be a host address on its own subnet and
/// each gateway a different host on that subnet.
pub fn check(addrs: &Addresses) -> Result<(), ConfigError> {
    let v4 = addrs.ipv4.address();
    let is_network_or_broadcast = addrs.ipv4.prefix_len() < 31
        && (Some(v4) == addrs.ipv4.broadcast() || v4 == addrs.ipv4.network().address());
    if v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_loopback()
        || v4.is_broadcast()
        || is_network_or_broadcast
    {
        return Err(ConfigError::Ipv4NotHost);
    }
    if let Some(gw) = addrs.gateway4
        && (gw == v4 || !addrs.ipv4.contains_addr(&gw))
    {
        return Err(ConfigError::Gateway4OffLink);
    }
    let v6 = addrs.ipv6.address();
    if v6.is_unspecified() || v6.is_multicast() || v6.is_loopback() {
        return Err(ConfigError::Ipv6NotHost);
    }
    if let Some(gw) = addrs.gateway6 {
        let link_local = gw.segments()[0] & 0xffc0 == 0xfe80;
        if gw == v6 || !(addrs.ipv6.contains_addr(&gw) || link_local) {
            return Err(ConfigError::Gateway6OffLink);
        }
    }
    Ok(())
}

/// Gives the interface its addresses and default routes.
pub fn configure(
    iface: &mut Interface,
    mac: EthernetAddress,
    addrs: &Addresses,
) -> Result<(), ConfigError> {
    check(addrs)?;
    let mut full = false;
    iface.update_ip_addrs(|ips| {
        ips.clear();
        for cidr in [
            IpCidr::Ipv4(addrs.ipv4),
            IpCidr::Ipv6(addrs.ipv6),
            IpCidr::Ipv6(Ipv6Cidr::new(link_local(mac), LINK_LOCAL_PREFIX_LEN)),
        ] {
            full |= ips.push(cidr).is_err();
        }
    });
    if full {
        return Err(ConfigError::TooManyAddresses);
    }
    let routes = iface.routes_mut();
    routes.remove_default_ipv4_route();
    routes.remove_default_ipv6_route();
    if let Some(gw) = addrs.gateway4 {
        routes
            .add_default_ipv4_route(gw)
            .map_err(|_| ConfigError::TooManyRoutes)?;
    }
    if let Some(gw) = addrs.gateway6 {
        routes
            .add_default_ipv6_route(gw)
            .map_err(|_| ConfigError::TooManyRoutes)?;
    }
    Ok(())
}

/// Whether `addr` can be the source of a request the services answer: a single
/// host, not a group. Answering a multicast, broadcast or unspecified source
/// would send the reply to many hosts (or none): an amplifier for spoofed
/// packets (RFC 1122, 3.2.1.3 and 4.1.3.6).
pub fn is_unicast_peer(iface: &Interface, addr: &IpAddress) -> bool {
    match addr {
        IpAddress::Ipv4(a) => {
            let subnet_broadcast = iface
                .ip_addrs()
                .iter()
                .any(|cidr| matches!(cidr, IpCidr::Ipv4(c) if c.broadcast() == Some(*a)));
            !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || subnet_broadcast)
        }
        IpAddress::Ipv6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Whether `addr` can never be the source of a packet arriving on the link:
/// loopback (RFC 1122 3.2.1.3, RFC 4291 2.5.3), multicast, or the IPv4
/// limited broadcast. Such packets are dropped before the stack sees them,
/// so nothing is ever answered to them. (`::` stays allowed: NDP's duplicate
/// address detection sends from it.)
pub fn is_martian_source(addr: &IpAddress) -> bool {
    match addr {
        IpAddress::Ipv4(a) => a.is_loopback() || a.is_multicast() || a.is_broadcast(),
        IpAddress::Ipv6(a) => a.is_loopback() || a.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HOST_IPV4, HOST_IPV6, STACK_IPV4, STACK_IPV6, STACK_MAC};

    #[test]
    fn link_local_is_modified_eui64() {
        assert_eq!(
            link_local(STACK_MAC),
            "fe80::ff:fe00:1".parse::<Ipv6Address>().unwrap()
        );
        let mac = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            link_local(mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Address>().unwrap()
        );
    }

    fn defaults() -> Addresses {
        Addresses {
            ipv4: STACK_IPV4,
            gateway4: Some(HOST_IPV4.address()),
            ipv6: STACK_IPV6,
            gateway6: Some(HOST_IPV6.address()),
        }
    }

    #[test]
    fn martian_sources() {
        let martian = |s: &str| is_martian_source(&s.parse::<IpAddress>().unwrap());
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "ff02::1",
        ] {
            assert!(martian(bad), "{bad}");
        }
        for good in ["192.168.69.100", "0.0.0.0", "fdaa::100", "fe80::1", "::"] {
            assert!(!martian(good), "{good}");
        }
    }

    #[test]
    fn default_addresses_pass() {
        assert_eq!(check(&defaults()), Ok(()));
    }

    #[test]
    fn bad_addresses_are_refused() {
        let cidr4 = |s: &str| crate::config::parse_ipv4_cidr(s).unwrap();
        for bad in [
            "192.168.69.0/24",
            "192.168.69.255/24",
            "224.0.0.1/4",
            "0.0.0.0/0",
            "127.0.0.1/8",
        ] {
            let a = Addresses {
                ipv4: cidr4(bad),
                ..defaults()
            };
            assert_eq!(check(&a), Err(ConfigError::Ipv4NotHost), "{bad}");
        }
        let a = Addresses {
            gateway4: Some(Ipv4Address::new(10, 0, 0, 1)),
            ..defaults()
        };
        assert_eq!(check(&a), Err(ConfigError::Gateway4OffLink));
        let a = Addresses {
            gateway4: Some(STACK_IPV4.address()),
            ..defaults()
        };
        assert_eq!(check(&a), Err(ConfigError::Gateway4OffLink));
        let a = Addresses {
            ipv6: crate::config::parse_ipv6_cidr("ff02::1/64").unwrap(),
            ..defaults()
        };
        assert_eq!(check(&a), Err(ConfigError::Ipv6NotHost));
        let a = Addresses {
            gateway6: Some("2001:db8::1".parse().unwrap()),
            ..defaults()
        };
        assert_eq!(check(&a), Err(ConfigError::Gateway6OffLink));
        let a = Addresses {
            gateway6: Some("fe80::1".parse().unwrap()),
            ..defaults()
        };
        assert_eq!(check(&a), Ok(()));
        // A /31 (RFC 3021) has no network or broadcast address.
        let a = Addresses {
            ipv4: cidr4("10.0.0.0/31"),
            gateway4: None,
            ..defaults()
        };
        assert_eq!(check(&a), Ok(()));
    }
}

//! Link layer: Ethernet II over the TAP, with the stack's own MAC.
//!
//! The TAP hands the stack whole Ethernet frames, exactly as a NIC driver
//! would on a microcontroller. This module owns the checks on what the device
//! says about itself (medium, MTU) and the interface configuration that
//! carries the MAC. ARP (IPv4) and NDP (IPv6) resolve neighbours on top of it;
//! they are configured with the addresses in [`crate::network`].

use core::fmt;

use smoltcp::iface;
use smoltcp::phy::{DeviceCapabilities, Medium};
use smoltcp::wire::{EthernetAddress, HardwareAddress};

use crate::stack::ConfigError;

/// A MAC written the way `ip link` and Wireshark write it, `02:00:00:00:00:01`
/// (smoltcp's own `Display` uses dashes).
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

/// Ethernet II header: destination, source, EtherType (IEEE 802.3).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// The smallest IP MTU the stack accepts: IPv6 requires every link to carry
/// 1280-byte packets (RFC 8200, section 5).
pub const MIN_IP_MTU: usize = 1280;

/// The link's IP MTU (what `ip link` shows) from the device's frame MTU.
pub fn ip_mtu(caps: &DeviceCapabilities) -> usize {
    caps.max_transmission_unit
        .saturating_sub(ETHERNET_HEADER_LEN)
}

/// Checks that the device is an Ethernet device with a usable MTU.
pub fn check_device(caps: &DeviceCapabilities) -> Result<(), ConfigError> {
    if caps.medium != Medium::Ethernet {
        return Err(ConfigError::NotEthernet);
    }
    if ip_mtu(caps) < MIN_IP_MTU {
        return Err(ConfigError::MtuTooSmall(ip_mtu(caps)));
    }
    Ok(())
}

/// The interface configuration: the MAC and the seed for TCP initial
/// sequence numbers and ephemeral ports (different on every start).
pub fn interface_config(
    mac: EthernetAddress,
    random_seed: u64,
) -> Result<iface::Config, ConfigError> {
    // smoltcp panics on a multicast MAC: refuse it here with an error instead.
    if !mac.is_unicast() {
        return Err(ConfigError::MacNotUnicast);
    }
    let mut config = iface::Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = random_seed;
    Ok(config)
}

mod observed;

pub use observed::{Observed, Observer, Shared, Verified, rx_verified};

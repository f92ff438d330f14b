//! The Linux TAP device: a [`smoltcp::phy::Device`] over `/dev/net/tun`.
//!
//! Most of the binary's `unsafe` is here: the `ioctl`s and `read`/`write` on
//! the TAP file descriptor, each wrapped in a function that checks its result.
//! We do not use smoltcp's `TunTapInterface` because it silently creates a
//! missing TAP when run as root, and panics on a failed write; here a missing
//! TAP is an error with a fix, and a failed write drops one frame (as a NIC
//! would) unless the TAP is gone, which ends the loop with a clear message.
#![allow(unsafe_code)] // Confined to this module; every block says what it relies on.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};
use tapstack::link::ETHERNET_HEADER_LEN;

/// The clone device every TAP is opened through.
pub const TUN_PATH: &str = "/dev/net/tun";

/// Why the TAP could not be opened, each with the command that fixes it.
#[derive(Debug)]
pub enum OpenError {
    /// The TAP does not exist and `--create` was not given.
    Missing(String),
    /// `/dev/net/tun` does not exist.
    TunMissing,
    /// `/dev/net/tun` exists but this user may not open it.
    TunPermission,
    /// The TAP exists but belongs to another user, or creating one needs root.
    Permission { name: String, creating: bool },
    /// Another process has the TAP open.
    Busy(String),
    /// An interface of that name exists but is not a TAP.
    NotTap(String),
    /// Configuring the host side of a created TAP failed.
    HostSide {
        name: String,
        what: String,
        err: io::Error,
    },
    /// Anything else the kernel said.
    Other { what: &'static str, err: io::Error },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(n) => write!(
                f,
                "TAP '{n}' does not exist: run with --create (as root), or create it for your user once: \
                 sudo ip tuntap add name {n} mode tap user $USER && sudo ip link set {n} up && sudo ip addr add 192.168.69.100/24 dev {n} && sudo ip addr add fdaa::100/64 dev {n} nodad"
            ),
            Self::TunMissing => write!(
                f,
                "{TUN_PATH} does not exist: load the tun module (sudo modprobe tun), or in a container pass the device in (--device /dev/net/tun)"
            ),
            Self::TunPermission => write!(
                f,
                "no permission to open {TUN_PATH}: run as root, or let your user open it (sudo chmod 0666 {TUN_PATH})"
            ),
            Self::Permission {
                name,
                creating: true,
            } => write!(
                f,
                "no permission to create TAP '{name}': --create needs root (CAP_NET_ADMIN); run with sudo, or create it for your user once: sudo ip tuntap add name {name} mode tap user $USER"
            ),
            Self::Permission {
                name,
                creating: false,
            } => write!(
                f,
                "no permission to attach to TAP '{name}': it belongs to another user; run as root, or recreate it for you: sudo ip tuntap del name {name} mode tap && sudo ip tuntap add name {name} mode tap user $USER"
            ),
            Self::Busy(n) => write!(
                f,
                "TAP '{n}' is already in use by another process: stop that process, or pick another TAP with --tap"
            ),
            Self::NotTap(n) => write!(
                f,
                "interface '{n}' exists but is not a TAP: pick a TAP with --tap, or another name with --create"
            ),
            Self::HostSide { name, what, err } => {
                write!(f, "could not {what} on TAP '{name}': {err}")
            }
            Self::Other { what, err } => write!(f, "{what} failed: {err}"),
        }
    }
}

/// A fatal device error found while running.
#[derive(Debug)]
pub struct Gone(pub io::Error);

/// An open TAP.
pub struct Tap {
    fd: OwnedFd,
    name: String,
    created: bool,
    /// Frame MTU: the interface's IP MTU plus the Ethernet header.
    frame_mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Frames the kernel refused to take (queue full, link down).
    tx_dropped: u64,
    fatal: Option<io::Error>,
}

/// The kernel's `struct ifreq` for the calls here: a name and an int or flags.
#[repr(C)]
struct IfReqInt {
    name: [libc::c_char; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

impl IfReqInt {
    fn new(name: &str, value: libc::c_int) -> Self {
        let mut req = Self {
            name: [0; libc::IFNAMSIZ],
            value,
            _pad: [0; 20],
        };
        // The CLI limits names to IFNAMSIZ - 1 bytes, so the terminating NUL stays.
        for (dst, src) in req
            .name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        req
    }
}

/// Frames the host may queue for the stack on a TAP it creates (`ip link`
/// shows it as `qlen`). The kernel's default of 1000 is less than the
/// stack's windows hold (echo and upper-case advertise 64 KiB each, about 45
/// frames at MTU 1500, so 24 busy clients already fill 1000): past it the
/// host drops frames the stack had room for, and its clients stall on
/// retransmission timeouts. 10000 covers the default pools several times.
const TX_QUEUE_LEN: i32 = 10_000;

/// `struct ifreq` with a `sockaddr` (SIOCSIFADDR, SIOCSIFNETMASK).
#[repr(C)]
struct IfReqAddr {
    name: [libc::c_char; libc::IFNAMSIZ],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

fn ioctl<T>(fd: RawFd, request: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed `#[repr(C)]` struct laid out
    // as the kernel expects for `request`, at least as large as `struct ifreq`.
    let rc = unsafe { libc::ioctl(fd, request, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before it is owned.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a network interface of that name exists in this namespace.
pub fn exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

impl Tap {
    /// Attaches to TAP `name`; creates it first if `create` and it is missing.
    pub fn open(name: &str, create: bool) -> Result<Self, OpenError> {
        let existed = exists(name);
        if !existed && !create {
            return Err(OpenError::Missing(name.to_owned()));
        }
        let path = CString::new(TUN_PATH).map_err(|e| OpenError::Other {
            what: "open",
            err: e.into(),
        })?;
        // SAFETY: `path` is NUL-terminated; the result is checked before use.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    OpenError::TunMissing
                }
                Some(libc::EACCES) | Some(libc::EPERM) => OpenError::TunPermission,
                _ => OpenError::Other {
                    what: "opening /dev/net/tun",
                    err,
                },
            });
        }
        // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        let mut req = IfReqInt::new(name, (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_int);
        if let Err(err) = ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) {
            return Err(match err.raw_os_error() {
                Some(libc::EBUSY) => OpenError::Busy(name.to_owned()),
                Some(libc::EPERM) | Some(libc::EACCES) => OpenError::Permission {
                    name: name.to_owned(),
                    creating: !existed,
                },
                Some(libc::EINVAL) if existed => OpenError::NotTap(name.to_owned()),
                _ => OpenError::Other {
                    what: "attaching to the TAP (TUNSETIFF)",
                    err,
                },
            });
        }

        let mut tap = Self {
            fd,
            name: name.to_owned(),
            created: !existed,
            frame_mtu: 0,
            rx: Vec::new(),
            tx: Vec::new(),
            tx_dropped: 0,
            fatal: None,
        };
        let ip_mtu = tap.ip_mtu().map_err(|err| OpenError::Other {
            what: "reading the MTU (SIOCGIFMTU)",
            err,
        })?;
        tap.frame_mtu = ip_mtu + ETHERNET_HEADER_LEN;
        // One frame buffer each way, sized by the MTU: allocated here, at start-up, never again.
        tap.rx = vec![0; tap.frame_mtu];
        tap.tx = vec![0; tap.frame_mtu];
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this process created the TAP (it disappears when we exit).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Frames the kernel would not take.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// The TAP's file descriptor, to wait on.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The IP MTU, as `ip link` shows it.
    pub fn ip_mtu(&self) -> io::Result<usize> {
        let sock = socket(libc::AF_INET)?;
        let mut req = IfReqInt::new(&self.name, 0);
        ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req)?;
        Ok(usize::try_from(req.value).unwrap_or(0))
    }

    /// Whether the interface is administratively up.
    pub fn is_up(&self) -> io::Result<bool> {
        let sock = socket(libc::AF_INET)?;
        let mut req = IfReqInt::new(&self.name, 0);
        ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)?;
        Ok(req.value & libc::IFF_UP != 0)
    }

    /// Gives the host side its addresses and brings the link up: what a user
    /// would do with `ip addr add` and `ip link set up`.
    pub fn configure_host(&self, ipv4: Ipv4Cidr, ipv6: Ipv6Cidr) -> Result<(), OpenError> {
        let fail = |what: String| {
            move |err| OpenError::HostSide {
                name: self.name.clone(),
                what,
                err,
            }
        };
        // No duplicate address detection on a point-to-point TAP: without this
        // the IPv6 address stays "tentative" for a second or more and the
        // first `ping -6` fails.
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/accept_dad", self.name),
            "0",
        )
        .map_err(fail("disable IPv6 duplicate address detection".into()))?;

        let sock4 = socket(libc::AF_INET).map_err(fail("open a socket".into()))?;
        let sin = |addr: std::net::Ipv4Addr| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(addr.octets()),
            },
            sin_zero: [0; 8],
        };
        let mut req = IfReqAddr {
            name: IfReqInt::new(&self.name, 0).name,
            addr: sin(ipv4.address()),
            _pad: [0; 8],
        };
        ioctl(sock4.as_raw_fd(), libc::SIOCSIFADDR, &mut req)
            .map_err(fail(format!("add host address {ipv4}")))?;
        req.addr = sin(ipv4.netmask());
        ioctl(sock4.as_raw_fd(), libc::SIOCSIFNETMASK, &mut req)
            .map_err(fail(format!("set netmask of {ipv4}")))?;

        let mut qlen = IfReqInt::new(&self.name, TX_QUEUE_LEN);
        ioctl(sock4.as_raw_fd(), libc::SIOCSIFTXQLEN, &mut qlen).map_err(fail(format!(
            "set the transmit queue to {TX_QUEUE_LEN} frames"
        )))?;

        let mut flags = IfReqInt::new(&self.name, 0);
        ioctl(sock4.as_raw_fd(), libc::SIOCGIFFLAGS, &mut flags)
            .map_err(fail("read the link flags".into()))?;
        flags.value |= libc::IFF_UP;
        ioctl(sock4.as_raw_fd(), libc::SIOCSIFFLAGS, &mut flags)
            .map_err(fail("bring the link up".into()))?;

        let sock6 = socket(libc::AF_INET6)
            .map_err(fail("open an IPv6 socket (is IPv6 disabled?)".into()))?;
        let mut req6 = libc::in6_ifreq {
            ifr6_addr: libc::in6_addr {
                s6_addr: ipv6.address().octets(),
            },
            ifr6_prefixlen: u32::from(ipv6.prefix_len()),
            ifr6_ifindex: self
                .index()
                .map_err(fail("find the interface index".into()))?,
        };
        ioctl(sock6.as_raw_fd(), libc::SIOCSIFADDR, &mut req6)
            .map_err(fail(format!("add host address {ipv6}")))?;
        wait_until_usable(&self.name, ipv6.address());
        Ok(())
    }

    fn index(&self) -> io::Result<libc::c_int> {
        let sock = socket(libc::AF_INET)?;
        let mut req = IfReqInt::new(&self.name, 0);
        ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req)?;
        Ok(req.value)
    }

    /// A fatal error seen since the last call (the TAP went away).
    pub fn take_fatal(&mut self) -> Option<Gone> {
        self.fatal.take().map(Gone)
    }

    /// Reads what a wake-up reported as an error, to tell why.
    pub fn probe_error(&mut self) -> Gone {
        match read(self.fd.as_raw_fd(), &mut self.rx) {
            Err(err) => Gone(err),
            Ok(_) => Gone(io::Error::other("the TAP reported an error")),
        }
    }
}

/// The kernel's flag for an IPv6 address that may not be used yet
/// (`IFA_F_TENTATIVE`, include/uapi/linux/if_addr.h).
const IFA_F_TENTATIVE: u32 = 0x40;
/// How long to wait for the host's IPv6 address to leave the tentative state.
const TENTATIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits (bounded) until `addr` on `ifname` is no longer tentative.
///
/// Even with `accept_dad = 0` the kernel adds an IPv6 address as tentative
/// and clears the flag from a work queue a moment later. A client that
/// connects in between gets another source address (even `::1`) and its
/// connection can never complete. So "ready" waits for the flag to clear,
/// as read from `/proc/net/if_inet6` (address, index, prefix, scope, flags, name).
fn wait_until_usable(ifname: &str, addr: std::net::Ipv6Addr) {
    let hex: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    let deadline = std::time::Instant::now() + TENTATIVE_WAIT;
    loop {
        let usable = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|table| {
            table.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() == 6
                    && f[0] == hex
                    && f[5] == ifname
                    && u32::from_str_radix(f[4], 16).is_ok_and(|flags| flags & IFA_F_TENTATIVE == 0)
            })
        });
        if usable {
            return;
        }
        if std::time::Instant::now() >= deadline {
            super::say(format_args!(
                "tapstack: warning: the host address {addr} on {ifname} is still tentative; IPv6 may need a moment"
            ));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Errors after which the TAP cannot be used again: it was deleted (EBADFD),
/// or the device vanished.
fn is_fatal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::EBADF)
    )
}

impl phy::Device for Tap {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match read(self.fd.as_raw_fd(), &mut self.rx) {
            Ok(0) => None,
            Ok(n) => Some((
                RxToken {
                    frame: &self.rx[..n],
                },
                TxToken {
                    fd: self.fd.as_raw_fd(),
                    buf: &mut self.tx,
                    dropped: &mut self.tx_dropped,
                    fatal: &mut self.fatal,
                },
            )),
            Err(err)
                if err.kind() == io::ErrorKind::WouldBlock
                    || err.kind() == io::ErrorKind::Interrupted =>
            {
                None
            }
            Err(err) => {
                if is_fatal(&err) {
                    self.fatal = Some(err);
                }
                None
            }
        }
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            fd: self.fd.as_raw_fd(),
            buf: &mut self.tx,
            dropped: &mut self.tx_dropped,
            fatal: &mut self.fatal,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_mtu;
        caps
    }
}

/// One received frame.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    fd: RawFd,
    buf: &'a mut [u8],
    dropped: &'a mut u64,
    fatal: &'a mut Option<io::Error>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than the MTU the device reported.
        let len = len.min(self.buf.len());
        let frame = &mut self.buf[..len];
        let result = f(frame);
        if let Err(err) = write(self.fd, frame) {
            // Like a NIC with a full ring: the frame is lost, TCP will resend
            // on its timer. Never wait or retry here: the loop would spin or
            // stall. (Waiting for POLLOUT instead would mean `transmit`
            // returning `None`, and smoltcp then asks to be polled again at
            // once: a busy loop. A TAP write does not block anyway: the
            // kernel gives the TAP an unlimited (INT_MAX) send buffer, and it
            // drops what its backlog cannot take after accepting the write.
            // What does fail is a write while the link is down: EIO.)
            *self.dropped += 1;
            if is_fatal(&err) {
                *self.fatal = Some(err);
            }
        }
        result
    }
}

//! `hostnet doctor`: checks the host side of the TAP before a first run.
//!
//! Each check prints `ok`, `info` (worth knowing, not a problem) or `PROBLEM`
//! with the exact command that fixes it; the exit code is 0 when there is no
//! problem. It reads only: sysfs (`/sys/class/net`, per network namespace
//! under `ip netns exec`), `/proc`, `getifaddrs(3)`, and opens `/dev/net/tun`
//! and an `AF_PACKET` socket only to see whether it may (neither attaches to
//! anything nor sends or receives a frame).

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tapstack::config::{DEFAULT_TAP, HOST_IPV4, HOST_IPV6, STACK_IPV4, STACK_IPV6};
use tapstack::link::MIN_IP_MTU;

use crate::Error;

/// The TUN/TAP clone device.
const TUN_DEVICE: &str = "/dev/net/tun";
/// Its device numbers (Documentation/admin-guide/devices.txt: misc 10, minor 200).
const TUN_MAJOR_MINOR: (u32, u32) = (10, 200);
/// Where the kernel shows network interfaces.
const SYS_NET: &str = "/sys/class/net";
/// From <linux/if_tun.h>: the `tun_flags` bits this check reads.
const IFF_TUN: u32 = 0x0001;
const IFF_TAP: u32 = 0x0002;
const IFF_MULTI_QUEUE: u32 = 0x0100;
/// `IFF_UP` in the interface flags (<linux/if.h>).
const IFF_UP: u32 = 0x1;
/// The MTU the stack's buffers are sized for (see the core's config).
const ETHERNET_MTU: u32 = 1500;
/// CAP_NET_ADMIN and CAP_NET_RAW (<linux/capability.h>).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
/// Capture helper of Wireshark/tshark, given capabilities by Debian's wireshark-common.
const DUMPCAP: &str = "/usr/bin/dumpcap";

/// `hostnet doctor` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TAP tapstack will attach to.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_TAP)]
    pub tap: String,
}

/// Examples for `hostnet doctor --help`.
pub fn examples() -> String {
    format!(
        "Checks: /dev/net/tun, the TAP (exists, is a TAP, owner, up, carrier, who holds it),
its MTU, the host's addresses on it ({}/{} and {}/{}), that no interface has the
stack's own address or subnet, and whether you can capture on it.

Examples:
  hostnet doctor                    checks {DEFAULT_TAP}
  sudo ip netns exec lab hostnet doctor --tap tap1

Exit codes: 0 all is well, 1 problems found (each printed with its fix), 2 bad usage.",
        HOST_IPV4.address(),
        HOST_IPV4.prefix_len(),
        HOST_IPV6.address(),
        HOST_IPV6.prefix_len()
    )
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// As it should be.
    Ok,
    /// Worth knowing; not a problem.
    Info,
    /// Stops tapstack (or the demo) from working: comes with a fix.
    Problem,
}

/// One line of the diagnosis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub text: String,
    /// The command that fixes it, for a problem.
    pub fix: Option<String>,
}

impl Check {
    fn ok(text: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            text: text.into(),
            fix: None,
        }
    }

    fn info(text: impl Into<String>) -> Self {
        Self {
            status: Status::Info,
            text: text.into(),
            fix: None,
        }
    }

    fn problem(text: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Problem,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Who runs the doctor, and what they may do.
#[derive(Debug)]
struct User {
    uid: u32,
    name: String,
    groups: BTreeSet<u32>,
    net_admin: bool,
    net_raw: bool,
}

impl User {
    fn current() -> Self {
        // SAFETY: geteuid and getegid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut groups = BTreeSet::from([gid]);
        let mut list = [0 as libc::gid_t; 256];
        // SAFETY: the buffer holds `list.len()` gids; getgroups writes at most that many.
        let n = unsafe { libc::getgroups(list.len() as libc::c_int, list.as_mut_ptr()) };
        groups.extend(list.iter().take(usize::try_from(n).unwrap_or(0)));
        let caps = effective_capabilities();
        // Under sudo the fixes should name the person, not root.
        let name = std::env::var("SUDO_USER")
            .ok()
            .filter(|_| uid == 0)
            .or_else(|| user_name(uid))
            .unwrap_or_else(|| uid.to_string());
        Self {
            uid,
            name,
            groups,
            net_admin: caps & (1 << CAP_NET_ADMIN) != 0,
            net_raw: caps & (1 << CAP_NET_RAW) != 0,
        }
    }
}

fn effective_capabilities() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn sys(tap: &str, attr: &str) -> Option<String> {
    fs::read_to_string(Path::new(SYS_NET).join(tap).join(attr))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// An address on an interface, with its prefix length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl IfAddr {
    fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

/// Every IPv4 and IPv6 address of every interface in this network namespace.
pub fn interface_addresses() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let interface = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family
        // tells its real type; ifa_netmask, when present, has the same family.
        let (addr, prefix) = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    let mask = if ifa.ifa_netmask.is_null() {
                        32
                    } else {
                        (*ifa.ifa_netmask.cast::<libc::sockaddr_in>())
                            .sin_addr
                            .s_addr
                            .count_ones()
                    };
                    (
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                        mask,
                    )
                }
                libc::AF_INET6 => {
                    let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    let mask = if ifa.ifa_netmask.is_null() {
                        128
                    } else {
                        let m = &*ifa.ifa_netmask.cast::<libc::sockaddr_in6>();
                        m.sin6_addr.s6_addr.iter().map(|b| b.count_ones()).sum()
                    };
                    (IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)), mask)
                }
                _ => continue,
            }
        };
        out.push(IfAddr {
            interface,
            addr,
            prefix: u8::try_from(prefix).unwrap_or(128),
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// True if `addr` is inside `net`/`prefix`.
fn contains(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Processes in this network namespace holding `tap` open, as `(pid, name)`.
fn holders(tap: &str) -> Vec<(u32, String)> {
    let own_ns = fs::read_link("/proc/self/ns/net").ok();
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for proc in procs.flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = proc.path();
        // `ip netns exec` shares the PID namespace: a tap0 in another
        // network namespace is another interface.
        if fs::read_link(dir.join("ns/net")).ok() != own_ns {
            continue;
        }
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|target| target == Path::new(TUN_DEVICE)) {
                let info =
                    fs::read_to_string(dir.join("fdinfo").join(fd.file_name())).unwrap_or_default();
                if info
                    .lines()
                    .any(|l| l.strip_prefix("iff:").is_some_and(|v| v.trim() == tap))
                {
                    let name = fs::read_to_string(dir.join("comm"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    found.push((pid, name));
                    break;
                }
            }
        }
    }
    found
}

fn check_tun_device() -> Check {
    let recreate = format!(
        "sudo modprobe tun; sudo mkdir -p /dev/net && sudo rm -f {TUN_DEVICE} && sudo mknod {TUN_DEVICE} c {} {} && sudo chmod 0666 {TUN_DEVICE}",
        TUN_MAJOR_MINOR.0, TUN_MAJOR_MINOR.1
    );
    let meta = match fs::metadata(TUN_DEVICE) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Check::problem(
                format!("{TUN_DEVICE} is missing: no TUN/TAP support loaded"),
                recreate,
            );
        }
        Err(e) => return Check::problem(format!("cannot look at {TUN_DEVICE}: {e}"), recreate),
    };
    if !meta.file_type().is_char_device() {
        return Check::problem(format!("{TUN_DEVICE} is not a character device"), recreate);
    }
    let numbers = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    if numbers != TUN_MAJOR_MINOR {
        return Check::problem(
            format!(
                "{TUN_DEVICE} is device {}:{}, not the TUN/TAP device {}:{}",
                numbers.0, numbers.1, TUN_MAJOR_MINOR.0, TUN_MAJOR_MINOR.1
            ),
            recreate,
        );
    }
    // Opening the clone device attaches to nothing (that takes TUNSETIFF).
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
    {
        Ok(_) => Check::ok(format!(
            "{TUN_DEVICE} is the TUN/TAP device and you can open it"
        )),
        Err(e) => Check::problem(
            format!(
                "you cannot open {TUN_DEVICE} (mode {:o}): {e}",
                meta.mode() & 0o777
            ),
            format!("sudo chmod 0666 {TUN_DEVICE}   (or run tapstack with sudo)"),
        ),
    }
}

/// Runs every check on `tap`.
pub fn diagnose(tap: &str) -> Vec<Check> {
    let user = User::current();
    let privileged = user.uid == 0 || user.net_admin;
    let mut checks = vec![check_tun_device()];
    let create = format!("sudo ip tuntap add name {tap} mode tap user {}", user.name);
    let exists = Path::new(SYS_NET).join(tap).exists();
    if !exists {
        let taps: Vec<String> = fs::read_dir(SYS_NET)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|name| {
                sys(name, "tun_flags")
                    .and_then(|f| hex(&f))
                    .is_some_and(|f| f & IFF_TAP != 0)
            })
            .collect();
        let others = if taps.is_empty() {
            String::new()
        } else {
            format!(" (TAPs here: {}; pick one with --tap)", taps.join(", "))
        };
        checks.push(Check::problem(
            format!("{tap} does not exist{others}"),
            create.clone(),
        ));
    } else {
        check_tap(tap, &user, privileged, &create, &mut checks);
    }
    check_addresses(tap, exists, &mut checks);
    checks.push(check_capture(tap, &user));
    checks
}

fn check_tap(tap: &str, user: &User, privileged: bool, create: &str, checks: &mut Vec<Check>) {
    let recreate = format!("sudo ip link del {tap} && {create}");
    match sys(tap, "tun_flags").and_then(|f| hex(&f)) {
        None => {
            let kind = sys(tap, "type").map_or("unknown".into(), |t| format!("link type {t}"));
            checks.push(Check::problem(
                format!("{tap} exists but is not a TUN/TAP device ({kind})"),
                recreate,
            ));
            return;
        }
        Some(flags) if flags & IFF_TAP == 0 && flags & IFF_TUN != 0 => {
            checks.push(Check::problem(
                format!("{tap} is a TUN (IP packets, no Ethernet); tapstack needs a TAP"),
                recreate,
            ));
            return;
        }
        Some(flags) if flags & IFF_MULTI_QUEUE != 0 => {
            checks.push(Check::problem(
                format!("{tap} was made multi-queue; tapstack attaches one queue and is refused"),
                recreate,
            ));
        }
        Some(flags) => checks.push(Check::ok(format!(
            "{tap} is a TAP (tun_flags {flags:#06x})"
        ))),
    }

    let owner = sys(tap, "owner")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(-1);
    let group = sys(tap, "group")
        .and_then(|g| g.parse::<i64>().ok())
        .unwrap_or(-1);
    let owner_text = match (owner, group) {
        (-1, -1) => "no owner (root only)".to_owned(),
        (-1, g) => format!("group {g}"),
        (o, _) => format!(
            "owner {} (uid {o})",
            u32::try_from(o)
                .ok()
                .and_then(user_name)
                .unwrap_or_else(|| "?".into())
        ),
    };
    let mine = owner == i64::from(user.uid)
        || u32::try_from(group).is_ok_and(|g| user.groups.contains(&g));
    if privileged {
        checks.push(Check::ok(format!(
            "{tap}: {owner_text}; you are root, so you can attach to it"
        )));
    } else if mine {
        checks.push(Check::ok(format!(
            "{tap}: {owner_text}; you ({}) can attach to it without root",
            user.name
        )));
    } else {
        checks.push(Check::problem(
            format!("you ({}) cannot attach to {tap}: {owner_text}", user.name),
            format!("sudo ip tuntap del name {tap} mode tap && {create}   (then add its addresses again)"),
        ));
    }

    let up = sys(tap, "flags")
        .and_then(|f| hex(&f))
        .is_some_and(|f| f & IFF_UP != 0);
    if up {
        checks.push(Check::ok(format!("{tap} is up")));
        let held_by = holders(tap);
        let names: Vec<String> = held_by
            .iter()
            .map(|(pid, name)| format!("{name} (pid {pid})"))
            .collect();
        match sys(tap, "carrier").as_deref() {
            Some("1") if held_by.iter().any(|(_, n)| n != "tapstack") => {
                checks.push(Check::problem(
                    format!(
                        "{tap} is held by {}: tapstack cannot attach while it is",
                        names.join(", ")
                    ),
                    format!("stop {}", names.join(", ")),
                ))
            }
            Some("1") if names.is_empty() => checks.push(Check::info(format!(
                "{tap} has carrier: a process has it open (tapstack running?)"
            ))),
            Some("1") => checks.push(Check::info(format!(
                "{tap} has carrier: {} has it open",
                names.join(", ")
            ))),
            _ => checks.push(Check::info(format!(
                "{tap} shows NO-CARRIER: no process has it open yet; normal before tapstack starts"
            ))),
        }
    } else {
        checks.push(Check::problem(
            format!("{tap} is down"),
            format!("sudo ip link set dev {tap} up"),
        ));
    }

    match sys(tap, "mtu").and_then(|m| m.parse::<u32>().ok()) {
        Some(mtu) if (mtu as usize) < MIN_IP_MTU => checks.push(Check::problem(
            format!("{tap} has MTU {mtu}: below {MIN_IP_MTU}, the least IPv6 allows (RFC 8200); tapstack refuses it"),
            format!("sudo ip link set dev {tap} mtu {ETHERNET_MTU}"),
        )),
        Some(ETHERNET_MTU) => checks.push(Check::ok(format!("{tap} has MTU {ETHERNET_MTU}"))),
        Some(mtu) => checks.push(Check::info(format!(
            "{tap} has MTU {mtu}; tapstack's buffers are sized for {ETHERNET_MTU} (`sudo ip link set dev {tap} mtu {ETHERNET_MTU}`)"
        ))),
        None => checks.push(Check::info(format!("cannot read the MTU of {tap}"))),
    }
}

fn check_addresses(tap: &str, exists: bool, checks: &mut Vec<Check>) {
    let addrs = match interface_addresses() {
        Ok(addrs) => addrs,
        Err(e) => {
            checks.push(Check::info(format!(
                "cannot list the host's addresses: {e}"
            )));
            return;
        }
    };
    let stacks = [
        (
            IpAddr::V4(STACK_IPV4.address()),
            STACK_IPV4.prefix_len(),
            IpAddr::V4(HOST_IPV4.address()),
            HOST_IPV4.prefix_len(),
        ),
        (
            IpAddr::V6(STACK_IPV6.address()),
            STACK_IPV6.prefix_len(),
            IpAddr::V6(HOST_IPV6.address()),
            HOST_IPV6.prefix_len(),
        ),
    ];
    for (stack, stack_prefix, host, host_prefix) in stacks {
        // The host must not have the stack's own address anywhere.
        for a in addrs.iter().filter(|a| a.addr == stack) {
            checks.push(Check::problem(
                format!(
                    "{} has {}, the stack's own address: the host answers in the stack's place",
                    a.interface,
                    a.cidr()
                ),
                format!("sudo ip addr del {} dev {}", a.cidr(), a.interface),
            ));
        }
        // No other interface may be on the stack's subnet, or replies may leave by it.
        for a in addrs.iter().filter(|a| {
            a.interface != tap
                && a.addr != stack
                && (contains(stack, stack_prefix, a.addr) || contains(a.addr, a.prefix, stack))
        }) {
            checks.push(Check::problem(
                format!(
                    "{} has {}, on the stack's subnet too: traffic for the stack may leave by {}",
                    a.interface,
                    a.cidr(),
                    a.interface
                ),
                format!("sudo ip addr del {} dev {}", a.cidr(), a.interface),
            ));
        }
        if !exists {
            continue;
        }
        let v6 = stack.is_ipv6();
        if v6
            && fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"))
                .is_ok_and(|s| s.trim() == "1")
        {
            checks.push(Check::problem(
                format!("IPv6 is disabled on {tap}: the stack's {stack} cannot be reached"),
                format!("sudo sysctl -w net.ipv6.conf.{tap}.disable_ipv6=0 && sudo ip -6 addr add {host}/{host_prefix} dev {tap}"),
            ));
            continue;
        }
        let on_tap: Vec<&IfAddr> = addrs
            .iter()
            .filter(|a| a.interface == tap && a.addr.is_ipv6() == v6 && a.addr != stack)
            .collect();
        let good: Vec<&&IfAddr> = on_tap
            .iter()
            .filter(|a| contains(a.addr, a.prefix, stack) && contains(stack, stack_prefix, a.addr))
            .collect();
        let add = format!(
            "sudo ip{} addr add {host}/{host_prefix} dev {tap}",
            if v6 { " -6" } else { "" }
        );
        if let Some(a) = good
            .iter()
            .find(|a| a.addr == host && a.prefix == host_prefix)
        {
            checks.push(Check::ok(format!(
                "{tap} has the host address {}",
                a.cidr()
            )));
        } else if let Some(a) = good.first() {
            checks.push(Check::ok(format!(
                "{tap} has {} (not the documented {host}, but on the stack's subnet)",
                a.cidr()
            )));
        } else if let Some(a) = on_tap
            .iter()
            .find(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        {
            checks.push(Check::problem(
                format!(
                    "{tap} has {}, whose subnet does not hold the stack's {stack}/{stack_prefix}",
                    a.cidr()
                ),
                format!("sudo ip addr del {} dev {tap} && {add}", a.cidr()),
            ));
        } else {
            checks.push(Check::problem(
                format!(
                    "{tap} has no {} address on the stack's subnet",
                    if v6 { "IPv6" } else { "IPv4" }
                ),
                add,
            ));
        }
    }
}

fn check_capture(tap: &str, user: &User) -> Check {
    // A packet socket with protocol 0 receives nothing: this only asks the
    // kernel whether we may capture (CAP_NET_RAW).
    // SAFETY: socket(2) with constant arguments; the descriptor is closed at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    let tools: Vec<&str> = ["tshark", "tcpdump", "wireshark"]
        .into_iter()
        .filter(|t| in_path(t))
        .collect();
    let tool = tools.first().copied().unwrap_or("tshark");
    if fd >= 0 {
        // SAFETY: `fd` was just returned by socket(2) and is ours.
        unsafe { libc::close(fd) };
        let how = if user.net_raw && user.uid != 0 {
            " (you have CAP_NET_RAW)"
        } else {
            ""
        };
        return if tools.is_empty() {
            Check::info(format!(
                "you may capture on {tap}{how}, but no capture tool is installed: sudo apt-get install tshark"
            ))
        } else {
            Check::ok(format!("you can capture on {tap}{how}: {tool} -i {tap}"))
        };
    }
    if dumpcap_allows(user) {
        return Check::ok(format!(
            "you can capture on {tap} through dumpcap: {tool} -i {tap}"
        ));
    }
    Check::problem(
        format!("you ({}) cannot capture on {tap}", user.name),
        format!(
            "sudo {tool} -i {tap}   (or once: sudo dpkg-reconfigure wireshark-common && sudo usermod -aG wireshark {}, then log in again)",
            user.name
        ),
    )
}

/// Debian's dumpcap is run by group `wireshark` with capabilities (or setuid).
fn dumpcap_allows(user: &User) -> bool {
    let Ok(meta) = fs::metadata(DUMPCAP) else {
        return false;
    };
    let runnable = meta.uid() == user.uid
        || user.groups.contains(&meta.gid()) && meta.mode() & 0o010 != 0
        || meta.mode() & 0o001 != 0;
    let Ok(path) = std::ffi::CString::new(DUMPCAP) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks only for the size.
    let caps = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    runnable && (caps > 0 || meta.mode() & 0o4000 != 0)
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The report, as printed.
pub fn render(tap: &str, checks: &[Check]) -> String {
    let mut out = format!(
        "hostnet doctor: {tap}, for a stack at {}/{} and {}/{}\n",
        STACK_IPV4.address(),
        STACK_IPV4.prefix_len(),
        STACK_IPV6.address(),
        STACK_IPV6.prefix_len()
    );
    for check in checks {
        let tag = match check.status {
            Status::Ok => "ok     ",
            Status::Info => "info   ",
            Status::Problem => "PROBLEM",
        };
        let _ = writeln!(out, "  {tag}  {}", check.text);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "           fix: {fix}");
        }
    }
    out
}

/// Runs `hostnet doctor`.
pub fn run(args: Args) -> Result<(), Error> {
    if args.tap.is_empty()
        || args.tap.len() >= libc::IFNAMSIZ
        || args.tap.contains(['/', ' '])
        || args.tap == "."
        || args.tap == ".."
    {
        return Err(Error::usage(format!(
            "{:?} is not an interface name (at most 15 characters, no '/' or spaces)",
            args.tap
        )));
    }
    let checks = diagnose(&args.tap);
    print!("{}", render(&args.tap, &checks));
    let problems = checks
        .iter()
        .filter(|c| c.status == Status::Problem)
        .count();
    if problems == 0 {
        println!("all is well: start the stack on {}", args.tap);
        Ok(())
    } else {
        Err(Error::failure(format!(
            "doctor: {problems} problem(s) found; each is listed above with its fix"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_contain_their_addresses() {
        let stack = IpAddr::V4(STACK_IPV4.address());
        let host = IpAddr::V4(HOST_IPV4.address());
        assert!(contains(host, 24, stack));
        assert!(!contains(host, 32, stack));
        assert!(contains(stack, 0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert!(!contains(
            stack,
            24,
            IpAddr::V4(Ipv4Addr::new(192, 168, 70, 1))
        ));
        let v6 = IpAddr::V6(STACK_IPV6.address());
        assert!(contains(IpAddr::V6(HOST_IPV6.address()), 64, v6));
        assert!(!contains(v6, 64, stack));
    }

    #[test]
    fn loopback_is_listed() {
        let addrs = interface_addresses().unwrap();
        assert!(
            addrs
                .iter()
                .any(|a| a.addr == IpAddr::V4(Ipv4Addr::LOCALHOST) && a.prefix == 8)
        );
    }
}

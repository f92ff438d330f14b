//! `hostnet doctor` on a good setup and on each broken one it claims to
//! detect. Each case builds its TAP in a private network namespace and runs
//! the doctor there with `ip netns exec` (which gives it that namespace's
//! /sys); cases about /dev/net/tun also get a private mount namespace.

use std::process::{Command, Output};

use tapstack::config::{HOST_IPV4, HOST_IPV6, STACK_IPV4};

use crate::netns::{Netns, PublicCopy, require_tool};
use crate::support::{self, run, stdout};

fn host_v4() -> String {
    format!("{}/{}", HOST_IPV4.address(), HOST_IPV4.prefix_len())
}

fn host_v6() -> String {
    format!("{}/{}", HOST_IPV6.address(), HOST_IPV6.prefix_len())
}

/// A namespace with tap0 as the docs set it up: a TAP, up, with both host addresses.
fn good_setup(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&["tuntap", "add", "name", "tap0", "mode", "tap"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&["addr", "add", &host_v4(), "dev", "tap0"]);
    ns.ip(&["addr", "add", &host_v6(), "dev", "tap0", "nodad"]);
    ns
}

fn doctor(ns: &Netns) -> Output {
    let mut command = ns.command(support::hostnet());
    command.arg("doctor");
    run(command, b"")
}

/// Fails unless the doctor found a problem, said `what`, and gave `fix`.
fn assert_problem(out: &Output, what: &str, fix: &str) {
    let text = stdout(out);
    assert_eq!(out.status.code(), Some(1), "problems mean exit 1:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains("PROBLEM") && l.contains(what));
    assert!(line.is_some(), "no PROBLEM line with {what:?}:\n{text}");
    let fixed = text.lines().any(|l| {
        l.trim_start()
            .strip_prefix("fix: ")
            .is_some_and(|f| f.contains(fix))
    });
    assert!(fixed, "no fix with {fix:?}:\n{text}");
}

/// The documented setup: exit 0, no problem, the NO-CARRIER explained.
#[test]
fn good_setup_is_well() {
    let ns = good_setup("dr-good");
    let out = doctor(&ns);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        support::stderr(&out)
    );
    assert!(!text.contains("PROBLEM"), "{text}");
    assert!(text.contains("NO-CARRIER"), "{text}");
    assert!(text.contains("all is well"), "{text}");
}

#[test]
fn missing_tap() {
    let ns = Netns::new("dr-missing");
    assert_problem(
        &doctor(&ns),
        "tap0 does not exist",
        "sudo ip tuntap add name tap0 mode tap user ",
    );
}

#[test]
fn tap_down() {
    let ns = good_setup("dr-down");
    ns.ip(&["link", "set", "tap0", "down"]);
    assert_problem(&doctor(&ns), "tap0 is down", "sudo ip link set dev tap0 up");
}

#[test]
fn no_host_ipv4_address() {
    let ns = good_setup("dr-noaddr");
    ns.ip(&["addr", "del", &host_v4(), "dev", "tap0"]);
    assert_problem(
        &doctor(&ns),
        "no IPv4 address",
        &format!("sudo ip addr add {} dev tap0", host_v4()),
    );
}

#[test]
fn no_host_ipv6_address() {
    let ns = good_setup("dr-noaddr6");
    ns.ip(&["addr", "del", &host_v6(), "dev", "tap0"]);
    assert_problem(
        &doctor(&ns),
        "no IPv6 address",
        &format!("sudo ip -6 addr add {} dev tap0", host_v6()),
    );
}

#[test]
fn host_address_on_the_wrong_subnet() {
    let ns = good_setup("dr-subnet");
    ns.ip(&["addr", "del", &host_v4(), "dev", "tap0"]);
    ns.ip(&["addr", "add", "192.168.70.100/24", "dev", "tap0"]);
    assert_problem(
        &doctor(&ns),
        "does not hold the stack's",
        "sudo ip addr del 192.168.70.100/24 dev tap0 && sudo ip addr add",
    );
}

#[test]
fn host_has_the_stacks_address() {
    let ns = good_setup("dr-clash");
    let stack = format!("{}/{}", STACK_IPV4.address(), STACK_IPV4.prefix_len());
    ns.ip(&["addr", "add", &stack, "dev", "tap0"]);
    assert_problem(
        &doctor(&ns),
        "the stack's own address",
        &format!("sudo ip addr del {stack} dev tap0"),
    );
}

#[test]
fn another_interface_on_the_stacks_subnet() {
    let ns = good_setup("dr-other");
    ns.ip(&[
        "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
    ]);
    ns.ip(&["addr", "add", "192.168.69.7/24", "dev", "veth-a"]);
    assert_problem(
        &doctor(&ns),
        "on the stack's subnet too",
        "sudo ip addr del 192.168.69.7/24 dev veth-a",
    );
}

#[test]
fn mtu_too_small() {
    let ns = good_setup("dr-mtu");
    ns.ip(&["link", "set", "tap0", "mtu", "1000"]);
    assert_problem(
        &doctor(&ns),
        "MTU 1000",
        "sudo ip link set dev tap0 mtu 1500",
    );
}

#[test]
fn tun_instead_of_tap() {
    let ns = Netns::new("dr-tun");
    ns.ip(&["tuntap", "add", "name", "tap0", "mode", "tun"]);
    assert_problem(
        &doctor(&ns),
        "is a TUN",
        "sudo ip link del tap0 && sudo ip tuntap add name tap0 mode tap",
    );
}

#[test]
fn multi_queue_tap() {
    let ns = Netns::new("dr-mq");
    ns.ip(&[
        "tuntap",
        "add",
        "name",
        "tap0",
        "mode",
        "tap",
        "multi_queue",
    ]);
    assert_problem(
        &doctor(&ns),
        "multi-queue",
        "sudo ip link del tap0 && sudo ip tuntap add name tap0 mode tap",
    );
}

#[test]
fn not_a_tap_at_all() {
    let ns = Netns::new("dr-veth");
    ns.ip(&[
        "link",
        "add",
        "tap0",
        "type",
        "veth",
        "peer",
        "name",
        "tap0-peer",
    ]);
    assert_problem(
        &doctor(&ns),
        "is not a TUN/TAP device",
        "sudo ip link del tap0 && sudo ip tuntap add",
    );
}

#[test]
fn ipv6_disabled_on_the_tap() {
    let ns = good_setup("dr-noipv6");
    let mut sysctl = ns.command("sysctl");
    sysctl.args(["-qw", "net.ipv6.conf.tap0.disable_ipv6=1"]);
    support::assert_ok(&run(sysctl, b""), "sysctl");
    assert_problem(
        &doctor(&ns),
        "IPv6 is disabled on tap0",
        "sudo sysctl -w net.ipv6.conf.tap0.disable_ipv6=0",
    );
}

/// Another program holding the TAP (socat attached to it) blocks tapstack.
#[test]
fn tap_held_by_another_process() {
    require_tool("socat");
    let ns = good_setup("dr-held");
    let mut socat = ns.command("socat");
    socat.args([
        "-u",
        "TUN,tun-type=tap,tun-name=tap0,iff-no-pi,iff-up",
        "/dev/null",
    ]);
    let holder = crate::netns::Tool::spawn(socat);
    // The carrier comes up once socat has attached: wait for that event, bounded.
    let deadline = std::time::Instant::now() + support::BOUND;
    loop {
        let mut cat = ns.command("cat");
        cat.arg("/sys/class/net/tap0/carrier");
        if stdout(&run(cat, b"")).trim() == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "socat did not attach to tap0"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_problem(
        &doctor(&ns),
        "tap0 is held by socat (pid",
        "stop socat (pid",
    );
    drop(holder);
}

/// Runs the doctor in `ns` inside a private mount namespace whose
/// /dev/net is a fresh tmpfs prepared by `prepare` (shell), as `user`.
fn doctor_with_dev_net(ns: &Netns, prepare: &str, as_nobody: bool) -> Output {
    require_tool("unshare");
    require_tool("setpriv");
    let copy = PublicCopy::new(&support::hostnet());
    let run_as = if as_nobody {
        "setpriv --reuid=65534 --regid=65534 --clear-groups "
    } else {
        ""
    };
    let script = format!(
        "mount -t tmpfs tmpfs /dev/net && {prepare} && exec {run_as}{} doctor",
        copy.path().display()
    );
    let mut command: Command = ns.command("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    run(command, b"")
}

#[test]
fn tun_device_missing() {
    let ns = good_setup("dr-notun");
    let out = doctor_with_dev_net(&ns, "true", false);
    assert_problem(&out, "/dev/net/tun is missing", "sudo modprobe tun");
}

#[test]
fn tun_device_not_a_device() {
    let ns = good_setup("dr-tunfile");
    let out = doctor_with_dev_net(&ns, "touch /dev/net/tun", false);
    assert_problem(
        &out,
        "/dev/net/tun is not a character device",
        "sudo mknod /dev/net/tun c 10 200",
    );
}

/// An ordinary user: cannot open a 0600 /dev/net/tun, cannot attach to a
/// TAP owned by nobody in particular, cannot capture.
#[test]
fn ordinary_user_without_rights() {
    let ns = good_setup("dr-user");
    let out = doctor_with_dev_net(&ns, "mknod -m 0600 /dev/net/tun c 10 200", true);
    assert_problem(
        &out,
        "you cannot open /dev/net/tun",
        "sudo chmod 0666 /dev/net/tun",
    );
    assert_problem(
        &out,
        "cannot attach to tap0",
        "sudo ip tuntap del name tap0 mode tap && sudo ip tuntap add name tap0 mode tap user",
    );
    assert_problem(&out, "cannot capture on tap0", "sudo ");
}

/// The same user is fine once the TAP is theirs and the device is open to all.
#[test]
fn ordinary_user_with_their_own_tap() {
    let ns = Netns::new("dr-owner");
    ns.ip(&[
        "tuntap", "add", "name", "tap0", "mode", "tap", "user", "65534",
    ]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&["addr", "add", &host_v4(), "dev", "tap0"]);
    ns.ip(&["addr", "add", &host_v6(), "dev", "tap0", "nodad"]);
    let out = doctor_with_dev_net(&ns, "mknod -m 0666 /dev/net/tun c 10 200", true);
    let text = stdout(&out);
    assert!(text.contains("can attach to it without root"), "{text}");
    assert!(
        text.contains("/dev/net/tun is the TUN/TAP device and you can open it"),
        "{text}"
    );
}

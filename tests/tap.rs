//! End-to-end tests: the real `tapstack` binary on a real TAP.
//!
//! Each test makes its own network namespace, starts the binary in it with
//! `--create`, and talks to it from inside that namespace only: with the
//! tools users use (`nc`, `telnet`, `socat`, `ping`) and with `std::net`
//! sockets. They need root and the Debian packages listed in
//! `docs/testing.md`, and fail (never skip) without them. See
//! `tests/support/netns.rs` for the fixtures and their guarantees.

#[path = "support/client.rs"]
mod client;
#[path = "support/netns.rs"]
mod netns;

use client::{
    CONNECT_TIMEOUT, IO_TIMEOUT, STACK_V4, STACK_V6, TOOL_TIMEOUT, XorShift, assert_error, connect,
    shown,
};

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use netns::{
    Netns, PublicCopy, READY, READY_TIMEOUT, StackProcess, Tool, binary, require_tool, run_bounded,
};
use tapstack::config::{self, ECHO_PORT, TCP_SOCKETS_PER_SERVICE, UPPER_PORT};

/// The line the tool tests send, and what upper-case makes of it.
const LINE: &[u8] = b"Hello, World 123!\n";
const LINE_UPPER: &[u8] = b"HELLO, WORLD 123!\n";

/// Non-root user for the permission tests (Debian's `nobody`).
const NOBODY: &str = "65534";

/// The two services: port and what they do to each byte.
#[derive(Clone, Copy, Debug)]
enum Service {
    Echo,
    Upper,
}

impl Service {
    fn port(self) -> u16 {
        match self {
            Self::Echo => ECHO_PORT,
            Self::Upper => UPPER_PORT,
        }
    }

    /// The reply the service owes for `request`, computed independently of
    /// the stack's code: echo returns it, upper maps ASCII a-z to A-Z only.
    fn reply(self, request: &[u8]) -> Vec<u8> {
        match self {
            Self::Echo => request.to_vec(),
            Self::Upper => request.to_ascii_uppercase(),
        }
    }

    fn apply(self, bytes: &mut [u8]) {
        if let Self::Upper = self {
            bytes.make_ascii_uppercase();
        }
    }
}

fn v4(service: Service) -> SocketAddr {
    SocketAddr::from((STACK_V4, service.port()))
}

fn v6(service: Service) -> SocketAddr {
    SocketAddr::from((STACK_V6, service.port()))
}

/// Fails unless `out` exited with 0 and printed exactly `expected`.
fn assert_tool_output(out: &Output, expected: &[u8], what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {}, stdout {}, stderr {}",
        out.status,
        shown(&out.stdout),
        shown(&out.stderr)
    );
    assert_eq!(shown(&out.stdout), shown(expected), "{what}");
    assert_eq!(out.stdout, expected, "{what}: bytes");
}

/// Sends `len` pseudo-random bytes (from `seed`) on `stream` from one thread
/// while reading the reply on this one (the stack's windows are 16 KiB, so
/// writing everything first would stall), half-closes after the last byte,
/// and checks that the reply is exactly `service`'s transform of the input,
/// followed by EOF.
fn round_trip(stream: TcpStream, service: Service, len: usize, seed: u64) {
    let peer = stream.peer_addr().expect("a connected stream has a peer");
    let mut writer = stream.try_clone().expect("clone the stream for the writer");
    thread::scope(|scope| {
        let sender = scope.spawn(move || {
            let mut source = XorShift::new(seed);
            let mut chunk = vec![0u8; 32 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = chunk.len().min(len - sent);
                source.fill(&mut chunk[..n]);
                writer
                    .write_all(&chunk[..n])
                    .unwrap_or_else(|err| panic!("{peer}: write at byte {sent}: {err}"));
                sent += n;
            }
            writer
                .shutdown(Shutdown::Write)
                .unwrap_or_else(|err| panic!("{peer}: shutdown(Write): {err}"));
        });

        let mut reader = &stream;
        let mut expected = XorShift::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        let mut got = 0;
        loop {
            let n = reader
                .read(&mut buf)
                .unwrap_or_else(|err| panic!("{peer}: read at byte {got} of {len}: {err}"));
            if n == 0 {
                break;
            }
            assert!(
                got + n <= len,
                "{peer}: {} bytes back for {len} sent",
                got + n
            );
            expected.fill(&mut want[..n]);
            service.apply(&mut want[..n]);
            if buf[..n] != want[..n] {
                let at = buf[..n]
                    .iter()
                    .zip(&want[..n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "{peer}: byte {} is {:#04x}, expected {:#04x}",
                    got + at,
                    buf[at],
                    want[at]
                );
            }
            got += n;
        }
        assert_eq!(got, len, "{peer}: EOF after {got} of {len} bytes");
        sender
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
}

/// Sends `request`, half-closes, reads to EOF and checks the exact reply.
fn request_reply(addr: SocketAddr, service: Service, request: &[u8]) {
    let mut stream = connect(addr);
    stream
        .write_all(request)
        .unwrap_or_else(|err| panic!("{addr}: write: {err}"));
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|err| panic!("{addr}: shutdown(Write): {err}"));
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .unwrap_or_else(|err| panic!("{addr}: read: {err}"));
    assert_eq!(reply, service.reply(request), "{addr}");
}

/// Checks that an open echo connection still answers `probe` exactly.
fn assert_echoes(stream: &mut TcpStream, probe: &[u8]) {
    let peer = stream.peer_addr().expect("a connected stream has a peer");
    stream
        .write_all(probe)
        .unwrap_or_else(|err| panic!("{peer}: write: {err}"));
    let mut reply = vec![0u8; probe.len()];
    stream
        .read_exact(&mut reply)
        .unwrap_or_else(|err| panic!("{peer}: read: {err}"));
    assert_eq!(reply, probe, "{peer}");
}

// ---------------------------------------------------------------------------
// The tools users use
// ---------------------------------------------------------------------------

/// `printf 'Hello, World 123!\n' | nc -N ADDR PORT` gets the exact line back
/// from echo and the upper-cased line from upper-case, over IPv4 and IPv6,
/// and the stack closes each connection after the client half-closes (nc
/// exits by itself with 0).
#[test]
fn nc_tcp_echo_and_upper() {
    require_tool("nc");
    let ns = Netns::new("nctcp");
    let stack = StackProcess::start(&ns, &[]);
    for addr in [STACK_V4.to_string(), STACK_V6.to_string()] {
        for (service, expected) in [(Service::Echo, LINE), (Service::Upper, LINE_UPPER)] {
            let mut nc = ns.command("nc");
            nc.args(["-N", "-w", "5", &addr, &service.port().to_string()]);
            let out = run_bounded(nc, LINE, TOOL_TIMEOUT);
            assert_tool_output(&out, expected, &format!("nc -N {addr} {}", service.port()));
        }
    }
    stack.stop_cleanly();
}

/// One datagram with `nc -u` gets exactly one reply with the exact bytes,
/// from echo and upper-case, over IPv4 and IPv6. OpenBSD nc never exits on
/// its own in UDP mode (it waits for more datagrams; `-w 5` only ends it
/// after 5 s idle), so the test stops it once the reply is in.
#[test]
fn nc_udp_echo_and_upper() {
    require_tool("nc");
    let ns = Netns::new("ncudp");
    let stack = StackProcess::start(&ns, &[]);
    for addr in [STACK_V4.to_string(), STACK_V6.to_string()] {
        for (service, expected) in [(Service::Echo, LINE), (Service::Upper, LINE_UPPER)] {
            let mut command = ns.command("nc");
            command.args(["-u", "-w", "5", &addr, &service.port().to_string()]);
            let mut nc = Tool::spawn(command);
            nc.send(LINE);
            let reply = nc.read_until(|out| out.len() >= expected.len(), TOOL_TIMEOUT);
            assert_eq!(
                shown(&reply),
                shown(expected),
                "nc -u {addr} {}",
                service.port()
            );
            nc.stop();
        }
    }
    stack.stop_cleanly();
}

/// A line typed into `telnet ADDR 11111` comes back upper-cased, over IPv4
/// and IPv6: what a person trying the service by hand sees.
#[test]
fn telnet_line_comes_back_upper_cased() {
    require_tool("telnet");
    let ns = Netns::new("telnet");
    let stack = StackProcess::start(&ns, &[]);
    for addr in [STACK_V4.to_string(), STACK_V6.to_string()] {
        let mut command = ns.command("telnet");
        command.args([&addr, &UPPER_PORT.to_string()]);
        let mut telnet = Tool::spawn(command);
        let has = |needle: &'static [u8]| {
            move |out: &[u8]| out.windows(needle.len()).any(|w| w == needle)
        };
        telnet.read_until(has(b"Escape character is"), TOOL_TIMEOUT);
        telnet.send(b"hello telnet 42\n");
        let screen = telnet.read_until(has(b"HELLO TELNET 42"), TOOL_TIMEOUT);
        assert!(
            !screen.windows(12).any(|w| w == b"hello telnet"),
            "the line came back unchanged: {}",
            shown(&screen)
        );
        telnet.stop();
    }
    stack.stop_cleanly();
}

/// `socat - TCP:...` and `socat - UDP...:...` get the exact bytes from both
/// services, over IPv4 and IPv6.
#[test]
fn socat_tcp_and_udp() {
    require_tool("socat");
    let ns = Netns::new("socat");
    let stack = StackProcess::start(&ns, &[]);
    let targets = [("TCP", "192.168.69.1"), ("TCP6", "[fdaa::1]")];
    for (kind, host) in targets {
        for (service, expected) in [(Service::Echo, LINE), (Service::Upper, LINE_UPPER)] {
            let address = format!("{kind}:{host}:{}", service.port());
            let mut socat = ns.command("socat");
            // -t 5: after EOF on stdin, wait up to 5 s for the stack's FIN.
            socat.args(["-t", "5", "-T", "10", "-", &address]);
            let out = run_bounded(socat, LINE, TOOL_TIMEOUT);
            assert_tool_output(&out, expected, &format!("socat - {address}"));
        }
    }
    for (kind, host) in [("UDP", "192.168.69.1"), ("UDP6", "[fdaa::1]")] {
        for (service, expected) in [(Service::Echo, LINE), (Service::Upper, LINE_UPPER)] {
            let address = format!("{kind}:{host}:{}", service.port());
            let mut command = ns.command("socat");
            // UDP has no end: stop socat once the reply is in.
            command.args(["-T", "10", "-", &address]);
            let mut socat = Tool::spawn(command);
            socat.send(LINE);
            let reply = socat.read_until(|out| out.len() >= expected.len(), TOOL_TIMEOUT);
            assert_eq!(shown(&reply), shown(expected), "socat - {address}");
            socat.stop();
        }
    }
    stack.stop_cleanly();
}

/// Runs `ping` with `args` in `ns` and checks one request got one reply.
fn ping_once(ns: &Netns, args: &[&str]) {
    require_tool("ping");
    let mut ping = ns.command("ping");
    ping.args(args);
    let out = run_bounded(ping, b"", TOOL_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 received"),
        "ping {}: exit {}\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ping -c 1 192.168.69.1`: the very first ICMP echo request is answered
/// (ARP resolves before it, nothing is dropped while learning the host).
#[test]
fn ping_v4_first_request_answered() {
    let ns = Netns::new("ping4");
    let stack = StackProcess::start(&ns, &[]);
    ping_once(&ns, &["-c", "1", "-W", "5", "192.168.69.1"]);
    stack.stop_cleanly();
}

/// `ping -6 -c 1 fdaa::1`: the very first ICMPv6 echo request is answered
/// (neighbour discovery resolves before it; the host's address is usable at
/// once because `--create` turned DAD off).
#[test]
fn ping_v6_first_request_answered() {
    let ns = Netns::new("ping6");
    let stack = StackProcess::start(&ns, &[]);
    ping_once(&ns, &["-6", "-c", "1", "-W", "5", "fdaa::1"]);
    stack.stop_cleanly();
}

// ---------------------------------------------------------------------------
// std::net clients: volume, concurrency, limits
// ---------------------------------------------------------------------------

/// 10 MB is the volume the issue asks for.
const BIG: usize = 10 * 1000 * 1000;

/// 10 MB of pseudo-random bytes through TCP echo over IPv4 come back byte
/// exact and in order, then EOF after the client's FIN.
#[test]
fn tcp_echo_10_mb_v4() {
    let ns = Netns::new("big4");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| round_trip(connect(v4(Service::Echo)), Service::Echo, BIG, 0x5eed_0001));
    stack.stop_cleanly();
}

/// With `--busy-poll 50` (poll without sleeping for 50 µs after a frame)
/// the stack serves the same bytes: 10 MB of echo over IPv4, byte-exact, and
/// the TAP created with room for the stack's windows (qlen 10000).
#[test]
fn busy_poll_serves_the_same_bytes() {
    let ns = Netns::new("busy");
    let stack = StackProcess::start(&ns, &["--busy-poll", "50"]);
    let link = ns.ip(&["link", "show", "tap0"]);
    assert!(link.contains(" qlen 10000"), "{link}");
    ns.run(|| round_trip(connect(v4(Service::Echo)), Service::Echo, BIG, 0x5eed_0003));
    stack.stop_cleanly();
}

/// 10 MB of pseudo-random bytes through TCP upper-case over IPv6 come back
/// as exactly the input with a-z mapped to A-Z and every other byte intact.
#[test]
fn tcp_upper_10_mb_v6() {
    let ns = Netns::new("big6");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        round_trip(
            connect(v6(Service::Upper)),
            Service::Upper,
            BIG,
            0x5eed_0002,
        )
    });
    stack.stop_cleanly();
}

/// 16 clients per TCP service (32 in all, echo and upper-case, IPv4 and
/// IPv6 mixed; as many as the pool holds in a build with a smaller one),
/// all connected before any sends, each move 256 KiB at the
/// same time and each gets its own bytes back exactly: connections do not
/// mix, starve or lose data.
#[test]
fn tcp_16_concurrent_clients_per_service() {
    const CLIENTS: usize = if TCP_SOCKETS_PER_SERVICE < 16 {
        TCP_SOCKETS_PER_SERVICE
    } else {
        16
    };
    const EACH: usize = 256 * 1024;
    let ns = Netns::new("conc");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            for service in [Service::Echo, Service::Upper] {
                let addr = if i % 2 == 0 { v4(service) } else { v6(service) };
                clients.push((connect(addr), service));
            }
        }
        thread::scope(|scope| {
            let running: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(n, (stream, service))| {
                    scope.spawn(move || round_trip(stream, service, EACH, 0xc0ffee + n as u64))
                })
                .collect();
            for client in running {
                client
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
        });
    });
    stack.stop_cleanly();
}

/// 1000 datagrams of 9 to 1408 bytes (or to the largest datagram the build
/// takes, `UDP_RX_BUFFER`) to each UDP service, over IPv4 and
/// IPv6 (4000 in all), one at a time: each gets exactly one reply with the
/// exact bytes. Over a TAP in a private namespace nothing is lost, so the
/// test allows no loss at all.
#[test]
fn udp_1000_datagrams_per_service() {
    const DATAGRAMS: usize = 1000;
    /// Stop waiting after this many silent datagrams: the stack is not answering.
    const MAX_WAITS: usize = 10;
    let ns = Netns::new("udp");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(120);
        for (n, addr) in [
            v4(Service::Echo),
            v6(Service::Echo),
            v4(Service::Upper),
            v6(Service::Upper),
        ]
        .into_iter()
        .enumerate()
        {
            let service = if addr.port() == ECHO_PORT {
                Service::Echo
            } else {
                Service::Upper
            };
            let local: SocketAddr = if addr.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).expect("bind a UDP socket");
            socket.connect(addr).expect("connect a UDP socket");
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("set a read timeout");
            let mut source = XorShift::new(0xda7a + n as u64);
            let mut reply = vec![0u8; 2048];
            // Datagrams that got no reply within 2 s, and replies that came
            // late or twice. Counted rather than failed at once, so a failure
            // says how many; bounded, so a dead stack fails in seconds.
            let mut lost = Vec::new();
            let mut stray = 0;
            for i in 0..DATAGRAMS {
                assert!(
                    Instant::now() < deadline,
                    "{addr}: over the time bound at datagram {i}"
                );
                if lost.len() >= MAX_WAITS {
                    break;
                }
                // An 8-digit sequence number (digits survive upper-case) and
                // 1 to 1400 random bytes.
                let mut request = format!("{i:08}").into_bytes();
                let start = request.len();
                let most = 1400.min(config::UDP_RX_BUFFER - start - 1);
                request.resize(start + 1 + (i * 37) % most, 0);
                source.fill(&mut request[start..]);
                socket
                    .send(&request)
                    .unwrap_or_else(|err| panic!("{addr}: send {i}: {err}"));
                loop {
                    match socket.recv(&mut reply) {
                        Ok(n) if n >= 8 && reply[..8] == request[..8] => {
                            assert_eq!(
                                &reply[..n],
                                service.reply(&request).as_slice(),
                                "{addr}: reply to datagram {i}"
                            );
                            break;
                        }
                        Ok(_) => {
                            stray += 1;
                            assert!(Instant::now() < deadline, "{addr}: flooded with stray replies");
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            lost.push(i);
                            break;
                        }
                        Err(err) => panic!("{addr}: recv {i}: {err}"),
                    }
                }
            }
            assert!(
                lost.is_empty() && stray == 0,
                "{addr}: {} of {DATAGRAMS} datagrams got no reply (the first: {:?}), {stray} stray replies",
                lost.len(),
                &lost[..lost.len().min(10)]
            );
        }
    });
    stack.stop_cleanly();
}

/// 500 connections one after another to echo (IPv4 and IPv6 alternating):
/// connect, send, half-close, read to EOF, close. None is refused and each
/// gets its bytes back: the pool re-arms finished sockets faster than a
/// client can come back.
#[test]
fn tcp_500_back_to_back_connections() {
    let ns = Netns::new("b2b");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        for i in 0..500 {
            let addr = if i % 2 == 0 {
                v4(Service::Echo)
            } else {
                v6(Service::Echo)
            };
            request_reply(addr, Service::Echo, format!("connection {i}\n").as_bytes());
        }
    });
    stack.stop_cleanly();
}

/// Half-close: a client sends 100 KB, shuts down its sending side, and
/// still reads every byte of the answer before the stack's FIN, on both
/// services and both address families.
#[test]
fn tcp_half_close_returns_every_byte() {
    let ns = Netns::new("half");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        for (n, addr) in [
            v4(Service::Echo),
            v6(Service::Echo),
            v4(Service::Upper),
            v6(Service::Upper),
        ]
        .into_iter()
        .enumerate()
        {
            let service = if addr.port() == ECHO_PORT {
                Service::Echo
            } else {
                Service::Upper
            };
            round_trip(connect(addr), service, 100 * 1000, 0x4a1f + n as u64);
        }
    });
    stack.stop_cleanly();
}

/// The pool: echo holds `TCP_SOCKETS_PER_SERVICE` connections at once; one
/// more is refused at once (RST, `ECONNREFUSED`, not a timeout), over IPv4
/// and IPv6; the open ones keep working, the other service is unaffected,
/// and closing one frees a slot for the next client.
#[test]
fn tcp_pool_full_refuses_then_recovers() {
    let ns = Netns::new("pool");
    let stack = StackProcess::start(&ns, &[]);
    ns.run(|| {
        let mut open: Vec<TcpStream> = (0..TCP_SOCKETS_PER_SERVICE)
            .map(|i| {
                let mut stream = connect(if i % 2 == 0 {
                    v4(Service::Echo)
                } else {
                    v6(Service::Echo)
                });
                assert_echoes(&mut stream, format!("slot {i}\n").as_bytes());
                stream
            })
            .collect();

        let refused = |addr: SocketAddr| match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(err) => panic!("{addr}: connect with a full pool should be refused, got: {err}"),
            Ok(_) => panic!(
                "{addr}: connect number {} succeeded with a full pool",
                TCP_SOCKETS_PER_SERVICE + 1
            ),
        };
        refused(v4(Service::Echo));
        refused(v6(Service::Echo));

        for (i, stream) in open.iter_mut().enumerate() {
            assert_echoes(stream, format!("still slot {i}\n").as_bytes());
        }
        request_reply(v4(Service::Upper), Service::Upper, b"other pool\n");

        // Close one politely: our FIN, the stack's FIN, our ACK.
        let mut closing = open.pop().expect("the pool is not empty");
        closing.shutdown(Shutdown::Write).expect("shutdown(Write)");
        let mut rest = Vec::new();
        closing
            .read_to_end(&mut rest)
            .expect("read to the stack's FIN");
        assert!(rest.is_empty(), "nothing was pending: {}", shown(&rest));
        drop(closing);

        // The slot is free once the stack has processed our last ACK, which
        // can reach it in the same batch as the next SYN: retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut again = loop {
            match TcpStream::connect_timeout(&v4(Service::Echo), CONNECT_TIMEOUT) {
                Ok(stream) => break stream,
                Err(err)
                    if err.kind() == io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(err) => panic!("connect after closing one connection: {err}"),
            }
        };
        again
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set a read timeout");
        again
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set a write timeout");
        assert_echoes(&mut again, b"a freed slot\n");
        refused(v6(Service::Echo));
    });
    stack.stop_cleanly();
}

/// `--tap`, `--echo-port` and `--upper-port` are honoured: the stack
/// creates the named TAP and serves on the given ports.
#[test]
fn custom_tap_and_ports() {
    require_tool("nc");
    let ns = Netns::new("custom");
    let stack = StackProcess::start(
        &ns,
        &[
            "--tap",
            "tapcustom",
            "--echo-port",
            "7007",
            "--upper-port",
            "7011",
        ],
    );
    assert!(ns.link_exists("tapcustom"), "no tapcustom in {}", ns.name());
    assert!(!ns.link_exists("tap0"), "tap0 was created too");
    for (port, expected) in [("7007", LINE), ("7011", LINE_UPPER)] {
        let mut nc = ns.command("nc");
        nc.args(["-N", "-w", "5", "192.168.69.1", port]);
        let out = run_bounded(nc, LINE, TOOL_TIMEOUT);
        assert_tool_output(&out, expected, &format!("nc -N 192.168.69.1 {port}"));
    }
    stack.stop_cleanly();
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

/// `tapstack: ready` means the host side is usable at once: its IPv6
/// address is not tentative (DAD off), and the first connections right
/// after the line go out from the host-side addresses, 192.168.69.100 and
/// fdaa::100. (If the line came while fdaa::100 was still tentative, Linux
/// would pick another source, even `::1`, and the connection would hang.)
#[test]
fn ready_means_host_side_usable() {
    let ns = Netns::new("ready");
    let stack = StackProcess::start(&ns, &[]);
    let addresses = ns.ip(&["-6", "addr", "show", "dev", "tap0"]);
    assert!(
        addresses.contains("fdaa::100/64") && !addresses.contains("tentative"),
        "host side not ready for IPv6 at `{}`:\n{addresses}",
        netns::READY
    );
    ns.run(|| {
        for (addr, host) in [
            (v6(Service::Echo), "fdaa::100"),
            (v4(Service::Echo), "192.168.69.100"),
        ] {
            let stream = connect(addr);
            let local = stream
                .local_addr()
                .expect("a connected stream has an address");
            assert_eq!(
                local.ip().to_string(),
                host,
                "source address towards {addr}"
            );
            request_reply(addr, Service::Echo, b"ready\n");
        }
    });
    stack.stop_cleanly();
}

/// Starts a stack, checks what `--create` set up, stops it with `signal`
/// and checks it exits with 0 and its TAP is gone.
fn stop_with_signal(signal: libc::c_int, tag: &str) {
    let ns = Netns::new(tag);
    let stack = StackProcess::start(&ns, &[]);
    assert!(
        ns.link_exists("tap0"),
        "--create made no tap0 in {}",
        ns.name()
    );
    let addresses = ns.ip(&["addr", "show", "dev", "tap0"]);
    for host in ["192.168.69.100/24", "fdaa::100/64"] {
        assert!(
            addresses.contains(host),
            "host side lacks {host}:\n{addresses}"
        );
    }
    assert!(
        !addresses.contains("tentative"),
        "DAD still running on the host side:\n{addresses}"
    );
    let stderr_before = stack.stderr();
    let status = stack.stop_with(signal);
    assert_eq!(
        status.code(),
        Some(0),
        "exit after signal {signal}: {status}; stderr {stderr_before:?}"
    );
    assert!(
        !ns.link_exists("tap0"),
        "tap0 is still there after the stack exited"
    );
}

/// SIGTERM ends the stack with exit code 0 and the TAP it created goes away.
#[test]
fn sigterm_exits_0_and_removes_tap() {
    stop_with_signal(libc::SIGTERM, "term");
}

/// SIGINT (Ctrl-C) ends the stack with exit code 0 and the TAP it created
/// goes away.
#[test]
fn sigint_exits_0_and_removes_tap() {
    stop_with_signal(libc::SIGINT, "int");
}

// ---------------------------------------------------------------------------
// Errors: one clear line, the right exit code, never a panic
// ---------------------------------------------------------------------------

/// Runs the binary inside `ns` with `args`, no stdin, bounded.
fn run_stack(ns: &Netns, args: &[&str]) -> Output {
    let mut command = ns.command(binary());
    command.args(args);
    run_bounded(command, b"", TOOL_TIMEOUT)
}

/// Every kind of bad value on the command line exits with 2 and one line
/// that names the flag. Run inside a namespace all the same, in case a value
/// were wrongly accepted.
#[test]
fn bad_values_exit_2_naming_the_flag() {
    let ns = Netns::new("badval");
    let cases: &[(&[&str], &str)] = &[
        (&["--ipv4", "192.168.69.1"], "--ipv4"),
        (&["--ipv4", "192.168.69.1/33"], "--ipv4"),
        (&["--ipv4", "300.1.1.1/24"], "--ipv4"),
        (&["--ipv6", "fdaa::1"], "--ipv6"),
        (&["--ipv6", "fdaa:::1/64"], "--ipv6"),
        (&["--gateway", "192.168.69"], "--gateway"),
        (&["--gateway6", "fdaa::zz"], "--gateway6"),
        (&["--host-ipv4", "192.168.69.100"], "--host-ipv4"),
        (&["--host-ipv6", "fdaa::100/129"], "--host-ipv6"),
        (&["--mac", "zz:00:00:00:00:01"], "--mac"),
        (&["--mac", "02:00:00:00:01"], "--mac"),
        (&["--mac", "01:00:5e:00:00:01"], "--mac"),
        (&["--echo-port", "0"], "--echo-port"),
        (&["--echo-port", "70000"], "--echo-port"),
        (&["--upper-port", "seven"], "--upper-port"),
        (&["--discard-port", "0"], "--discard-port"),
        (&["--chargen-port", "x"], "--chargen-port"),
        (&["--busy-poll", "1001"], "--busy-poll"),
        (&["--busy-poll", "-1"], "--busy-poll"),
    ];
    for (args, flag) in cases {
        let out = run_stack(&ns, args);
        assert_error(&out, 2, &[flag], &format!("tapstack {}", args.join(" ")));
    }
    assert!(
        !ns.link_exists("tap0"),
        "a rejected command line created tap0"
    );
}

/// Values that are each well-formed but do not fit together are refused
/// the same way: exit 2, one line that says what is wrong.
#[test]
fn inconsistent_values_exit_2() {
    let ns = Netns::new("incons");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--echo-port", "7", "--upper-port", "7"],
            &["--echo-port", "--upper-port"],
        ),
        (&["--gateway", "10.0.0.1"], &["gateway"]),
        (&["--gateway6", "fdbb::1"], &["gateway"]),
        (&["--ipv4", "192.168.69.0/24"], &["IPv4"]),
    ];
    for (args, needles) in cases {
        let out = run_stack(&ns, args);
        assert_error(&out, 2, needles, &format!("tapstack {}", args.join(" ")));
    }
}

/// An unknown flag is a command-line error like a bad value: exit 2, one
/// line naming it.
#[test]
fn unknown_flag_exits_2() {
    let ns = Netns::new("unknown");
    let out = run_stack(&ns, &["--no-such-flag"]);
    assert_error(&out, 2, &["--no-such-flag"], "tapstack --no-such-flag");
}

/// Without `--create` the binary never creates a TAP: a missing one is an
/// environment error (exit 1) whose message says so and names `--create`.
#[test]
fn missing_tap_without_create() {
    let ns = Netns::new("notap");
    let out = run_stack(&ns, &["--tap", "tap0"]);
    assert_error(
        &out,
        1,
        &["does not exist", "--create"],
        "tapstack --tap tap0 (no tap0)",
    );
    assert!(!ns.link_exists("tap0"), "tap0 was created without --create");
}

/// A TAP another tapstack is attached to is refused (exit 1, "in use"),
/// with or without `--create`, and the first stack keeps serving.
#[test]
fn tap_in_use_by_another_stack() {
    require_tool("nc");
    let ns = Netns::new("inuse");
    let first = StackProcess::start(&ns, &["--tap", "tapuse"]);
    for args in [
        &["--tap", "tapuse"][..],
        &["--create", "--tap", "tapuse"][..],
    ] {
        let out = run_stack(&ns, args);
        assert_error(
            &out,
            1,
            &["in use"],
            &format!("second tapstack {}", args.join(" ")),
        );
    }
    let mut nc = ns.command("nc");
    nc.args(["-N", "-w", "5", "192.168.69.1", "7"]);
    assert_tool_output(
        &run_bounded(nc, LINE, TOOL_TIMEOUT),
        LINE,
        "first stack after the second failed",
    );
    first.stop_cleanly();
}

/// Runs the binary as `nobody` inside `ns`, in a private mount namespace
/// whose `/dev/net/tun` is a fresh node of the tun device (10, 200) with
/// `tun_mode`: 0666 (Debian's default) isolates the TAP's own permission
/// checks from the device's, 0600 makes opening the device itself fail.
fn run_as_nobody(ns: &Netns, tun_mode: &str, args: &str) -> Output {
    require_tool("unshare");
    require_tool("mount");
    require_tool("setpriv");
    let copy = PublicCopy::new(&binary());
    let script = format!(
        "mount -t tmpfs -o mode=0755 none /dev/net && mknod -m {tun_mode} /dev/net/tun c 10 200 && \
         exec setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups '{}' {args}",
        copy.path().display()
    );
    let mut command = ns.command("unshare");
    command.args(["--mount", "sh", "-c", &script]);
    run_bounded(command, b"", TOOL_TIMEOUT)
}

/// Without root, as the README's "Without root" section says: root creates
/// a persistent TAP owned by the user once (`ip tuntap add ... user`), and
/// the user's tapstack attaches to it, serves, and leaves it in place on exit.
/// (`/dev/net/tun` is given Debian's default mode 0666 in a private mount
/// namespace, since some containers ship it 0600.)
#[test]
fn runs_without_root_on_a_tap_owned_by_the_user() {
    require_tool("unshare");
    require_tool("setpriv");
    let ns = Netns::new("owned");
    ns.ip(&[
        "tuntap", "add", "name", "tap0", "mode", "tap", "user", NOBODY,
    ]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns.ip(&["addr", "add", "192.168.69.100/24", "dev", "tap0"]);
    ns.ip(&["addr", "add", "fdaa::100/64", "dev", "tap0", "nodad"]);
    let copy = PublicCopy::new(&binary());
    let script = format!(
        "mount -t tmpfs -o mode=0755 none /dev/net && mknod -m 0666 /dev/net/tun c 10 200 && \
         exec setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups '{}' --tap tap0",
        copy.path().display()
    );
    let mut command = ns.command("unshare");
    command.args(["--mount", "sh", "-c", &script]);
    let mut stack = Tool::spawn(command);
    let banner = stack.read_until(
        |out| String::from_utf8_lossy(out).contains(READY),
        READY_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&banner).contains("on TAP tap0 (existing)"),
        "{}",
        shown(&banner)
    );

    for addr in ["192.168.69.1", "fdaa::1"] {
        let mut nc = ns.command("nc");
        nc.args(["-N", "-w", "5", addr, "11111"]);
        assert_tool_output(
            &run_bounded(nc, b"no root needed\n", TOOL_TIMEOUT),
            b"NO ROOT NEEDED\n",
            &format!("upper-case over {addr} from a stack run as nobody"),
        );
    }
    let out = stack.stop();
    assert!(
        out.status.success(),
        "exit {} stderr {}",
        out.status,
        shown(&out.stderr)
    );
    assert!(
        ns.link_exists("tap0"),
        "the TAP it did not create must stay"
    );
}

/// An unprivileged user who can open `/dev/net/tun` still cannot attach to
/// a TAP owned by another user (root): exit 1 and a message about
/// permission that names the TAP (not the device). (A TAP made without
/// `user`/`group` has no owner, and the kernel lets anyone attach to it.)
#[test]
fn tap_without_permission() {
    let ns = Netns::new("perm");
    ns.ip(&[
        "tuntap", "add", "name", "tapperm", "mode", "tap", "user", "0",
    ]);
    let out = run_as_nobody(&ns, "0666", "--tap tapperm");
    assert_error(
        &out,
        1,
        &["permission", "tapperm"],
        "tapstack --tap tapperm as nobody",
    );
}

/// An unprivileged user cannot `--create` a TAP: exit 1 and a message about
/// permission that names the TAP, and nothing is created.
#[test]
fn create_without_permission() {
    let ns = Netns::new("permc");
    let out = run_as_nobody(&ns, "0666", "--create --tap tapnew");
    assert_error(
        &out,
        1,
        &["permission", "tapnew"],
        "tapstack --create --tap tapnew as nobody",
    );
    assert!(!ns.link_exists("tapnew"), "nobody created tapnew");
}

/// With no `/dev/net/tun` (hidden by a private mount namespace) the message
/// names the device (exit 1), whether the TAP exists or is to be created.
#[test]
fn dev_net_tun_missing() {
    require_tool("unshare");
    require_tool("mount");
    let ns = Netns::new("notun");
    ns.ip(&["tuntap", "add", "name", "tap0", "mode", "tap"]);
    let bin = binary();
    for args in ["--tap tap0", "--create --tap tapnew"] {
        let script = format!(
            "mount -t tmpfs none /dev/net && exec '{}' {args}",
            bin.display()
        );
        let mut command = ns.command("unshare");
        command.args(["--mount", "sh", "-c", &script]);
        let out = run_bounded(command, b"", TOOL_TIMEOUT);
        assert_error(
            &out,
            1,
            &["/dev/net/tun"],
            &format!("tapstack {args} without /dev/net/tun"),
        );
    }
}

/// A `/dev/net/tun` the user may not open (mode 0600, owned by root) gives
/// exit 1 and a message that names the device and the permission problem.
#[test]
fn dev_net_tun_not_accessible() {
    let ns = Netns::new("tun600");
    ns.ip(&["tuntap", "add", "name", "tap0", "mode", "tap"]);
    let out = run_as_nobody(&ns, "0600", "--tap tap0");
    assert_error(
        &out,
        1,
        &["/dev/net/tun", "permission"],
        "tapstack as nobody with /dev/net/tun 0600",
    );
}

//! In-memory integration tests: no root, no TAP, fully deterministic.
//!
//! The stack under test ([`tapstack::Stack`], exactly as the binary runs it)
//! and a plain smoltcp "host" interface are joined by a virtual Ethernet wire
//! and share a virtual clock. The clock only moves when the wire is idle and
//! nobody has work to do, so a test can tell "answered at once" from "answered
//! after a timer". The wire can drop frames with a seeded generator.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test, with its place.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
};
use static_cell::ConstStaticCell;
use tapstack::config::{
    self, CHARGEN_PORT, DISCARD_PORT, ECHO_PORT, TCP_SOCKETS_PER_SERVICE, UPPER_PORT,
};
use tapstack::services::chargen::{self, PATTERN, PERIOD};
use tapstack::{Buffers, Settings, Sockets, Stack};

/// Ethernet frame MTU of the virtual wire (IP MTU 1500, like a TAP).
const WIRE_MTU: usize = 1514;
/// Host-side TCP socket buffers: bigger than the stack's, so the stack is the bottleneck.
const HOST_TCP_BUFFER: usize = 128 * 1024;
/// Upper bound on harness steps in one wait, so a broken stack fails instead of hanging.
const MAX_STEPS: usize = 200_000;

/// A small deterministic generator (xorshift64*) for payloads and loss.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
}

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// Host-side socket memory. The host is test code, so it may allocate; the
/// sockets borrow for `'static` (smoltcp is built without `alloc`), and a
/// test's few megabytes are freed when the test process exits.
fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Vec::leak(v)
}

/// One end of the wire: receives from `rx`, sends into `tx`.
struct End {
    rx: Queue,
    tx: Queue,
    /// Drop one frame in `loss_per_mille` thousand, decided by `rng`.
    loss: Option<(Rc<RefCell<Rng>>, u64)>,
    /// Copy of every frame this end sent, when recording.
    sent: Option<Rc<RefCell<Vec<Vec<u8>>>>>,
}

impl Device for End {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((RxToken(frame), TxToken(self)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = WIRE_MTU;
        caps
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a>(&'a mut End);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        if let Some(sent) = &self.0.sent {
            sent.borrow_mut().push(frame.clone());
        }
        let lost = self
            .0
            .loss
            .as_ref()
            .is_some_and(|(rng, per_mille)| rng.borrow_mut().next() % 1000 < *per_mille);
        if !lost {
            self.0.tx.borrow_mut().push_back(frame);
        }
        result
    }
}

/// Fresh, test-local memory for one stack: each expansion is its own pair of statics.
macro_rules! stack_memory {
    () => {{
        static SOCKETS: ConstStaticCell<Sockets<'static>> = ConstStaticCell::new(Sockets::new());
        static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers::new());
        (SOCKETS.take(), BUFFERS.take())
    }};
}

/// The stack under test, a host interface, the wire between them, the clock.
struct Net {
    now: Instant,
    stack: Stack<'static>,
    stack_end: End,
    host: Interface,
    host_sockets: SocketSet<'static>,
    host_end: End,
    /// Times the clock had to jump because nothing could move without a timer.
    timer_waits: usize,
}

impl Net {
    fn new(memory: (&'static mut Sockets<'static>, &'static mut Buffers)) -> Self {
        Self::with_loss(memory, 0, 0)
    }

    /// `loss_per_mille` of the frames in each direction are dropped, chosen by `seed`.
    fn with_loss(
        memory: (&'static mut Sockets<'static>, &'static mut Buffers),
        loss_per_mille: u64,
        seed: u64,
    ) -> Self {
        Self::with_settings(
            memory,
            Settings {
                random_seed: 42,
                ..Settings::default()
            },
            loss_per_mille,
            seed,
        )
    }

    /// A stack with these settings (fault injection, ports) on a wire that
    /// drops `loss_per_mille` frames itself.
    fn with_settings(
        memory: (&'static mut Sockets<'static>, &'static mut Buffers),
        settings: Settings,
        loss_per_mille: u64,
        seed: u64,
    ) -> Self {
        let to_stack: Queue = Rc::default();
        let to_host: Queue = Rc::default();
        let rng = Rc::new(RefCell::new(Rng(seed | 1)));
        let loss = (loss_per_mille > 0).then_some((rng, loss_per_mille));
        let mut stack_end = End {
            rx: to_stack.clone(),
            tx: to_host.clone(),
            loss: loss.clone(),
            sent: None,
        };
        let mut host_end = End {
            rx: to_host,
            tx: to_stack,
            loss,
            sent: None,
        };

        let now = Instant::from_millis(0);
        let (sockets, buffers) = memory;
        let stack = Stack::new(&settings, sockets, buffers, &mut stack_end, now)
            .expect("default settings are valid");

        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([
            0x02, 0, 0, 0, 0, 0x64,
        ])));
        config.random_seed = 7;
        let mut host = Interface::new(config, &mut host_end, now);
        host.update_ip_addrs(|ips| {
            ips.push(IpCidr::Ipv4(config::HOST_IPV4)).unwrap();
            ips.push(IpCidr::Ipv6(config::HOST_IPV6)).unwrap();
        });
        let storage: &'static mut [SocketStorage<'static>] =
            leak((0..64).map(|_| SocketStorage::EMPTY).collect());
        Self {
            now,
            stack,
            stack_end,
            host,
            host_sockets: SocketSet::new(storage),
            host_end,
            timer_waits: 0,
        }
    }

    /// Polls both sides once; if nothing is on the wire, moves the clock to
    /// the next deadline (at most 10 ms).
    fn step(&mut self) {
        let stack_delay = self.stack.poll(self.now, &mut self.stack_end);
        self.host
            .poll(self.now, &mut self.host_end, &mut self.host_sockets);
        let wire_idle =
            self.stack_end.rx.borrow().is_empty() && self.host_end.rx.borrow().is_empty();
        if wire_idle {
            let host_delay = self.host.poll_delay(self.now, &self.host_sockets);
            let wait = [stack_delay, host_delay, Some(Duration::from_millis(10))]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            let wait = wait.max(Duration::from_micros(100));
            self.now += wait;
            self.timer_waits += 1;
        }
    }

    /// Steps until `done` holds; panics after [`MAX_STEPS`].
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        for _ in 0..MAX_STEPS {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("gave up waiting for: {what}");
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.host_sockets.get_mut::<tcp::Socket>(h)
    }

    fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.host_sockets.get_mut::<udp::Socket>(h)
    }

    /// Starts a TCP connection from the host to `remote`.
    fn connect(&mut self, remote: (IpAddress, u16), local_port: u16) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(leak(vec![0u8; HOST_TCP_BUFFER]));
        let tx = tcp::SocketBuffer::new(leak(vec![0u8; HOST_TCP_BUFFER]));
        let mut socket = tcp::Socket::new(rx, tx);
        socket.set_ack_delay(None);
        let h = self.host_sockets.add(socket);
        let cx = self.host.context();
        self.host_sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, remote, local_port)
            .expect("connect");
        h
    }

    /// Connects and waits for ESTABLISHED.
    fn established(&mut self, remote: (IpAddress, u16), local_port: u16) -> SocketHandle {
        let h = self.connect(remote, local_port);
        self.run_until("ESTABLISHED", |n| n.tcp(h).state() != tcp::State::SynSent);
        assert_eq!(
            self.tcp(h).state(),
            tcp::State::Established,
            "connect to {remote:?}"
        );
        h
    }

    /// Sends `data` on an open connection, half-closes, and returns every
    /// byte received until the stack's FIN. Sends and receives at once.
    fn exchange(&mut self, h: SocketHandle, data: &[u8]) -> Vec<u8> {
        let mut sent = 0;
        let mut got = Vec::with_capacity(data.len());
        let mut closed = false;
        self.run_until("the whole reply and the stack's FIN", |n| {
            let s = n.tcp(h);
            if sent < data.len() && s.can_send() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            if sent == data.len() && !closed {
                s.close();
                closed = true;
            }
            while s.can_recv() {
                s.recv(|buf| {
                    got.extend_from_slice(buf);
                    (buf.len(), ())
                })
                .unwrap();
            }
            closed && !s.may_recv()
        });
        got
    }

    /// Sends one datagram from `local_port` and waits for one answer.
    fn datagram(
        &mut self,
        remote: (IpAddress, u16),
        local_port: u16,
        data: &[u8],
    ) -> (Vec<u8>, IpEndpoint) {
        let rx = udp::PacketBuffer::new(
            leak(vec![udp::PacketMetadata::EMPTY; 4]),
            leak(vec![0u8; 4096]),
        );
        let tx = udp::PacketBuffer::new(
            leak(vec![udp::PacketMetadata::EMPTY; 4]),
            leak(vec![0u8; 4096]),
        );
        let h = self.host_sockets.add(udp::Socket::new(rx, tx));
        self.udp(h).bind(local_port).unwrap();
        self.udp(h).send_slice(data, remote).unwrap();
        self.run_until("a datagram back", |n| n.udp(h).can_recv());
        let (payload, meta) = self.udp(h).recv().unwrap();
        let answer = (payload.to_vec(), meta.endpoint);
        self.host_sockets.remove(h);
        answer
    }
}

fn v4() -> IpAddress {
    IpAddress::Ipv4(config::STACK_IPV4.address())
}

fn v6() -> IpAddress {
    IpAddress::Ipv6(config::STACK_IPV6.address())
}

fn upper(data: &[u8]) -> Vec<u8> {
    data.to_ascii_uppercase()
}

/// Echo and upper-case over TCP, IPv4 and IPv6: exact bytes back, then the
/// stack closes after the host half-closes.
#[test]
fn tcp_services_v4_and_v6() {
    let mut net = Net::new(stack_memory!());
    let line = b"Hello, World 123! \xc3\xa9\r\n";
    for (i, addr) in [v4(), v6()].into_iter().enumerate() {
        let port = 40000 + i as u16 * 2;
        let h = net.established((addr, ECHO_PORT), port);
        assert_eq!(net.exchange(h, line), line, "echo over {addr}");
        let h = net.established((addr, UPPER_PORT), port + 1);
        assert_eq!(
            net.exchange(h, line),
            b"HELLO, WORLD 123! \xc3\xa9\r\n",
            "upper-case over {addr}"
        );
    }
}

/// Echo and upper-case over UDP, IPv4 and IPv6: one datagram in, the same
/// datagram (transformed) out, from the service's port to the sender's port.
#[test]
fn udp_services_v4_and_v6() {
    let mut net = Net::new(stack_memory!());
    let mut rng = Rng(5);
    let binary = rng.bytes(config::UDP_RX_BUFFER.min(1000));
    for addr in [v4(), v6()] {
        for (port, data) in [
            (ECHO_PORT, &b"MixedCaseString"[..]),
            (UPPER_PORT, b"MixedCaseString"),
            (ECHO_PORT, &binary),
            (UPPER_PORT, &binary),
        ] {
            let (answer, from) = net.datagram((addr, port), 50000, data);
            let expected = if port == UPPER_PORT {
                upper(data)
            } else {
                data.to_vec()
            };
            assert_eq!(answer, expected, "{addr} port {port}");
            assert_eq!(from, IpEndpoint::new(addr, port));
        }
    }
}

/// Discard over TCP, IPv4 and IPv6: 1 MiB goes in, nothing comes back, and
/// the stack closes once the client has. Chargen: the pattern, byte-exact
/// from the first byte, for as long as the client reads; the stack closes
/// when the client does.
#[test]
fn discard_and_chargen_over_tcp() {
    let mut net = Net::new(stack_memory!());
    let data = Rng(13).bytes(1024 * 1024);
    for (i, addr) in [v4(), v6()].into_iter().enumerate() {
        let port = 42000 + i as u16 * 2;
        let before = net.stack.counters().tcp_closed;
        let h = net.established((addr, DISCARD_PORT), port);
        assert_eq!(net.exchange(h, &data), b"", "discard over {addr}");
        net.run_until("discard's socket closed", |n| {
            n.stack.counters().tcp_closed > before
        });

        let h = net.established((addr, CHARGEN_PORT), port + 1);
        let want = 300_000;
        let mut got = Vec::with_capacity(want + HOST_TCP_BUFFER);
        net.run_until("300 kB of chargen", |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                s.recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
            got.len() >= want
        });
        for (j, b) in got.iter().enumerate() {
            assert_eq!(*b, PATTERN[j % PERIOD], "chargen over {addr}: byte {j}");
        }
        // The client closes; the stack sends what it had queued, then its FIN.
        net.tcp(h).close();
        net.run_until("chargen's FIN", |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                s.recv(|b| (b.len(), ())).unwrap();
            }
            !s.may_recv()
        });
        net.run_until("chargen's socket free again", |n| {
            n.stack.tcp_in_use(CHARGEN_PORT) == 0
        });
    }
}

/// Discard over UDP answers nothing; chargen answers each datagram with the
/// next line of the pattern, from port 19 to the sender.
#[test]
fn discard_and_chargen_over_udp() {
    let mut net = Net::new(stack_memory!());
    for (i, addr) in [v4(), v6()].into_iter().enumerate() {
        for k in 0..3 {
            let (answer, from) = net.datagram((addr, CHARGEN_PORT), 50100 + k, b"x");
            assert_eq!(
                answer,
                chargen::line(i * 3 + k as usize),
                "{addr}, datagram {k}"
            );
            assert_eq!(from, IpEndpoint::new(addr, CHARGEN_PORT));
        }
    }
    let rx = udp::PacketBuffer::new(
        leak(vec![udp::PacketMetadata::EMPTY; 4]),
        leak(vec![0u8; 4096]),
    );
    let tx = udp::PacketBuffer::new(
        leak(vec![udp::PacketMetadata::EMPTY; 4]),
        leak(vec![0u8; 4096]),
    );
    let h = net.host_sockets.add(udp::Socket::new(rx, tx));
    net.udp(h).bind(50200).unwrap();
    let (udp_in, udp_out) = (net.stack.counters().udp.r#in, net.stack.counters().udp.out);
    for addr in [v4(), v6()] {
        net.udp(h)
            .send_slice(b"into the void", (addr, DISCARD_PORT))
            .unwrap();
    }
    net.run_until("both datagrams received by the stack", |n| {
        n.stack.counters().udp.r#in == udp_in + 2
    });
    for _ in 0..100 {
        net.step();
    }
    assert!(!net.udp(h).can_recv(), "discard answered");
    assert_eq!(
        net.stack.counters().udp.out,
        udp_out,
        "the stack sent a datagram"
    );
}

/// 1 MB of pseudo-random bytes through each TCP service, byte-exact, while
/// the host sends and receives at once. The stack never waits on a timer:
/// every window update and answer leaves in the poll that made it possible.
#[test]
fn one_megabyte_byte_exact_without_stalls() {
    let mut net = Net::new(stack_memory!());
    let data = Rng(11).bytes(1024 * 1024);
    for (port, expected) in [(ECHO_PORT, data.clone()), (UPPER_PORT, upper(&data))] {
        let h = net.established((v4(), port), 41000 + port % 100);
        let waits_before = net.timer_waits;
        let got = net.exchange(h, &data);
        assert_eq!(got.len(), expected.len(), "port {port}");
        assert!(got == expected, "port {port}: bytes differ");
        // The final FIN/ACK exchange may wait once; the transfer itself never does.
        assert!(
            net.timer_waits - waits_before <= 1,
            "port {port}: {} timer waits",
            net.timer_waits - waits_before
        );
    }
}

/// A lossy wire (3% of frames dropped each way, fixed seed): TCP repairs it,
/// 256 KiB still come back byte-exact.
#[test]
fn tcp_repairs_a_lossy_wire() {
    let mut net = Net::with_loss(stack_memory!(), 30, 1234);
    let data = Rng(3).bytes(256 * 1024);
    let h = net.established((v6(), ECHO_PORT), 42000);
    assert!(net.exchange(h, &data) == data);
}

/// As many connections as the pool holds all work at once; one more is
/// refused with a reset while the others keep working; when one closes its
/// slot is re-armed at once and the next client gets in.
#[test]
fn pool_full_refuses_then_rearms() {
    let mut net = Net::new(stack_memory!());
    let handles: Vec<_> = (0..TCP_SOCKETS_PER_SERVICE)
        .map(|i| net.established((v4(), ECHO_PORT), 43000 + i as u16))
        .collect();
    assert_eq!(net.stack.tcp_in_use(ECHO_PORT), TCP_SOCKETS_PER_SERVICE);

    let extra = net.connect((v4(), ECHO_PORT), 43999);
    net.run_until("the refusal", |n| {
        n.tcp(extra).state() != tcp::State::SynSent
    });
    assert_eq!(
        net.tcp(extra).state(),
        tcp::State::Closed,
        "refused with RST"
    );
    // Upper-case has its own pool: unaffected.
    let other = net.established((v4(), UPPER_PORT), 43998);
    assert_eq!(net.exchange(other, b"still here"), b"STILL HERE");

    // Every pooled connection still echoes; the first one closes.
    for (i, &h) in handles.iter().enumerate().skip(1) {
        let msg = format!("connection {i}");
        net.tcp(h).send_slice(msg.as_bytes()).unwrap();
        let mut got = Vec::new();
        net.run_until("echo on a pooled connection", |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                s.recv(|b| {
                    got.extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
            got.len() >= msg.len()
        });
        assert_eq!(got, msg.as_bytes());
    }
    assert_eq!(net.exchange(handles[0], b"bye"), b"bye");
    net.run_until("the slot back in LISTEN", |n| {
        n.stack.tcp_in_use(ECHO_PORT) < TCP_SOCKETS_PER_SERVICE
    });
    let next = net.established((v4(), ECHO_PORT), 43997);
    assert_eq!(net.exchange(next, b"next"), b"next");
}

/// Half-close: the host sends 100 KB and shuts down its side at once; the
/// stack answers every byte, then closes, and its socket returns to the pool.
#[test]
fn half_close_loses_nothing() {
    let mut net = Net::new(stack_memory!());
    let data = Rng(9).bytes(100_000);
    let h = net.established((v6(), UPPER_PORT), 44000);
    assert_eq!(net.tcp(h).send_slice(&data).unwrap(), data.len());
    net.tcp(h).close(); // the FIN is queued right behind data the stack has not seen yet
    let mut got = Vec::new();
    net.run_until("all bytes and the FIN", |n| {
        let s = n.tcp(h);
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        !s.may_recv()
    });
    assert_eq!(got.len(), data.len());
    assert!(got == upper(&data));
    net.run_until("the stack's socket back in LISTEN", |n| {
        n.stack.tcp_in_use(UPPER_PORT) == 0
    });
}

/// The last data and the FIN leave in the same segment (a FIN sent alone
/// after the data is easily lost by a client that closes at once).
#[test]
fn fin_rides_with_the_last_data() {
    let mut net = Net::new(stack_memory!());
    let sent = Rc::new(RefCell::new(Vec::new()));
    net.stack_end.sent = Some(sent.clone());
    let h = net.established((v4(), ECHO_PORT), 45000);
    assert_eq!(net.exchange(h, b"last words"), b"last words");
    let fins: Vec<(bool, usize)> = sent
        .borrow()
        .iter()
        .filter_map(|f| tcp_of(f))
        .filter(|(fin, _)| *fin)
        .collect();
    assert_eq!(
        fins,
        vec![(true, b"last words".len())],
        "one FIN, carrying the data"
    );
}

/// (FIN flag, payload length) of an IPv4/IPv6 TCP frame.
fn tcp_of(frame: &[u8]) -> Option<(bool, usize)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (proto, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header(), ip.payload().to_vec())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            (ip.next_header(), ip.payload().to_vec())
        }
        _ => return None,
    };
    if proto != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(&payload[..]).ok()?;
    Some((tcp.fin(), tcp.payload().len()))
}

/// Back-to-back connects, each sending, half-closing and reading to the end
/// before the next starts, never meet a refusal: the pool re-arms at once.
#[test]
fn back_to_back_connects_never_refused() {
    let mut net = Net::new(stack_memory!());
    for i in 0..300u16 {
        let h = net.established((if i % 2 == 0 { v4() } else { v6() }, ECHO_PORT), 46000 + i);
        let msg = format!("connect {i}");
        assert_eq!(net.exchange(h, msg.as_bytes()), msg.as_bytes());
        net.host_sockets.remove(h);
    }
    net.run_until("every slot back in LISTEN", |n| {
        n.stack.tcp_in_use(ECHO_PORT) == 0
    });
}

/// Datagrams from a multicast or broadcast source are never answered (no
/// amplification); a unicast one right after is.
#[test]
fn no_answer_to_group_sources() {
    use smoltcp::wire::{Ipv4Address, Ipv4Repr, UdpPacket, UdpRepr};
    let mut net = Net::new(stack_memory!());
    // Prime ARP so the stack could answer if it wanted to.
    assert_eq!(net.datagram((v4(), ECHO_PORT), 47000, b"ping").0, b"ping");

    for src in [
        Ipv4Address::new(192, 168, 69, 255),
        Ipv4Address::new(224, 0, 0, 1),
        Ipv4Address::BROADCAST,
    ] {
        let frame = udp_frame(src, b"amplify me");
        let sent = Rc::new(RefCell::new(Vec::new()));
        net.stack_end.sent = Some(sent.clone());
        net.stack_end.rx.borrow_mut().push_back(frame);
        for _ in 0..20 {
            net.step();
        }
        assert!(
            sent.borrow().iter().all(|f| !is_udp_from_echo(f)),
            "answered a datagram from {src}"
        );
        net.stack_end.sent = None;
    }
    assert_eq!(
        net.datagram((v4(), ECHO_PORT), 47001, b"unicast").0,
        b"unicast"
    );

    fn udp_frame(src: Ipv4Address, payload: &[u8]) -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{EthernetRepr, Ipv4Packet};
        let udp = UdpRepr {
            src_port: 47002,
            dst_port: ECHO_PORT,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: config::STACK_IPV4.address(),
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x64]),
            dst_addr: config::STACK_MAC,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame =
            vec![0; eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len()];
        let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut e);
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        let caps = ChecksumCapabilities::default();
        ip.emit(&mut p, &caps);
        let mut u = UdpPacket::new_unchecked(p.payload_mut());
        udp.emit(
            &mut u,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(config::STACK_IPV4.address()),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        frame
    }

    fn is_udp_from_echo(frame: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        ip.next_header() == IpProtocol::Udp
            && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.src_port() == ECHO_PORT)
    }
}

/// An idle stack with no connection asks for no wake-up at all: the binary
/// can sleep until a frame arrives (no CPU while idle).
#[test]
fn idle_stack_needs_no_timer() {
    let (sockets, buffers) = stack_memory!();
    let to_stack: Queue = Rc::default();
    let mut end = End {
        rx: to_stack.clone(),
        tx: to_stack,
        loss: None,
        sent: None,
    };
    let now = Instant::from_millis(0);
    let mut stack = Stack::new(&Settings::default(), sockets, buffers, &mut end, now).unwrap();
    assert_eq!(stack.poll(now, &mut end), None);
    assert_eq!(stack.poll(Instant::from_secs(3600), &mut end), None);
}

/// Sends `request` to the status page and returns the whole answer.
fn http(net: &mut Net, addr: IpAddress, local_port: u16, request: &[u8]) -> String {
    let h = net.established((addr, config::HTTP_PORT), local_port);
    String::from_utf8(net.exchange(h, request)).expect("the status page answers in UTF-8")
}

/// The status page answers GET / with HTML and /stats.json with JSON whose
/// counters match the traffic and whose socket table lists an open
/// connection with its real ports; HEAD gives the same headers and no body;
/// each error has its code.
#[test]
fn status_page_over_http() {
    let mut net = Net::new(stack_memory!());
    let page = http(
        &mut net,
        v4(),
        48000,
        b"GET / HTTP/1.1\r\nHost: 192.168.69.1\r\n\r\n",
    );
    assert!(
        page.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"),
        "{page}"
    );
    assert!(
        page.contains("<h2>Counters</h2>") && page.contains("<h2>Sockets</h2>"),
        "{page}"
    );
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head} / body {} bytes: {body}",
        body.len()
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");

    // Known traffic: one UDP echo, one open TCP echo connection.
    assert_eq!(
        net.datagram((v4(), ECHO_PORT), 48001, b"count me").0,
        b"count me"
    );
    let open = net.established((v6(), ECHO_PORT), 48002);
    let before = *net.stack.counters();

    let json = http(
        &mut net,
        v4(),
        48003,
        b"GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let (head, body) = json.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert!(
        body.contains(&format!(
            "\"udp\":{{\"in\":{},\"out\":{}}}",
            before.udp.r#in, before.udp.out
        )),
        "{body}"
    );
    assert_eq!((before.udp.r#in, before.udp.out), (1, 1));
    // The page's own connection is open while it is rendered: 3 opened so far.
    assert!(body.contains("\"opened\":3,\"closed\":1,"), "{body}");
    let row = "\"protocol\":\"tcp\",\"local\":\"[fdaa::1]:7\",\"remote\":\"[fdaa::100]:48002\",\"state\":\"ESTABLISHED\"";
    assert!(body.contains(row), "{body}");
    let listeners = format!(
        "\"local\":\"*:7\",\"remote\":\"*:*\",\"state\":\"LISTEN x{}\"",
        TCP_SOCKETS_PER_SERVICE - 1
    );
    assert!(body.contains(&listeners), "{body}");
    assert!(body.ends_with("]}\n"), "{body}");
    net.tcp(open).close();

    let head_only = http(
        &mut net,
        v6(),
        48004,
        b"HEAD /stats.json HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        head_only.starts_with("HTTP/1.1 200 OK\r\n") && head_only.ends_with("\r\n\r\n"),
        "{head_only}"
    );
    assert!(
        !head_only.contains('{'),
        "HEAD must have no body: {head_only}"
    );

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    for (port, request, status) in [
        (
            48010,
            &b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            "404 Not Found",
        ),
        (
            48011,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "405 Method Not Allowed",
        ),
        (48012, b"GET / HTTP/1.1\r\n\r\n", "400 Bad Request"),
        (48013, b"BLAH\r\n\r\n", "400 Bad Request"),
        (48014, b"GET / HTTP/1.1\r\nHost: x", "400 Bad Request"), // cut off by the client's FIN
        (48015, big.as_bytes(), "431 Request Header Fields Too Large"),
    ] {
        let answer = http(&mut net, v4(), port, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{status}: {answer}"
        );
        assert!(
            answer.ends_with(&format!("\r\n\r\n{status}\n")),
            "{status}: {answer}"
        );
    }
    net.run_until("every status slot back in LISTEN", |n| {
        n.stack.tcp_in_use(config::HTTP_PORT) == 0
    });
}

/// Injected faults inside the stack (`--drop-chance 10 --corrupt-chance 5`):
/// TCP still delivers 256 KiB byte-exact; UDP loses datagrams but never hands
/// back a corrupted payload (the checksum catches every flipped bit); and the
/// same seed gives exactly the same faults, frame for frame, while another
/// seed gives others.
#[test]
fn seeded_faults_tcp_heals_udp_loses_same_seed_same_faults() {
    use tapstack::faults::FaultSettings;
    fn run(
        memory: (&'static mut Sockets<'static>, &'static mut Buffers),
        seed: u64,
    ) -> (tapstack::counters::Counters, Vec<Vec<u8>>, usize, usize) {
        let faults = FaultSettings {
            drop_pct: 10,
            corrupt_pct: 5,
            seed,
            ..FaultSettings::default()
        };
        let settings = Settings {
            random_seed: 42,
            faults,
            ..Settings::default()
        };
        let mut net = Net::with_settings(memory, settings, 0, 0);
        let sent = Rc::new(RefCell::new(Vec::new()));
        net.stack_end.sent = Some(sent.clone());

        let data = Rng(21).bytes(256 * 1024);
        let h = net.established((v4(), ECHO_PORT), 49000);
        assert!(net.exchange(h, &data) == data, "TCP must heal every fault");

        let rx = udp::PacketBuffer::new(
            leak(vec![udp::PacketMetadata::EMPTY; 8]),
            leak(vec![0u8; 8192]),
        );
        let tx = udp::PacketBuffer::new(
            leak(vec![udp::PacketMetadata::EMPTY; 8]),
            leak(vec![0u8; 8192]),
        );
        let u = net.host_sockets.add(udp::Socket::new(rx, tx));
        net.udp(u).bind(49001).unwrap();
        let (mut answered, mut lost) = (0, 0);
        for i in 0..200u32 {
            let payload = format!("datagram {i:05} {}", "x".repeat(100));
            net.run_until("room to send", |n| n.udp(u).can_send());
            net.udp(u)
                .send_slice(payload.as_bytes(), (v4(), ECHO_PORT))
                .unwrap();
            // Wait a bounded virtual time for the answer; no answer = lost.
            let deadline = net.now + Duration::from_millis(50);
            while !net.udp(u).can_recv() && net.now < deadline {
                net.step();
            }
            if net.udp(u).can_recv() {
                let (got, _) = net.udp(u).recv().unwrap();
                assert_eq!(got, payload.as_bytes(), "a UDP payload came back altered");
                answered += 1;
            } else {
                lost += 1;
            }
        }
        let counters = *net.stack.counters();
        let frames = sent.borrow().clone();
        (counters, frames, answered, lost)
    }

    let (c1, f1, answered, lost) = run(stack_memory!(), 7);
    assert_eq!(answered + lost, 200);
    // Request and answer each cross the faulty link once: each survives with
    // 0.90 (not dropped) x 0.95 (not corrupted, else its checksum fails) =
    // 0.855, both with 0.73, so about 146 of 200 come back.
    assert!(
        lost > 0 && (100..=190).contains(&answered),
        "answered {answered}, lost {lost}"
    );
    assert!(c1.dropped.injected > 0 && c1.corrupted > 0, "{c1:?}");
    println!(
        "seed 7: {} frames in, {} out; injected drops {}, corruptions {}, bad checksums seen {}; UDP answered {answered}, lost {lost}",
        c1.link_in.frames,
        c1.link_out.frames,
        c1.dropped.injected,
        c1.corrupted,
        c1.dropped.bad_checksum
    );
    let (c2, f2, ..) = run(stack_memory!(), 7);
    assert_eq!(c1, c2, "same seed, same counters");
    assert!(f1 == f2, "same seed, same frames");
    let (c3, ..) = run(stack_memory!(), 8);
    assert_ne!(
        (c1.dropped.injected, c1.corrupted),
        (c3.dropped.injected, c3.corrupted),
        "another seed, other faults"
    );
}

/// A SYN from a peer that then goes silent (a SYN flood's half of a
/// connection) holds a pool slot only for the handshake timeout: after
/// `TCP_SYN_RECEIVED_TIMEOUT_SECS` the stack resets it and the slot listens
/// again. The stack asks to be woken for that deadline by itself: the test
/// only ever advances the clock by the delay `poll` returns.
#[test]
fn half_open_connection_is_reset_after_the_handshake_timeout() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetRepr, Ipv4Address, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};
    let mut net = Net::new(stack_memory!());
    let silent = Ipv4Address::new(192, 168, 69, 50);
    let tcp = TcpRepr {
        src_port: 50000,
        dst_port: ECHO_PORT,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: silent,
        dst_addr: config::STACK_IPV4.address(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x32]),
        dst_addr: config::STACK_MAC,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut frame = vec![0; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut e);
    let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    let mut t = TcpPacket::new_unchecked(p.payload_mut());
    tcp.emit(
        &mut t,
        &silent.into(),
        &config::STACK_IPV4.address().into(),
        &ChecksumCapabilities::default(),
    );

    net.stack_end.rx.borrow_mut().push_back(frame);
    let start = net.now;
    let mut delay = net.stack.poll(net.now, &mut net.stack_end);
    assert_eq!(net.stack.tcp_in_use(ECHO_PORT), 1, "the SYN took a slot");
    let mut wakeups = 0;
    while net.stack.tcp_in_use(ECHO_PORT) > 0 {
        wakeups += 1;
        assert!(wakeups < 100, "never reset");
        // Nobody answers: whatever the stack sends (ARP, SYN-ACK) is lost.
        net.stack_end.tx.borrow_mut().clear();
        net.now += delay.expect("a half-open connection must ask for a wake-up");
        delay = net.stack.poll(net.now, &mut net.stack_end);
    }
    let waited = net.now - start;
    let timeout = Duration::from_secs(config::TCP_SYN_RECEIVED_TIMEOUT_SECS);
    assert!(
        waited >= timeout && waited < timeout + Duration::from_millis(10),
        "reset after {waited}"
    );
    assert_eq!(net.stack.counters().tcp_reset, 1);
    assert_eq!(net.stack.counters().tcp_opened, 0);
    // The pool is whole again and serves the next client.
    let h = net.established((v4(), ECHO_PORT), 50001);
    assert_eq!(net.exchange(h, b"after the flood"), b"after the flood");
}

/// A client that sends but never reads (its window shut, yet it answers
/// every probe) holds its slot only for `TCP_STALL_TIMEOUT_SECS`, then is
/// reset; a slow reader that takes a little now and then is never reset; and
/// a third connection echoes normally all along.
#[test]
fn a_peer_that_never_reads_is_reset_a_slow_one_is_not() {
    let mut net = Net::new(stack_memory!());
    let data = Rng(17).bytes(16 * 1024);
    let deaf = net.established((v4(), ECHO_PORT), 51000);
    let slow = net.established((v4(), ECHO_PORT), 51001);
    let stall = Duration::from_secs(config::TCP_STALL_TIMEOUT_SECS);
    let mut next_read = net.now;
    let slow_got = std::cell::Cell::new(0);
    // Both keep sending as long as they can; only the slow one ever reads,
    // 4 KiB every 5 s. Returns the time the deaf one was reset.
    let mut step = |n: &mut Net| {
        for h in [deaf, slow] {
            if n.tcp(h).can_send() {
                let _ = n.tcp(h).send_slice(&data);
            }
        }
        if n.now >= next_read {
            slow_got.set(
                slow_got.get()
                    + n.tcp(slow)
                        .recv(|b| (b.len().min(4096), b.len().min(4096)))
                        .unwrap_or(0),
            );
            next_read = n.now + Duration::from_secs(5);
        }
    };
    let mut stalled_since = None;
    net.run_until("the deaf peer reset", |n| {
        step(n);
        // The stall starts when the deaf peer's window is shut for good.
        if stalled_since.is_none() && n.tcp(deaf).recv_queue() == HOST_TCP_BUFFER {
            stalled_since = Some(n.now);
        }
        n.tcp(deaf).state() == tcp::State::Closed
    });
    let waited = net.now - stalled_since.expect("the deaf peer's buffer filled");
    assert!(
        waited >= stall && waited < stall + Duration::from_secs(5),
        "reset {waited} after the window shut"
    );
    assert!(slow_got.get() > 0);
    assert_eq!(
        net.tcp(slow).state(),
        tcp::State::Established,
        "the slow reader is kept"
    );
    assert_eq!(net.stack.counters().tcp_reset, 1);

    // Another 60 s of slow reading: still kept; a normal client is served.
    let until = net.now + Duration::from_secs(60);
    net.run_until("60 more seconds", |n| {
        step(n);
        n.now >= until
    });
    assert_eq!(net.tcp(slow).state(), tcp::State::Established);
    let h = net.established((v6(), ECHO_PORT), 51002);
    assert_eq!(net.exchange(h, b"still serving"), b"still serving");
    assert_eq!(net.stack.counters().tcp_reset, 1);
}

/// A flood queued on the device is read at most
/// `MAX_POLL_ROUNDS x MAX_FRAMES_PER_ROUND` frames per poll (the caller gets
/// a zero delay and comes back at once, after looking at its signals), and
/// every frame is still served: 2000 pings, 2000 replies.
#[test]
fn one_poll_reads_a_bounded_number_of_frames() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Ipv4Repr};
    let mut net = Net::new(stack_memory!());
    // Let the stack learn the host's MAC first.
    assert_eq!(net.datagram((v4(), ECHO_PORT), 52000, b"hello").0, b"hello");

    const PINGS: usize = 2000;
    let host = config::HOST_IPV4.address();
    let stack = config::STACK_IPV4.address();
    for seq in 0..PINGS as u16 {
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 7,
            seq_no: seq,
            data: b"flood",
        };
        let ip = Ipv4Repr {
            src_addr: host,
            dst_addr: stack,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let eth = smoltcp::wire::EthernetRepr {
            src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x64]),
            dst_addr: config::STACK_MAC,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0; eth.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
        let mut e = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut e);
        let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
        ip.emit(&mut p, &ChecksumCapabilities::default());
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(p.payload_mut()),
            &ChecksumCapabilities::default(),
        );
        net.stack_end.rx.borrow_mut().push_back(frame);
    }
    let bound = config::MAX_POLL_ROUNDS * config::MAX_FRAMES_PER_ROUND;
    let mut polls = 0;
    while !net.stack_end.rx.borrow().is_empty() {
        let before = net.stack_end.rx.borrow().len();
        let delay = net.stack.poll(net.now, &mut net.stack_end);
        let read = before - net.stack_end.rx.borrow().len();
        assert!(read <= bound, "one poll read {read} frames");
        if !net.stack_end.rx.borrow().is_empty() {
            assert_eq!(
                delay,
                Some(Duration::ZERO),
                "frames are left: come back at once"
            );
        }
        polls += 1;
        assert!(polls <= PINGS, "the queue never drains");
    }
    assert!(polls >= PINGS.div_ceil(bound));
    let replies = net
        .stack_end
        .tx
        .borrow()
        .iter()
        .filter(|f| {
            let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
                return false;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return false;
            };
            ip.next_header() == IpProtocol::Icmp
                && Icmpv4Packet::new_checked(ip.payload())
                    .is_ok_and(|i| i.msg_type() == smoltcp::wire::Icmpv4Message::EchoReply)
        })
        .count();
    assert_eq!(replies, PINGS);
    assert_eq!(net.stack.counters().icmp_echo_requests.r#in, PINGS as u64);
}

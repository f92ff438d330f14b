//! The stack: one smoltcp [`Interface`], its sockets, and the services on them.
//!
//! [`Stack`] owns the interface and the socket set; the caller owns the
//! device and the clock. Everything is driven by [`Stack::poll`], which
//! receives what the device holds, runs the services, transmits, and returns
//! how long the caller may sleep. That makes the same core run under the TAP
//! binary (sleeping in `poll(2)`), under a virtual clock in tests, and in a
//! microcontroller's main loop.
//!
//! All memory comes from [`Sockets`] and [`Buffers`], plain structs of fixed
//! arrays that the caller places where it likes (`static`s: `.data` for the
//! small socket state, `.bss` for the bytes): the stack never allocates, and [`RamBudget`] says how much it uses before it starts.

use core::fmt;
use core::mem::size_of;

use smoltcp::iface::{
    Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet, SocketStorage,
};
use smoltcp::phy::Device;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, IpListenEndpoint, Ipv6Address};

use core::cell::RefCell;

use crate::config::{
    self, BULK_BUFFER, BULK_IDLE_BUFFER, BULK_SOCKETS, FAULT_FRAME_BUFFER, HTTP_REQUEST_BUFFER,
    HTTP_RX_BUFFER, HTTP_SOCKETS, HTTP_TX_BUFFER, MAX_FRAMES_PER_ROUND, MAX_POLL_ROUNDS,
    SCRATCH_BUFFER, SERVICE_COUNT, SOCKET_COUNT, TCP_RX_BUFFER, TCP_SOCKET_COUNT,
    TCP_SOCKETS_PER_SERVICE, TCP_TX_BUFFER, UDP_PACKET_SLOTS, UDP_RX_BUFFER, UDP_SOCKET_COUNT,
    UDP_TX_BUFFER,
};
use crate::counters::{Counters, Policy};
use crate::faults::{FaultSettings, Injector};
use crate::link::{self, Observed, Observer, Shared};
use crate::network::{self, Addresses};
use crate::services::{self, Kind, Service};
use crate::transport::{
    ChargenBuffers, DiscardBuffers, HttpBuffers, StreamBuffers, UdpBuffers, UdpSlots,
};

/// What the stack is told at start: link and network settings, service ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The stack's MAC.
    pub mac: EthernetAddress,
    /// Addresses and gateways.
    pub addresses: Addresses,
    /// Port of the echo service.
    pub echo_port: u16,
    /// Port of the upper-case service.
    pub upper_port: u16,
    /// Port of the discard service.
    pub discard_port: u16,
    /// Port of the chargen service.
    pub chargen_port: u16,
    /// Port of the status page (HTTP).
    pub status_port: u16,
    /// Seed for TCP initial sequence numbers; use a different one each start.
    pub random_seed: u64,
    /// Faults to inject on the link (none by default).
    pub faults: FaultSettings,
}

impl Default for Settings {
    /// The default contract of README and docs.
    fn default() -> Self {
        Self {
            mac: config::STACK_MAC,
            addresses: Addresses {
                ipv4: config::STACK_IPV4,
                gateway4: Some(config::HOST_IPV4.address()),
                ipv6: config::STACK_IPV6,
                gateway6: Some(config::HOST_IPV6.address()),
            },
            echo_port: config::ECHO_PORT,
            upper_port: config::UPPER_PORT,
            discard_port: config::DISCARD_PORT,
            chargen_port: config::CHARGEN_PORT,
            status_port: config::HTTP_PORT,
            random_seed: 0,
            faults: FaultSettings::default(),
        }
    }
}

/// Why the stack could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The device is not an Ethernet device.
    NotEthernet,
    /// The device's IP MTU (given) is below IPv6's 1280 bytes.
    MtuTooSmall(usize),
    /// The MAC is a multicast address.
    MacNotUnicast,
    /// The IPv4 address is not a host address of its subnet.
    Ipv4NotHost,
    /// The IPv6 address is not a unicast host address.
    Ipv6NotHost,
    /// The IPv4 gateway is not another host on the stack's subnet.
    Gateway4OffLink,
    /// The IPv6 gateway is not another host on the stack's prefix or link-local.
    Gateway6OffLink,
    /// A service port is 0, or two services (the status page included) share one.
    BadPorts,
    /// More addresses than `iface-max-addr-count` (a build setting).
    TooManyAddresses,
    /// More routes than `iface-max-route-count` (a build setting).
    TooManyRoutes,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEthernet => f.write_str("the device is not an Ethernet (TAP) device"),
            Self::MtuTooSmall(mtu) => write!(
                f,
                "the link MTU is {mtu}, below the {} bytes IPv6 needs: raise it with `ip link set DEV mtu 1500`",
                link::MIN_IP_MTU
            ),
            Self::MacNotUnicast => f.write_str("the MAC is a multicast address; use one whose first byte is even, like 02:00:00:00:00:01"),
            Self::Ipv4NotHost => f.write_str("the IPv4 address is not a host address of its subnet (not the network, broadcast, multicast, loopback or 0.0.0.0)"),
            Self::Ipv6NotHost => f.write_str("the IPv6 address is not a unicast host address"),
            Self::Gateway4OffLink => f.write_str("the IPv4 gateway must be another address on the stack's subnet"),
            Self::Gateway6OffLink => f.write_str("the IPv6 gateway must be another address on the stack's prefix, or link-local"),
            Self::BadPorts => f.write_str("each service needs its own port from 1 to 65535"),
            Self::TooManyAddresses => f.write_str("more addresses than the interface was built for (smoltcp iface-max-addr-count)"),
            Self::TooManyRoutes => f.write_str("more routes than the interface was built for (smoltcp iface-max-route-count)"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// The sockets' state: one slot per socket and the UDP datagram slots.
///
/// Small, and not all-zero when empty (smoltcp's `EMPTY` values), so the
/// linker keeps it in `.data`; `new` is a `const fn` for a `static`.
pub struct Sockets<'a> {
    slots: [SocketStorage<'a>; SOCKET_COUNT],
    udp: [UdpSlots; UDP_SOCKET_COUNT],
}

impl Sockets<'_> {
    /// Empty slots.
    pub const fn new() -> Self {
        Self {
            slots: [SocketStorage::EMPTY; SOCKET_COUNT],
            udp: [const { UdpSlots::new() }; UDP_SOCKET_COUNT],
        }
    }
}

impl Default for Sockets<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// The bytes: every TCP and UDP buffer and the services' scratch buffer.
///
/// All zero at start, so a `static` of it lands in `.bss` and costs no
/// flash or file size: the bulk of [`RAM_BUDGET`].
pub struct Buffers {
    echo: [StreamBuffers; TCP_SOCKETS_PER_SERVICE],
    upper: [StreamBuffers; TCP_SOCKETS_PER_SERVICE],
    discard: [DiscardBuffers; BULK_SOCKETS],
    chargen: [ChargenBuffers; BULK_SOCKETS],
    udp: [UdpBuffers; UDP_SOCKET_COUNT],
    http: [HttpBuffers; HTTP_SOCKETS],
    scratch: [u8; SCRATCH_BUFFER],
    fault_tx: [u8; FAULT_FRAME_BUFFER],
}

impl Buffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            echo: [const { StreamBuffers::new() }; TCP_SOCKETS_PER_SERVICE],
            upper: [const { StreamBuffers::new() }; TCP_SOCKETS_PER_SERVICE],
            discard: [const { DiscardBuffers::new() }; BULK_SOCKETS],
            chargen: [const { ChargenBuffers::new() }; BULK_SOCKETS],
            udp: [const { UdpBuffers::new() }; UDP_SOCKET_COUNT],
            http: [const { HttpBuffers::new() }; HTTP_SOCKETS],
            scratch: [0; SCRATCH_BUFFER],
            fault_tx: [0; FAULT_FRAME_BUFFER],
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The largest TCP pool of any service.
const MAX_SERVICE_POOL: usize = if TCP_SOCKETS_PER_SERVICE > BULK_SOCKETS {
    TCP_SOCKETS_PER_SERVICE
} else {
    BULK_SOCKETS
};

/// A service and the sockets it was given.
struct Bound {
    service: Service,
    tcp: heapless::Vec<Conn, MAX_SERVICE_POOL>,
    udp: SocketHandle,
    /// Chargen: UDP datagrams answered, which picks the next line.
    udp_lines: usize,
}

/// A pooled TCP socket, and what the stack remembers of it between serves.
struct Conn {
    handle: SocketHandle,
    /// The state it had at the end of the last serve.
    last: tcp::State,
    /// When it entered that state.
    since: Instant,
    /// Bytes it held for the peer at the end of the last serve.
    unsent: usize,
    /// When the peer last took data (or the service last queued some).
    progress_at: Instant,
    /// Chargen: where in the pattern the stream goes on.
    offset: usize,
}

impl Conn {
    fn new(handle: SocketHandle, now: Instant) -> Self {
        Self {
            handle,
            last: tcp::State::Listen,
            since: now,
            unsent: 0,
            progress_at: now,
            offset: 0,
        }
    }

    /// Before a service looks at the socket: counts what changed since the
    /// last serve, and resets a handshake that has waited too long, a
    /// connection whose peer has taken none of its data for too long, one
    /// whose peer has not sent its FIN long after ours (FIN-WAIT-2), and,
    /// if `awaiting_request`, one whose peer has sent no request in time.
    fn check(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        counters: &mut Counters,
        awaiting_request: bool,
    ) {
        count_transition(counters, self.last, socket.state());
        if socket.send_queue() < self.unsent {
            self.progress_at = now; // the peer acknowledged some
        }
        self.settle(socket, false, now);
        if self.deadline(awaiting_request).is_some_and(|at| now >= at) {
            socket.abort(); // a RST to the peer; the service re-arms the slot
            counters.tcp_reset += 1;
        }
    }

    /// Remembers how a service left the socket; `moved` if it queued data.
    fn settle(&mut self, socket: &tcp::Socket<'_>, moved: bool, now: Instant) {
        let state = socket.state();
        if state != self.last {
            self.last = state;
            self.since = now;
            self.progress_at = now;
        }
        if moved {
            self.progress_at = now;
        }
        self.unsent = socket.send_queue();
    }

    /// When a connection holding data the peer does not take will be reset.
    fn stalled_at(&self) -> Option<Instant> {
        (self.unsent > 0).then(|| self.progress_at + STALL_TIMEOUT)
    }

    /// The next time this connection must be looked at, if any: the end of
    /// a handshake, of a stall, of a FIN-WAIT-2, or (`awaiting_request`) of
    /// the wait for a request.
    fn deadline(&self, awaiting_request: bool) -> Option<Instant> {
        let in_state = |state, timeout| (self.last == state).then(|| self.since + timeout);
        let request = if awaiting_request {
            in_state(tcp::State::Established, HTTP_REQUEST_TIMEOUT)
        } else {
            None
        };
        [
            in_state(tcp::State::SynReceived, SYN_RECEIVED_TIMEOUT),
            in_state(tcp::State::FinWait2, FIN_WAIT_2_TIMEOUT),
            request,
            self.stalled_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// [`config::TCP_SYN_RECEIVED_TIMEOUT_SECS`] as a duration.
const SYN_RECEIVED_TIMEOUT: Duration = Duration::from_secs(config::TCP_SYN_RECEIVED_TIMEOUT_SECS);
/// [`config::TCP_FIN_WAIT_2_TIMEOUT_SECS`] as a duration.
const FIN_WAIT_2_TIMEOUT: Duration = Duration::from_secs(config::TCP_FIN_WAIT_2_TIMEOUT_SECS);
/// [`config::HTTP_REQUEST_TIMEOUT_SECS`] as a duration.
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(config::HTTP_REQUEST_TIMEOUT_SECS);
/// [`config::TCP_STALL_TIMEOUT_SECS`] as a duration.
const STALL_TIMEOUT: Duration = Duration::from_secs(config::TCP_STALL_TIMEOUT_SECS);

/// A status page connection: its socket, the request head received so far,
/// and whether it has been answered.
struct HttpSlot {
    conn: Conn,
    request: heapless::Vec<u8, HTTP_REQUEST_BUFFER>,
    answered: bool,
}

/// The TCP/IP stack: interface, sockets, services.
pub struct Stack<'a> {
    iface: Interface,
    sockets: SocketSet<'a>,
    services: heapless::Vec<Bound, SERVICE_COUNT>,
    http: heapless::Vec<HttpSlot, HTTP_SOCKETS>,
    status_port: u16,
    started: Instant,
    now: Instant,
    scratch: &'a mut [u8; SCRATCH_BUFFER],
    fault_tx: &'a mut [u8; FAULT_FRAME_BUFFER],
    addresses: Addresses,
    mac: EthernetAddress,
    counters: Counters,
    injector: Injector,
}

impl<'a> Stack<'a> {
    /// Configures the layers on `device` and starts every service.
    pub fn new<D: Device + ?Sized>(
        settings: &Settings,
        sockets: &'a mut Sockets<'a>,
        buffers: &'a mut Buffers,
        device: &mut D,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        link::check_device(&device.capabilities())?;
        let ports = [
            settings.echo_port,
            settings.upper_port,
            settings.discard_port,
            settings.chargen_port,
            settings.status_port,
        ];
        let distinct = ports
            .iter()
            .enumerate()
            .all(|(i, p)| !ports[..i].contains(p));
        if ports.contains(&0) || !distinct {
            return Err(ConfigError::BadPorts);
        }
        network::check(&settings.addresses)?;

        // Received checksums are verified by the link layer (`link::Observed`),
        // not a second time by smoltcp.
        let mut iface = Interface::new(
            link::interface_config(settings.mac, settings.random_seed)?,
            &mut link::Verified(device),
            now,
        );
        network::configure(&mut iface, settings.mac, &settings.addresses)?;

        let Sockets {
            slots,
            udp: udp_slots,
        } = sockets;
        let Buffers {
            echo,
            upper,
            discard,
            chargen,
            udp,
            http: http_buffers,
            scratch,
            fault_tx,
        } = buffers;
        let mut set = SocketSet::new(&mut slots[..]);
        let mut udp = udp.iter_mut().zip(udp_slots.iter_mut());
        let mut services = heapless::Vec::new();
        let pools: [(Service, &mut dyn Iterator<Item = tcp::Socket<'a>>); SERVICE_COUNT] = [
            (
                Service::echo(settings.echo_port),
                &mut echo.iter_mut().map(|b| b.socket()),
            ),
            (
                Service::upper(settings.upper_port),
                &mut upper.iter_mut().map(|b| b.socket()),
            ),
            (
                Service::discard(settings.discard_port),
                &mut discard.iter_mut().map(|b| b.socket()),
            ),
            (
                Service::chargen(settings.chargen_port),
                &mut chargen.iter_mut().map(|b| b.socket()),
            ),
        ];
        for (service, sockets) in pools {
            let mut handles = heapless::Vec::new();
            for mut socket in sockets {
                // Port is non-zero (checked above) and the socket is new: cannot fail.
                socket
                    .listen(service.port)
                    .map_err(|_| ConfigError::BadPorts)?;
                // No pool is larger than MAX_SERVICE_POOL: a push cannot overflow.
                let _ = handles.push(Conn::new(set.add(socket), now));
            }
            let (payload, slots) = udp.next().ok_or(ConfigError::BadPorts)?;
            let mut socket = payload.socket(slots);
            socket
                .bind(service.port)
                .map_err(|_| ConfigError::BadPorts)?;
            let udp = set.add(socket);
            // SERVICE_COUNT services in a Vec of SERVICE_COUNT: cannot overflow.
            let _ = services.push(Bound {
                service,
                tcp: handles,
                udp,
                udp_lines: 0,
            });
        }
        let mut http = heapless::Vec::new();
        for buffers in http_buffers.iter_mut() {
            let mut socket = buffers.socket();
            socket
                .listen(settings.status_port)
                .map_err(|_| ConfigError::BadPorts)?;
            let handle = set.add(socket);
            // HTTP_SOCKETS buffers into a Vec of HTTP_SOCKETS: cannot overflow.
            let _ = http.push(HttpSlot {
                conn: Conn::new(handle, now),
                request: heapless::Vec::new(),
                answered: false,
            });
        }
        Ok(Self {
            iface,
            sockets: set,
            services,
            http,
            status_port: settings.status_port,
            started: now,
            now,
            scratch,
            fault_tx,
            addresses: settings.addresses,
            mac: settings.mac,
            counters: Counters::default(),
            injector: Injector::new(settings.faults),
        })
    }

    /// Receives every frame the device holds, serves every socket, transmits,
    /// and returns how long the caller may wait before the next call (`None`:
    /// until a frame arrives). Bounded: at most [`MAX_POLL_ROUNDS`] rounds;
    /// if there is still work after that it returns a zero delay.
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> Option<Duration> {
        self.poll_observed(now, device, None)
    }

    /// [`Stack::poll`], showing every frame to `observer` (a trace, a pcap).
    pub fn poll_observed<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        mut observer: Option<&mut dyn Observer>,
    ) -> Option<Duration> {
        self.now = now;
        for _ in 0..MAX_POLL_ROUNDS {
            // True if frames were left unread: come back at once.
            let backlog = {
                // The link's view of this poll: faults, counters, observer.
                let shared = RefCell::new(Shared {
                    counters: &mut self.counters,
                    injector: &mut self.injector,
                    policy: policy(
                        self.mac,
                        &self.iface,
                        &self.sockets,
                        &self.services,
                        &self.http,
                        self.status_port,
                    ),
                    observer: observer.as_deref_mut(),
                });
                let mut link = Observed::new(
                    device,
                    &shared,
                    // Free while frames move (services run after): a
                    // received frame is corrupted in a copy here.
                    &mut self.scratch[..],
                    &mut self.fault_tx[..],
                    now,
                );
                // Interface::poll would read every queued frame, however many:
                // read at most MAX_FRAMES_PER_ROUND, then transmit.
                self.iface.poll_maintenance(now);
                let mut frames = 0;
                while frames < MAX_FRAMES_PER_ROUND
                    && self
                        .iface
                        .poll_ingress_single(now, &mut link, &mut self.sockets)
                        != PollIngressSingleResult::None
                {
                    frames += 1;
                }
                while self.iface.poll_egress(now, &mut link, &mut self.sockets) != PollResult::None
                {
                }
                frames == MAX_FRAMES_PER_ROUND
            };
            let served = self.serve();
            if !served && !backlog {
                let services = self
                    .services
                    .iter()
                    .flat_map(|b| b.tcp.iter().map(|c| c.deadline(false)));
                let http = self.http.iter().map(|s| s.conn.deadline(!s.answered));
                let deadline = services
                    .chain(http)
                    .flatten()
                    .min()
                    .map(|at| at.max(now) - now);
                return match (self.iface.poll_delay(now, &self.sockets), deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Some(Duration::ZERO)
    }

    /// Runs every service over its sockets once. True if anything moved.
    fn serve(&mut self) -> bool {
        let mut busy = false;
        for bound in &mut self.services {
            let Service {
                port,
                kind,
                transform,
                ..
            } = bound.service;
            for conn in &mut bound.tcp {
                let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
                conn.check(socket, self.now, &mut self.counters, false);
                let progress = match kind {
                    Kind::Transform => {
                        services::stream::serve(socket, port, &mut self.scratch[..], transform)
                    }
                    Kind::Discard => services::stream::discard(socket, port),
                    Kind::Chargen => services::stream::chargen(socket, port, &mut conn.offset),
                };
                busy |= progress.any();
                conn.settle(socket, progress.bytes > 0, self.now);
            }
            let iface = &self.iface;
            let socket = self.sockets.get_mut::<udp::Socket>(bound.udp);
            let is_peer = |addr: &_| network::is_unicast_peer(iface, addr);
            let progress = match kind {
                Kind::Transform => {
                    services::datagram::serve(socket, &mut self.scratch[..], transform, is_peer)
                }
                Kind::Discard => services::datagram::discard(socket),
                Kind::Chargen => services::datagram::chargen(
                    socket,
                    &mut self.scratch[..],
                    &mut bound.udp_lines,
                    is_peer,
                ),
            };
            busy |= progress.any();
        }
        for i in 0..self.http.len() {
            busy |= self.serve_http(i);
        }
        busy
    }

    /// Serves one status page connection: collect the request head, answer
    /// it whole, close. True if anything moved.
    fn serve_http(&mut self, i: usize) -> bool {
        use services::http::{self, Route, SliceWriter, Status};
        let port = self.status_port;
        let slot = &mut self.http[i];
        let socket = self.sockets.get_mut::<tcp::Socket>(slot.conn.handle);
        slot.conn
            .check(socket, self.now, &mut self.counters, !slot.answered);
        if services::stream::resetting(socket) {
            return false; // re-armed once the RST has left (the next egress)
        }
        if !socket.is_open() {
            slot.request.clear();
            slot.answered = false;
            let rearmed = socket.listen(port).is_ok();
            slot.conn.settle(socket, false, self.now);
            return rearmed;
        }
        if slot.answered {
            // Discard whatever else the client sends, so its window never closes.
            let mut moved = false;
            while let Ok(n @ 1..) = socket.recv(|b| (b.len(), b.len())) {
                moved |= n > 0;
            }
            return moved;
        }
        let mut moved = false;
        while socket.can_recv() && !slot.request.is_full() {
            let room = slot.request.capacity() - slot.request.len();
            let request = &mut slot.request;
            let got = socket.recv(|b| {
                let n = b.len().min(room);
                // `n` is at most the room left: cannot overflow.
                let _ = request.extend_from_slice(&b[..n]);
                (n, n)
            });
            match got {
                Ok(n @ 1..) => moved |= n > 0,
                _ => break,
            }
        }
        // The peer has sent its FIN: no more of the request will come. (Not
        // `!may_recv()`, which is also true during the handshake.)
        let peer_done = socket.state() == tcp::State::CloseWait;
        let decision = match http::head_len(&slot.request) {
            Some(n) => Some(http::parse(&slot.request[..n])),
            None if slot.request.is_full() => Some(Err(Status::HeadersTooLarge)),
            None if peer_done && !slot.request.is_empty() => Some(Err(Status::BadRequest)),
            None if peer_done => {
                socket.close(); // connected and left without a word
                return true;
            }
            None => None,
        };
        let Some(decision) = decision else {
            return moved;
        };

        // Render the whole response into the scratch buffer (free while no
        // other service runs), then queue it only if it fits whole.
        let room = socket.send_capacity() - socket.send_queue();
        let head_only = slot_is_head(&slot.request);
        // Not `self.view()`: that would borrow all of `self`, and the page is
        // rendered into `self.scratch` while the view reads the other fields.
        let view = View {
            sockets: &self.sockets,
            services: &self.services,
            http: &self.http,
            status_port: port,
            counters: &self.counters,
            mac: self.mac,
            addresses: &self.addresses,
            uptime: self.now - self.started,
        };
        let mut out = SliceWriter::new(&mut self.scratch[..]);
        let rendered = match decision {
            Ok(req) => match req.route {
                Route::Page => http::respond(
                    &mut out,
                    Status::Ok,
                    "text/html; charset=utf-8",
                    head_only,
                    |w| http::html(w, &view),
                ),
                Route::Json => {
                    http::respond(&mut out, Status::Ok, "application/json", head_only, |w| {
                        http::json(w, &view)
                    })
                }
            },
            Err(status) => http::respond(
                &mut out,
                status,
                "text/plain; charset=utf-8",
                head_only,
                http::error_body(status),
            ),
        };
        let len = out.written().len();
        let len = if rendered.is_ok() && len <= room {
            len
        } else {
            let mut small = SliceWriter::new(&mut self.scratch[..]);
            let status = Status::Unavailable;
            let _ = http::respond(
                &mut small,
                status,
                "text/plain; charset=utf-8",
                head_only,
                http::error_body(status),
            );
            small.written().len()
        };
        let slot = &mut self.http[i];
        let socket = self.sockets.get_mut::<tcp::Socket>(slot.conn.handle);
        // A fresh connection's transmit buffer is empty and holds far more than
        // the 503 answer: a short write cannot happen.
        let _ = socket.send_slice(&self.scratch[..len]);
        socket.close();
        slot.conn.settle(socket, true, self.now);
        slot.answered = true;
        true
    }

    /// A read-only look at the stack: counters, socket table, addresses.
    pub fn view(&self) -> View<'_, 'a> {
        View {
            sockets: &self.sockets,
            services: &self.services,
            http: &self.http,
            status_port: self.status_port,
            counters: &self.counters,
            mac: self.mac,
            addresses: &self.addresses,
            uptime: self.now - self.started,
        }
    }

    /// The counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The smoltcp interface (addresses, routes, neighbours).
    pub fn iface(&self) -> &Interface {
        &self.iface
    }

    /// The services the stack runs, in start-up order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().map(|b| &b.service)
    }

    /// Connections of the service on `port` that are past LISTEN (SYN-RECEIVED
    /// up to TIME-WAIT), that is, pool slots in use.
    pub fn tcp_in_use(&self, port: u16) -> usize {
        self.services
            .iter()
            .filter(|b| b.service.port == port)
            .flat_map(|b| b.tcp.iter().map(|c| c.handle))
            .filter(|&h| {
                !matches!(
                    self.sockets.get::<tcp::Socket>(h).state(),
                    tcp::State::Listen | tcp::State::Closed
                )
            })
            .count()
    }

    /// The addresses and gateways the stack was configured with.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The IPv6 link-local address, derived from the MAC.
    pub fn link_local(&self) -> Ipv6Address {
        network::link_local(self.mac)
    }
}

/// One row of the socket table, like a line of `netstat -tun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The service the socket belongs to.
    pub service: &'static str,
    /// Local address and port (no address: any of the stack's).
    pub local: IpListenEndpoint,
    /// The peer, for a TCP connection.
    pub remote: Option<IpEndpoint>,
    /// TCP state (`None` for UDP).
    pub state: Option<tcp::State>,
    /// Bytes received and not yet read by the service (TCP).
    pub recv_queue: usize,
    /// Bytes queued to send and not yet acknowledged (TCP).
    pub send_queue: usize,
    /// Sockets this row stands for: the listeners of a pool are one row.
    pub count: usize,
}

/// An address and port as people write them: `[fdaa::1]:7`, `*:7`.
pub struct Endpoint(Option<IpAddress>, u16);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "*:{}", self.1),
            Some(IpAddress::Ipv4(a)) => write!(f, "{a}:{}", self.1),
            Some(IpAddress::Ipv6(a)) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// A TCP state as netstat shows it, or `-` for UDP; a pool's listeners as `LISTEN x22`.
pub struct StateName(Option<tcp::State>, usize);

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (None, _) => f.write_str("-"),
            (Some(s), n) if n > 1 => write!(f, "{s} x{n}"),
            (Some(s), _) => write!(f, "{s}"),
        }
    }
}

impl SocketInfo {
    /// The local endpoint, printable.
    pub fn local(&self) -> Endpoint {
        Endpoint(self.local.addr, self.local.port)
    }

    /// The remote endpoint, printable (`*:*` when there is none).
    pub fn remote(&self) -> impl fmt::Display {
        struct Remote(Option<IpEndpoint>);
        impl fmt::Display for Remote {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    None => f.write_str("*:*"),
                    Some(e) => Endpoint(Some(e.addr), e.port).fmt(f),
                }
            }
        }
        Remote(self.remote)
    }

    /// The state, printable.
    pub fn state(&self) -> StateName {
        StateName(self.state, self.count)
    }
}

impl fmt::Display for SocketInfo {
    /// One line of the table: proto, local, remote, state, recv-q, send-q, service.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use core::fmt::Write as _;
        let mut local: heapless::String<64> = heapless::String::new();
        let mut remote: heapless::String<64> = heapless::String::new();
        let mut state: heapless::String<24> = heapless::String::new();
        let _ = write!(local, "{}", self.local());
        let _ = write!(remote, "{}", self.remote());
        let _ = write!(state, "{}", self.state());
        write!(
            f,
            "{:<5}{:<42}{:<42}{:<14}{:>8}{:>8}  {}",
            self.protocol, local, remote, state, self.recv_queue, self.send_queue, self.service
        )
    }
}

/// A read-only look at the stack, for the status page and the binary.
pub struct View<'v, 'a> {
    sockets: &'v SocketSet<'a>,
    services: &'v [Bound],
    http: &'v [HttpSlot],
    status_port: u16,
    counters: &'v Counters,
    mac: EthernetAddress,
    addresses: &'v Addresses,
    uptime: Duration,
}

impl View<'_, '_> {
    /// The counters.
    pub fn counters(&self) -> &Counters {
        self.counters
    }

    /// The addresses.
    pub fn addresses(&self) -> &Addresses {
        self.addresses
    }

    /// The MAC, as `ip link` shows it.
    pub fn mac(&self) -> link::Mac {
        link::Mac(self.mac)
    }

    /// Seconds since the stack started.
    pub fn uptime_secs(&self) -> u64 {
        self.uptime.secs()
    }

    /// Every socket, as table rows: for each service its TCP listeners (one
    /// row), its UDP socket, then every TCP connection past LISTEN; then the
    /// status page likewise.
    pub fn for_each_socket(&self, mut f: impl FnMut(&SocketInfo)) {
        let tcp_rows = |name: &'static str,
                        port: u16,
                        handles: &mut dyn Iterator<Item = SocketHandle>,
                        f: &mut dyn FnMut(&SocketInfo)| {
            let mut listening = 0;
            let mut active: heapless::Vec<SocketHandle, MAX_SERVICE_POOL> = heapless::Vec::new();
            for h in handles {
                let s = self.sockets.get::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen => listening += 1,
                    tcp::State::Closed => {}
                    // At most MAX_SERVICE_POOL >= HTTP_SOCKETS handles per call.
                    _ => drop(active.push(h)),
                }
            }
            if listening > 0 {
                let local = IpListenEndpoint { addr: None, port };
                f(&SocketInfo {
                    protocol: "tcp",
                    service: name,
                    local,
                    remote: None,
                    state: Some(tcp::State::Listen),
                    recv_queue: 0,
                    send_queue: 0,
                    count: listening,
                });
            }
            for h in active {
                let s = self.sockets.get::<tcp::Socket>(h);
                let local = s
                    .local_endpoint()
                    .map_or(IpListenEndpoint { addr: None, port }, |e| {
                        IpListenEndpoint {
                            addr: Some(e.addr),
                            port: e.port,
                        }
                    });
                f(&SocketInfo {
                    protocol: "tcp",
                    service: name,
                    local,
                    remote: s.remote_endpoint(),
                    state: Some(s.state()),
                    recv_queue: s.recv_queue(),
                    send_queue: s.send_queue(),
                    count: 1,
                });
            }
        };
        for bound in self.services {
            let name = bound.service.name;
            tcp_rows(
                name,
                bound.service.port,
                &mut bound.tcp.iter().map(|c| c.handle),
                &mut f,
            );
            let udp = self.sockets.get::<udp::Socket>(bound.udp);
            f(&SocketInfo {
                protocol: "udp",
                service: name,
                local: udp.endpoint(),
                remote: None,
                state: None,
                recv_queue: 0,
                send_queue: 0,
                count: 1,
            });
        }
        tcp_rows(
            services::http::NAME,
            self.status_port,
            &mut self.http.iter().map(|s| s.conn.handle),
            &mut f,
        );
    }
}

const _: () = assert!(HTTP_SOCKETS <= MAX_SERVICE_POOL);

/// Whether a request head starts with `HEAD ` (an error answer then has no body).
fn slot_is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

/// What the counters need to classify the frames of the next poll: our MAC
/// and addresses, the service ports, and how many listeners each TCP pool has
/// free (a SYN that finds none is refused).
fn policy(
    mac: EthernetAddress,
    iface: &Interface,
    sockets: &SocketSet<'_>,
    services: &[Bound],
    http: &[HttpSlot],
    status_port: u16,
) -> Policy {
    let mut policy = Policy {
        mac,
        addresses: iface.ip_addrs().iter().copied().collect(),
        tcp_ports: heapless::Vec::new(),
        udp_ports: heapless::Vec::new(),
    };
    for bound in services {
        let free = bound
            .tcp
            .iter()
            .filter(|c| sockets.get::<tcp::Socket>(c.handle).is_listening())
            .count();
        // At most SERVICE_COUNT <= MAX_SERVICE_PORTS entries (checked at compile time).
        let _ = policy.tcp_ports.push((bound.service.port, free));
        let _ = policy.udp_ports.push(bound.service.port);
    }
    let free = http
        .iter()
        .filter(|s| sockets.get::<tcp::Socket>(s.conn.handle).is_listening())
        .count();
    let _ = policy.tcp_ports.push((status_port, free));
    policy
}

const _: () = assert!(SERVICE_COUNT < crate::counters::MAX_SERVICE_PORTS);

/// Counts a TCP connection opening or ending, from the state a socket had at
/// the end of the last serve (`was`) and has now.
fn count_transition(counters: &mut Counters, was: tcp::State, now: tcp::State) {
    use tcp::State::*;
    let connected = |s| {
        matches!(
            s,
            Established | FinWait1 | FinWait2 | CloseWait | Closing | LastAck | TimeWait
        )
    };
    // A connection has ended once it is CLOSED, or in TIME-WAIT (where the
    // side that closed first waits; the services re-arm the socket from there).
    let ended = |s| matches!(s, Closed | TimeWait);
    if connected(now) && matches!(was, Listen | SynReceived | Closed) {
        counters.tcp_opened += 1;
    }
    if ended(now) && !ended(was) && was != Listen {
        // TIME-WAIT, or CLOSED from the last states of a close: FIN both ways.
        // CLOSED from anywhere else: a reset or a timeout.
        if now == TimeWait || matches!(was, LastAck | Closing) {
            counters.tcp_closed += 1;
        } else {
            counters.tcp_reset += 1;
        }
    }
}

#[cfg(test)]
mod transition_tests {
    use super::*;
    use tcp::State::*;

    fn count(path: &[tcp::State]) -> (u64, u64, u64) {
        let mut c = Counters::default();
        for pair in path.windows(2) {
            count_transition(&mut c, pair[0], pair[1]);
        }
        (c.tcp_opened, c.tcp_closed, c.tcp_reset)
    }

    #[test]
    fn opened_closed_reset() {
        // The peer closes first (echo under `nc -N`), seen at every poll or in leaps.
        assert_eq!(
            count(&[Listen, SynReceived, Established, CloseWait, LastAck, Closed]),
            (1, 1, 0)
        );
        // What `serve` records: it closes in the call that sees CLOSE-WAIT.
        assert_eq!(count(&[Listen, LastAck, Closed]), (1, 1, 0));
        // CLOSE-WAIT straight to CLOSED: the peer reset after its FIN.
        assert_eq!(count(&[Listen, CloseWait, Closed]), (1, 0, 1));
        // The stack closes first (the status page), ending in TIME-WAIT.
        assert_eq!(
            count(&[Listen, Established, FinWait1, FinWait2, TimeWait, Listen]),
            (1, 1, 0)
        );
        assert_eq!(
            count(&[Listen, Established, TimeWait, TimeWait, Listen]),
            (1, 1, 0)
        );
        // A reset, or a timeout, while established; a reset during the handshake.
        assert_eq!(count(&[Listen, Established, Closed, Listen]), (1, 0, 1));
        assert_eq!(count(&[Listen, SynReceived, Closed]), (0, 0, 1));
        // Listening sockets re-armed, nothing happening.
        assert_eq!(count(&[Listen, Listen, Closed, Listen]), (0, 0, 0));
    }
}

/// The stack's whole RAM, computed from the constants in [`crate::config`]
/// and the sizes of smoltcp's types, at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamBudget {
    /// TCP receive and transmit buffers, all pools.
    pub tcp_buffers: usize,
    /// UDP payload buffers and datagram metadata, all sockets.
    pub udp_buffers: usize,
    /// The socket set: each slot holds one socket's state machine.
    pub socket_storage: usize,
    /// The status page's TCP buffers.
    pub http_buffers: usize,
    /// The services' work buffer.
    pub scratch: usize,
    /// The fault injector's two frame buffers.
    pub fault_buffers: usize,
    /// The interface (addresses, routes, neighbour cache) and the service table.
    pub stack: usize,
}

impl RamBudget {
    /// The budget of this build.
    pub const fn of_this_build() -> Self {
        Self {
            tcp_buffers: 2 * TCP_SOCKETS_PER_SERVICE * size_of::<StreamBuffers>()
                + BULK_SOCKETS * (size_of::<DiscardBuffers>() + size_of::<ChargenBuffers>()),
            udp_buffers: UDP_SOCKET_COUNT * (size_of::<UdpBuffers>() + size_of::<UdpSlots>()),
            socket_storage: SOCKET_COUNT * size_of::<SocketStorage<'static>>(),
            http_buffers: HTTP_SOCKETS * size_of::<HttpBuffers>(),
            scratch: SCRATCH_BUFFER,
            fault_buffers: FAULT_FRAME_BUFFER,
            stack: size_of::<Stack<'static>>(),
        }
    }

    /// Everything together.
    pub const fn total(&self) -> usize {
        self.tcp_buffers
            + self.udp_buffers
            + self.http_buffers
            + self.socket_storage
            + self.scratch
            + self.fault_buffers
            + self.stack
    }
}

/// The budget of this build, known at compile time.
pub const RAM_BUDGET: RamBudget = RamBudget::of_this_build();

/// The small profile's promise: the whole stack in 64 KiB of RAM.
pub const SMALL_PROFILE_LIMIT: usize = 64 * 1024;
const _: () = assert!(
    !config::SMALL_PROFILE || RAM_BUDGET.total() <= SMALL_PROFILE_LIMIT,
    "the small profile must fit in 64 KiB"
);

// The two memory structs are exactly the items of the budget, nothing hidden.
const _: () = assert!(
    size_of::<Sockets<'static>>() + size_of::<Buffers>()
        == RAM_BUDGET.tcp_buffers
            + RAM_BUDGET.udp_buffers
            + RAM_BUDGET.http_buffers
            + RAM_BUDGET.socket_storage
            + RAM_BUDGET.scratch
            + RAM_BUDGET.fault_buffers
);

/// Shows `n` bytes as KiB or MiB with one decimal.
pub struct Bytes(pub usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1024 * 1024 {
            write!(
                f,
                "{}.{} MiB",
                n / (1024 * 1024),
                n % (1024 * 1024) * 10 / (1024 * 1024)
            )
        } else if n >= 1024 {
            write!(f, "{}.{} KiB", n / 1024, n % 1024 * 10 / 1024)
        } else {
            write!(f, "{n} B")
        }
    }
}

impl fmt::Display for RamBudget {
    /// A table, one line per item, with how each figure is made.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<16} {:>10}  {} sockets: echo, upper-case {} each x ({} rx + {} tx); discard, chargen {} each x ({} + {})",
            "TCP buffers",
            Bytes(self.tcp_buffers),
            TCP_SOCKET_COUNT,
            TCP_SOCKETS_PER_SERVICE,
            Bytes(TCP_RX_BUFFER),
            Bytes(TCP_TX_BUFFER),
            BULK_SOCKETS,
            Bytes(BULK_BUFFER),
            Bytes(BULK_IDLE_BUFFER)
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  {} sockets x ({} rx + {} tx + 2 x {} datagram slots)",
            "UDP buffers",
            Bytes(self.udp_buffers),
            UDP_SOCKET_COUNT,
            Bytes(UDP_RX_BUFFER),
            Bytes(UDP_TX_BUFFER),
            UDP_PACKET_SLOTS
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  {} slots x {} B (socket state machines)",
            "socket storage",
            Bytes(self.socket_storage),
            SOCKET_COUNT,
            size_of::<SocketStorage<'static>>()
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  {} status page connections x ({} rx + {} tx)",
            "HTTP buffers",
            Bytes(self.http_buffers),
            HTTP_SOCKETS,
            Bytes(HTTP_RX_BUFFER),
            Bytes(HTTP_TX_BUFFER)
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  work buffer: services, status page, a frame to corrupt",
            "scratch",
            Bytes(self.scratch)
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  a sink for a dropped frame (a corrupted one is copied into scratch)",
            "fault buffer",
            Bytes(self.fault_buffers)
        )?;
        writeln!(
            f,
            "  {:<16} {:>10}  interface, neighbour cache, routes, service table",
            "stack",
            Bytes(self.stack)
        )?;
        write!(
            f,
            "  {:<16} {:>10}  fixed at build time; nothing is allocated while running",
            "total",
            Bytes(self.total())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_display() {
        let show = |n| {
            let mut s = heapless::String::<32>::new();
            fmt::write(&mut s, format_args!("{}", Bytes(n))).unwrap();
            s
        };
        assert_eq!(show(512), "512 B");
        assert_eq!(show(1536), "1.5 KiB");
        assert_eq!(show(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
    }

    #[test]
    fn budget_adds_up() {
        let b = RAM_BUDGET;
        assert_eq!(
            b.tcp_buffers,
            2 * TCP_SOCKETS_PER_SERVICE * (TCP_RX_BUFFER + TCP_TX_BUFFER)
                + 2 * BULK_SOCKETS * (BULK_BUFFER + BULK_IDLE_BUFFER)
        );
        assert_eq!(
            b.total(),
            b.tcp_buffers
                + b.udp_buffers
                + b.http_buffers
                + b.socket_storage
                + b.scratch
                + b.fault_buffers
                + b.stack
        );
        assert!(b.udp_buffers >= UDP_SOCKET_COUNT * (UDP_RX_BUFFER + UDP_TX_BUFFER));
    }
}

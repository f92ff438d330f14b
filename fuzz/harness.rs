//! What each fuzz target does with its input, and the properties it checks.
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, coverage
//! guided, nightly) and by `tests/robustness.rs`, which replays every file
//! of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the
//! same functions on stable, in CI: a crash the fuzzer finds is copied into
//! `fuzz/regressions/<target>/` and is a regression test from then on.
//!
//! Every function panics when a property fails; libFuzzer reports that as
//! a crash and saves the input.
//!
//! | target | input | properties |
//! |---|---|---|
//! | [`frame_parse`] | any bytes | `inspect::Frame::parse` and its `Display` never panic; the layers it reports are consistent with the bytes |
//! | [`transforms`] | any bytes | upper-case changes exactly `a`-`z`, is idempotent and the same on any chunking; echo changes nothing |
//! | [`http_request`] | any bytes | `http::head_len` and `http::parse` never panic; a head ends with an empty line; what parses is a GET or HEAD of a known page |
//! | [`stack_rx`] | frames with delays | the whole receive path of `Stack::poll`: no panic; everything it sends is a well-formed frame from its own MAC within the MTU; the counters count every frame; the pools never hold more than their size |

#![allow(dead_code)] // Each includer uses part of it.

use std::collections::VecDeque;
use std::fmt::Write as _;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use tapstack::config::{ECHO_PORT, TCP_SOCKETS_PER_SERVICE, UPPER_PORT};
use tapstack::inspect::{Frame, Net, Transport};
use tapstack::services::{echo, http, upper};
use tapstack::{Buffers, Settings, Sockets, Stack};

/// Ethernet frame MTU of the fuzzed device (IP MTU 1500, like a TAP).
pub const MTU: usize = 1514;

/// `Frame::parse` on any bytes.
pub fn frame_parse(data: &[u8]) {
    let frame = Frame::parse(data);
    let mut line = String::new();
    write!(line, "{frame}").expect("Display into a String cannot fail");
    assert_eq!(frame.len, data.len());
    if data.len() < 14 {
        assert!(
            frame.ethernet.is_none(),
            "an Ethernet header in {} bytes",
            data.len()
        );
        assert_eq!(frame.net, Net::Malformed);
    }
    if frame.ethernet.is_none() || matches!(frame.net, Net::Malformed | Net::Other) {
        assert!(
            matches!(frame.transport, Transport::None | Transport::Malformed),
            "a transport layer without a network layer: {frame:?}"
        );
    }
}

/// The byte transforms: upper-case and echo, on any bytes and any chunking.
/// The first byte chooses where the data is cut into chunks.
pub fn transforms(data: &[u8]) {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = bytes.to_vec();
    upper::to_upper(&mut whole);
    for (i, (&before, &after)) in bytes.iter().zip(&whole).enumerate() {
        // Written from the ASCII table, not from the code under test.
        let expected = if (0x61..=0x7a).contains(&before) {
            before - 0x20
        } else {
            before
        };
        assert_eq!(
            after, expected,
            "byte {i}: {before:#04x} became {after:#04x}"
        );
    }
    let mut again = whole.clone();
    upper::to_upper(&mut again);
    assert_eq!(again, whole, "upper-case is not idempotent");
    let mut chunked = bytes.to_vec();
    let step = usize::from(cut).max(1);
    for chunk in chunked.chunks_mut(step) {
        upper::to_upper(chunk);
    }
    assert_eq!(chunked, whole, "upper-case depends on chunking ({step})");
    let mut echoed = bytes.to_vec();
    echo::transform(&mut echoed);
    assert_eq!(echoed, bytes, "echo changed a byte");
}

/// The status page's request parser, as the stack calls it: find the end
/// of the head, then parse the head.
pub fn http_request(data: &[u8]) {
    let Some(n) = http::head_len(data) else {
        return;
    };
    assert!(n <= data.len(), "head_len {n} beyond {} bytes", data.len());
    let head = &data[..n];
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "a head that does not end with an empty line: {:?}",
        String::from_utf8_lossy(head)
    );
    if let Ok(request) = http::parse(head) {
        assert!(
            head.starts_with(if request.head_only { b"HEAD " } else { b"GET " }),
            "parsed {request:?} from {:?}",
            String::from_utf8_lossy(head)
        );
    }
    // The answer to it always fits a response buffer of the status page's size.
    let mut buf = vec![0u8; 512];
    let mut out = http::SliceWriter::new(&mut buf);
    let status = match http::parse(head) {
        Ok(_) => http::Status::Ok,
        Err(status) => status,
    };
    http::respond(
        &mut out,
        status,
        "text/plain",
        false,
        http::error_body(status),
    )
    .expect("an error response fits 512 bytes");
    assert!(out.written().starts_with(b"HTTP/1.1 "));
}

/// An in-memory Ethernet device: frames to receive, and every frame sent.
pub struct Wire {
    /// Frames waiting for the stack.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames the stack sent, in order.
    pub tx: Vec<Vec<u8>>,
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// A received frame.
pub struct Rx(Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for a sent frame.
pub struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

/// Splits a `stack_rx` input into (delay in ms, frame) records: one byte
/// of delay, two bytes of big-endian length, the frame (cut at [`MTU`] and
/// at the end of the input).
pub fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let delay = data[0];
        let len = (usize::from(data[1]) << 8 | usize::from(data[2])).min(MTU);
        let rest = &data[3..];
        let take = len.min(rest.len());
        out.push((delay, &rest[..take]));
        data = &rest[take..];
    }
    out
}

/// The inverse of [`records`], to build seeds.
pub fn encode(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (delay, frame) in records {
        out.push(*delay);
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// A fresh stack on a [`Wire`], with the default settings and a fixed
/// random seed, so that the same input always meets the same stack.
pub fn with_stack<T>(f: impl FnOnce(&mut Stack<'_>, &mut Wire, &mut Instant) -> T) -> T {
    let mut wire = Wire {
        rx: VecDeque::new(),
        tx: Vec::new(),
    };
    let mut sockets = Box::new(Sockets::new());
    let mut buffers = Box::new(Buffers::new());
    let mut now = Instant::from_secs(1);
    let settings = Settings {
        random_seed: 0x7a9_57ac,
        ..Settings::default()
    };
    let mut stack = Stack::new(&settings, &mut sockets, &mut buffers, &mut wire, now)
        .expect("the default settings are valid");
    f(&mut stack, &mut wire, &mut now)
}

/// Feeds one frame after `delay_ms`, polls, and checks what came out.
pub fn feed(stack: &mut Stack<'_>, wire: &mut Wire, now: &mut Instant, delay_ms: u8, frame: &[u8]) {
    *now += Duration::from_millis(u64::from(delay_ms));
    wire.rx.push_back(frame.to_vec());
    poll(stack, wire, *now);
}

/// Polls until the stack has nothing left to do at `now` (bounded), then
/// checks every frame it sent.
pub fn poll(stack: &mut Stack<'_>, wire: &mut Wire, now: Instant) {
    let sent_before = wire.tx.len();
    for _ in 0..64 {
        let delay = stack.poll(now, wire);
        if wire.rx.is_empty() && delay != Some(Duration::ZERO) {
            break;
        }
    }
    for frame in &wire.tx[sent_before..] {
        check_sent(frame);
    }
    for port in [ECHO_PORT, UPPER_PORT] {
        assert!(stack.tcp_in_use(port) <= TCP_SOCKETS_PER_SERVICE);
    }
}

/// A frame the stack sent: from its own MAC, within the MTU, well formed.
pub fn check_sent(frame: &[u8]) {
    assert!(
        (14..=MTU).contains(&frame.len()),
        "sent a {}-byte frame",
        frame.len()
    );
    let parsed = Frame::parse(frame);
    let eth = parsed
        .ethernet
        .expect("a sent frame has an Ethernet header");
    assert_eq!(
        eth.src,
        tapstack::config::STACK_MAC,
        "sent from another MAC"
    );
    assert!(
        !matches!(parsed.net, Net::Malformed) && !matches!(parsed.transport, Transport::Malformed),
        "sent a malformed frame: {parsed}"
    );
}

/// The stack's whole receive path: each record's frame is received after
/// its delay, then two minutes pass in steps of 5 s (retransmissions,
/// keep-alives, the user timeout). Nothing may panic; every sent frame is well
/// formed (see [`check_sent`]); every received frame is counted.
pub fn stack_rx(data: &[u8]) {
    let records = records(data);
    with_stack(|stack, wire, now| {
        for (delay, frame) in &records {
            feed(stack, wire, now, *delay, frame);
        }
        for _ in 0..24 {
            *now += Duration::from_secs(5);
            poll(stack, wire, *now);
        }
        let counters = stack.counters();
        assert_eq!(
            counters.link_in.frames,
            records.len() as u64,
            "a frame went uncounted"
        );
        assert!(counters.dropped_total() <= counters.link_in.frames);
        assert_eq!(
            counters.link_out.frames,
            wire.tx.len() as u64,
            "a sent frame went uncounted"
        );
    });
}

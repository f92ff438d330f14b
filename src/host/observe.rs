//! What the binary shows of each frame: a pcap capture for Wireshark
//! (`--pcap`) and a one-line-per-frame trace (`--trace`).
//!
//! The pcap format is written by smoltcp's [`PcapSink`] (its global and
//! packet headers), into our own sink: smoltcp's sink for `std::io::Write`
//! panics on a write error (a closed `| wireshark` pipe would kill the stack)
//! and flushes after every packet. Ours remembers the error, stops capturing
//! and says so once; it is flushed once per poll, which keeps
//! `tapstack --pcap - | wireshark -k -i -` live without a syscall per frame.
//!
//! What the pcap holds: every frame that crossed the link, in both directions,
//! exactly as its receiver got it: a frame the fault injector corrupted is
//! written corrupted (Wireshark flags its checksum), a frame it dropped is not
//! written (Wireshark shows the gap and the retransmission). The trace shows
//! every frame, dropped ones included, with what was done to it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::time::Instant;
use tapstack::faults::Fault;
use tapstack::inspect::{Direction, Frame};
use tapstack::link::Observer;

/// Where a capture or trace goes.
pub enum Output {
    /// A file.
    File(BufWriter<File>),
    /// Standard output (`--pcap -`, or the trace).
    Stdout(BufWriter<io::Stdout>),
    /// Standard error (the trace while the pcap goes to stdout).
    Stderr(io::Stderr),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(w) => w.write(buf),
            Self::Stdout(w) => w.write(buf),
            Self::Stderr(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::File(w) => w.flush(),
            Self::Stdout(w) => w.flush(),
            Self::Stderr(w) => w.flush(),
        }
    }
}

/// A pcap stream that survives its reader going away.
pub struct Pcap {
    out: Output,
    error: Option<io::Error>,
    /// Wall-clock microseconds at the stack's time zero, so the capture shows real dates.
    epoch_offset_us: i64,
}

impl PcapSink for Pcap {
    fn write(&mut self, data: &[u8]) {
        if self.error.is_none()
            && let Err(err) = self.out.write_all(data)
        {
            self.error = Some(err);
        }
    }

    /// Called by smoltcp after every packet: flushing is done once per poll instead.
    fn flush(&mut self) {}
}

impl Pcap {
    /// Starts a capture: writes the pcap global header (Ethernet link type).
    pub fn new(out: Output) -> io::Result<Self> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut pcap = Self {
            out,
            error: None,
            epoch_offset_us: i64::try_from(now.as_micros()).unwrap_or(0),
        };
        pcap.global_header(PcapLinkType::Ethernet);
        pcap.out.flush()?;
        match pcap.error.take() {
            Some(err) => Err(err),
            None => Ok(pcap),
        }
    }

    fn record(&mut self, now: Instant, bytes: &[u8]) {
        if self.error.is_none() {
            let wall = Instant::from_micros(self.epoch_offset_us + now.total_micros());
            self.packet(wall, bytes);
        }
    }

    fn flush_now(&mut self) {
        if self.error.is_none()
            && let Err(err) = self.out.flush()
        {
            self.error = Some(err);
        }
    }
}

/// The binary's observer: pcap and trace, each optional.
pub struct HostObserver {
    pcap: Option<Pcap>,
    trace: Option<Output>,
    /// Set once the pcap failed and the user was told.
    pcap_reported: bool,
}

impl HostObserver {
    /// An observer writing to these outputs.
    pub fn new(pcap: Option<Pcap>, trace: Option<Output>) -> Self {
        Self {
            pcap,
            trace,
            pcap_reported: false,
        }
    }

    /// True when there is anything to do per frame.
    pub fn active(&self) -> bool {
        self.pcap.is_some() || self.trace.is_some()
    }

    /// Pushes buffered output out (after each poll), and reports a capture
    /// that stopped because its reader went away.
    pub fn flush(&mut self) {
        if let Some(pcap) = &mut self.pcap {
            pcap.flush_now();
            if let Some(err) = &pcap.error
                && !self.pcap_reported
            {
                super::say(format_args!(
                    "tapstack: the pcap capture stopped ({}); the stack keeps serving",
                    super::OsError(err)
                ));
                self.pcap_reported = true;
            }
        }
        if let Some(trace) = &mut self.trace {
            let _ = trace.flush();
        }
    }
}

impl Observer for HostObserver {
    fn frame(
        &mut self,
        now: Instant,
        dir: Direction,
        bytes: &[u8],
        frame: &Frame,
        fault: Option<Fault>,
    ) {
        if let Some(pcap) = &mut self.pcap
            && !matches!(fault, Some(Fault::Dropped(_)))
        {
            pcap.record(now, bytes);
        }
        if let Some(trace) = &mut self.trace {
            let arrow = match dir {
                Direction::In => "IN ",
                Direction::Out => "OUT",
            };
            let secs = now.total_micros() / 1_000_000;
            let micros = now.total_micros() % 1_000_000;
            let result = match fault {
                Some(fault) => writeln!(trace, "{secs:>5}.{micros:06} {arrow} {frame}  {fault}"),
                None => writeln!(trace, "{secs:>5}.{micros:06} {arrow} {frame}"),
            };
            if result.is_err() {
                self.trace = None; // the reader went away: stop tracing, keep serving
            }
        }
    }
}

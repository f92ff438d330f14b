//! A small harness: the `hostnet` binary, a `hostnet serve` child that is
//! stopped on drop, and bounded runs.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A safety bound for anything a test waits for on a loaded machine; not an
/// expectation of speed.
pub const BOUND: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn hostnet() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostnet"))
}

/// `hostnet args...` on the host (loopback tests).
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(hostnet());
    command.args(args);
    command
}

/// Runs `command` with `input` on stdin, bounded by [`BOUND`].
pub fn run(command: Command, input: &[u8]) -> Output {
    crate::netns::run_bounded(command, input, BOUND)
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless `out` exited with `code` and its stderr holds every needle.
pub fn assert_exit(out: &Output, code: i32, needles: &[&str], what: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit status\n--- stdout ---\n{}\n--- stderr ---\n{err}",
        stdout(out)
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{err}"
        );
    }
}

/// Fails unless `out` succeeded.
pub fn assert_ok(out: &Output, what: &str) {
    assert_exit(out, 0, &[], what);
}

/// A running `hostnet serve`, stopped by its PID on drop (SIGCONT first, in
/// case a test stopped it, then SIGTERM, a bounded wait, SIGKILL).
pub struct Serve {
    child: Child,
    /// Where echo listens, one address per `--bind`.
    pub echo: Vec<SocketAddr>,
    /// Where upper-case listens.
    pub upper: Vec<SocketAddr>,
    /// Where discard listens.
    pub discard: Vec<SocketAddr>,
    /// Where chargen listens.
    pub chargen: Vec<SocketAddr>,
    stderr: mpsc::Receiver<String>,
}

impl Serve {
    /// Starts `command` (a `hostnet serve ...`) and waits for its ready line.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (err_tx, stderr) = mpsc::channel();
        thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr_pipe.read_to_string(&mut all);
            let _ = err_tx.send(all);
        });
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Self {
            child,
            echo: Vec::new(),
            upper: Vec::new(),
            discard: Vec::new(),
            chargen: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(why) => {
                    let _ = serve.child.kill();
                    let _ = serve.child.wait();
                    let err = serve.stderr.recv_timeout(BOUND).unwrap_or_default();
                    panic!("hostnet serve did not get ready ({why:?}); stderr:\n{err}");
                }
            };
            if line.starts_with("hostnet: ready") {
                break;
            }
            // hostnet: serving echo on tcp+udp 127.0.0.1:40123
            let addr: Option<SocketAddr> = line.rsplit(' ').next().and_then(|a| a.parse().ok());
            let service = line
                .strip_prefix("hostnet: serving ")
                .and_then(|rest| rest.split(' ').next());
            match (service, addr) {
                (Some("echo"), Some(addr)) => serve.echo.push(addr),
                (Some("upper-case"), Some(addr)) => serve.upper.push(addr),
                (Some("discard"), Some(addr)) => serve.discard.push(addr),
                (Some("chargen"), Some(addr)) => serve.chargen.push(addr),
                _ => panic!("unexpected line from hostnet serve: {line:?}"),
            }
        }
        assert!(
            !serve.echo.is_empty()
                && !serve.upper.is_empty()
                && !serve.discard.is_empty()
                && !serve.chargen.is_empty(),
            "not every service announced"
        );
        serve
    }

    /// Its PID.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a PID fits pid_t")
    }

    /// Sends `signal` to it (by its own PID; not yet reaped, so not reused).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory effects; the PID is our unreaped child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Stops it with SIGINT and returns its exit code and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal(libc::SIGINT);
        let code = wait_bounded(&mut self.child).and_then(|s| s.code());
        let err = self.stderr.recv_timeout(BOUND).unwrap_or_default();
        (code, err)
    }
}

fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait().ok()
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGCONT);
            self.signal(libc::SIGTERM);
            let _ = wait_bounded(&mut self.child);
        }
    }
}

/// `hostnet serve` on loopback (IPv4 and IPv6), on free ports.
pub fn serve_loopback() -> Serve {
    Serve::start(command(&[
        "serve",
        "--bind",
        "127.0.0.1",
        "--bind",
        "::1",
        "--echo-port",
        "0",
        "--upper-port",
        "0",
        "--discard-port",
        "0",
        "--chargen-port",
        "0",
    ]))
}

/// The first `len` bytes of the chargen stream, by the core's own pattern.
pub fn chargen_stream(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    tapstack::services::chargen::fill(0, &mut out);
    out
}

/// Checks one target's discard and chargen results: every byte of `size`
/// delivered and verified, one rate per round, and a median among them.
pub fn assert_oneway_consistent(target: &serde_json::Value, size: u64, rounds: usize) {
    let label = &target["label"];
    assert_eq!(target["complete"], true, "{label}: {target}");
    for (key, counted) in [
        ("discard", "bytes_delivered"),
        ("chargen", "bytes_verified"),
    ] {
        let m = &target[key];
        assert_eq!(m["bytes_expected"], size, "{label} {key}: {m}");
        assert_eq!(m[counted], size, "{label} {key}: {m}");
        let each: Vec<f64> = m["bits_per_second_rounds"]
            .as_array()
            .unwrap_or_else(|| panic!("{label} {key}: no rounds: {m}"))
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect();
        assert_eq!(each.len(), rounds, "{label} {key}: one rate per round");
        let median = m["bits_per_second_median"].as_f64().unwrap();
        let (low, high) = each
            .iter()
            .fold((f64::MAX, 0.0_f64), |(l, h), &r| (l.min(r), h.max(r)));
        assert!(
            low > 0.0 && low <= median && median <= high,
            "{label} {key}: median {median} among {each:?}"
        );
        // Bits are 8 x bytes: the overall rate, in bytes, matches its seconds.
        let (bytes_per_second, seconds) = (
            m["bytes_per_second"].as_f64().unwrap(),
            m["seconds"].as_f64().unwrap(),
        );
        assert!(
            (bytes_per_second * seconds - size as f64).abs() < 1.0,
            "{label} {key}: {bytes_per_second} B/s x {seconds} s is not {size} B"
        );
    }
}

/// Bytes every value of which appears, in an order that is not periodic
/// with any buffer size: a fixed xorshift stream.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// What the upper-case service answers to `bytes`, by the core's own transform.
pub fn upper(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    tapstack::services::upper::to_upper(&mut out);
    out
}

/// Parses `bench --json` output.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}):\n{}", stdout(out)))
}

/// Checks that one target's bench results add up: every byte verified,
/// every datagram accounted for, every connection attempt counted.
pub fn assert_consistent(
    target: &serde_json::Value,
    size: u64,
    count: u64,
    clients: u64,
    rounds: u64,
) {
    let label = &target["label"];
    assert_eq!(target["complete"], true, "{label}: {target}");
    let tcp = &target["tcp"];
    assert_eq!(tcp["bytes_expected"], size, "{label} tcp");
    assert_eq!(tcp["bytes_verified"], size, "{label} tcp");
    let udp = &target["udp"];
    assert_eq!(udp["sent"], count, "{label} udp");
    let (answered, lost) = (
        udp["answered"].as_u64().unwrap(),
        udp["lost"].as_u64().unwrap(),
    );
    assert_eq!(answered + lost, count, "{label} udp: answered + lost");
    assert!(
        udp["p50_us"].as_f64().unwrap() <= udp["p99_us"].as_f64().unwrap(),
        "{label}: p50 <= p99"
    );
    assert!(
        udp["p99_us"].as_f64().unwrap() <= udp["max_us"].as_f64().unwrap(),
        "{label}: p99 <= max"
    );
    let c = &target["connect"];
    let sum: u64 = ["connected", "refused", "timed_out", "other_errors"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum();
    assert_eq!(
        sum,
        c["attempts"].as_u64().unwrap(),
        "{label} connect: outcomes add up to attempts"
    );
    assert!(
        c["connected"].as_u64().unwrap() > 0,
        "{label}: some connections"
    );
    let k = &target["concurrency"];
    assert_eq!(k["clients"], clients * rounds, "{label} concurrency");
    assert_eq!(
        k["clients_verified"],
        clients * rounds,
        "{label} concurrency"
    );
    assert_eq!(k["bytes_expected"], size, "{label} concurrency");
    assert_eq!(k["bytes_verified"], size, "{label} concurrency");
}

/// A `hostnet` run whose stderr is watched line by line while it runs.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stdout: mpsc::Receiver<Vec<u8>>,
}

impl Running {
    /// Spawns `command` with stdin closed.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        let mut out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        let (tx, stdout) = mpsc::channel();
        thread::spawn(move || {
            let mut all = Vec::new();
            let _ = out.read_to_end(&mut all);
            let _ = tx.send(all);
        });
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            stdout,
        }
    }

    /// Waits (at most [`BOUND`]) for a stderr line that contains `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + BOUND;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(why) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with {needle:?} ({why:?}); so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits (at most [`BOUND`]) for it to exit; returns all its output.
    pub fn finish(mut self) -> Output {
        let status = wait_bounded(&mut self.child).expect("the run ended");
        let stdout = self.stdout.recv_timeout(BOUND).unwrap_or_default();
        while let Ok(line) = self.lines.recv_timeout(BOUND) {
            self.seen.push(line);
        }
        let mut stderr = self.seen.join("\n").into_bytes();
        stderr.push(b'\n');
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! Fixtures for end-to-end tests of the real `tapstack` binary on a TAP.
//!
//! Every test gets a private network namespace ([`Netns`]): the stack is
//! started inside it with `--create` ([`StackProcess`]), so its TAP and the
//! host side's addresses exist only there, and every client runs inside it
//! too, either as a tool (`nc`, `telnet`, `socat`, `ping`: [`Netns::command`],
//! [`Tool`]) or as `std::net` sockets made on a thread that entered the
//! namespace ([`Netns::run`]). Nothing a test sends can leave the namespace,
//! and tests run in parallel because every name is unique.
//!
//! Guarantees:
//! - a namespace is deleted when its [`Netns`] is dropped, also on panic;
//! - a process is stopped when its [`StackProcess`] or [`Tool`] is dropped,
//!   by its own PID (SIGTERM, a bounded wait, then SIGKILL), never by name;
//! - every wait is bounded; a missing prerequisite (root, a tool) fails the
//!   test with the command that fixes it, it never skips.
//!
//! Another test binary reuses this file with
//!
//! ```ignore
//! #[path = "../../tests/support/netns.rs"]
//! mod netns;
//! ```
//!
//! and finds the binary through [`binary`].

// Each test binary that includes this file uses a different part of it.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The line the binary prints on stdout once it serves.
pub const READY: &str = "tapstack: ready";
/// How long the binary may take to print [`READY`]: a safety bound for a
/// loaded CI machine, not an expectation.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM or SIGINT before it is
/// killed with SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where `ip netns add` mounts a namespace so that it can be entered.
const NETNS_DIR: &str = "/var/run/netns";

/// Gives the numbers in namespace and directory names; with the PID it makes
/// every name unique across the tests of all test binaries running at once.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// `ip netns add` and `del` of parallel tests go one at a time: the first
/// `add` on a machine sets up the mount under [`NETNS_DIR`], and two racing
/// each other may stack that mount twice.
static NETNS_SETUP: Mutex<()> = Mutex::new(());

/// A name no other fixture of this run or of another test process uses:
/// `tst-<pid>-<counter>-<tag>`.
fn unique_name(tag: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("tst-{}-{n}-{tag}", std::process::id())
}

/// Debian packages that provide the tools the tests run.
const PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nc", "netcat-openbsd"),
    ("telnet", "telnet"),
    ("socat", "socat"),
    ("ping", "iputils-ping"),
    ("tshark", "tshark"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("runuser", "util-linux"),
    ("mount", "mount"),
    ("sh", "dash"),
];

/// Fails the test unless it runs as root, which namespaces and TAPs need.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "needs root: run as root, as CI does (e.g. `sudo scripts/check.sh`); euid is {euid}"
    );
}

/// Fails the test unless `name` is on `PATH`, saying which Debian package
/// provides it. For `nc` it also checks that it is the OpenBSD netcat, the
/// one with `-N` (half-close after EOF on stdin).
pub fn require_tool(name: &str) {
    let package = PACKAGES
        .iter()
        .find(|(tool, _)| *tool == name)
        .map_or(name, |(_, package)| package);
    let Some(path) = find_in_path(name) else {
        panic!("needs `{name}` from Debian package {package}: apt-get install {package}");
    };
    if name == "nc" {
        // OpenBSD nc prints its name with the usage on `-h` (exit code 1).
        let help = Command::new(&path).arg("-h").stdin(Stdio::null()).output();
        let is_openbsd = help.is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout).contains("OpenBSD")
                || String::from_utf8_lossy(&out.stderr).contains("OpenBSD")
        });
        assert!(
            is_openbsd,
            "needs the OpenBSD `nc` (it has -N): {} is another netcat; apt-get install netcat-openbsd",
            path.display()
        );
    }
}

/// The first executable file called `name` in `PATH`, as `Command` finds it.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The `tapstack` binary under test.
///
/// In the tapstack package's own tests this is `CARGO_BIN_EXE_tapstack`. A
/// test binary of another package (which cargo does not tell) gets
/// `$TAPSTACK_BIN` if set, else the `tapstack` next to its own `deps/`
/// directory, where `cargo test --workspace` builds it.
pub fn binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_tapstack") {
        return PathBuf::from(path);
    }
    if let Some(path) = std::env::var_os("TAPSTACK_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/tapstack
    let guess = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("tapstack"));
    match guess {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "cannot find the tapstack binary next to {}: build it (`cargo build --bin tapstack`) or set TAPSTACK_BIN",
            exe.display()
        ),
    }
}

/// A private network namespace, deleted on drop.
///
/// Its loopback is up and it has no other interface until a stack creates
/// its TAP in it. Only processes started through [`Netns::command`] and
/// threads inside [`Netns::run`] see it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `tst-<pid>-<counter>-<tag>` and brings its loopback up. Fails
    /// the test if not root or if `ip` is missing. Keep `tag` short: it is
    /// only there to tell namespaces apart in `ip netns list`.
    pub fn new(tag: &str) -> Self {
        require_root();
        require_tool("ip");
        let name = unique_name(tag);
        {
            let _serial = NETNS_SETUP
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            run_ip(&["netns", "add", &name]);
        }
        // From here on, Drop deletes it even if the next step fails.
        let netns = Self { name };
        run_ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's name, as `ip netns` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: a command that runs `program` inside the
    /// namespace. `ip netns exec` execs the program, so the child's PID is
    /// the program's own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `f` on a new thread that has entered the namespace, and returns
    /// what it returns (a panic in `f` fails the caller with the same
    /// message). Sockets `f` makes live in the namespace, and so do threads
    /// `f` spawns; the caller's thread is never moved.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new(NETNS_DIR).join(&self.name);
        thread::scope(|scope| {
            let inside = thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(scope, move || {
                    enter(&path);
                    f()
                })
                .expect("spawn a thread to enter the namespace");
            match inside.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// True if the interface `dev` exists in the namespace.
    pub fn link_exists(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run `ip link show`")
            .success()
    }

    /// The output of `ip -n NAME args...`, failing the test if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ip(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _serial = NETNS_SETUP
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(err) => eprintln!("ip netns del {}: {err}", self.name),
        }
    }
}

/// Runs `ip args...` and returns its stdout; fails the test if it fails.
fn run_ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run `ip` (Debian package iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into the network namespace mounted at `path`.
fn enter(path: &Path) {
    let file = File::open(path).unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
    // SAFETY: the descriptor is open for the whole call; setns only changes
    // this thread's network namespace, which no other thread shares.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "setns({}): {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Sends `signal` to `child` unless it has already exited, waits at most
/// [`EXIT_TIMEOUT`] for it, then kills it with SIGKILL. Returns how it ended.
fn terminate(child: &mut Child, signal: libc::c_int) -> ExitStatus {
    if let Some(status) = child.try_wait().expect("query a child's status") {
        return status;
    }
    // Not reaped yet, so the PID is still this child's and cannot be reused.
    let pid = libc::pid_t::try_from(child.id()).expect("a PID fits pid_t");
    // SAFETY: kill has no memory effects; the PID is our own unreaped child.
    unsafe { libc::kill(pid, signal) };
    if let Some(status) = wait_bounded(child, EXIT_TIMEOUT) {
        return status;
    }
    eprintln!("pid {pid} ignored signal {signal} for {EXIT_TIMEOUT:?}: SIGKILL");
    // Child::kill only signals a child that has not been reaped.
    let _ = child.kill();
    child.wait().expect("wait for a killed child")
}

/// Waits for `child` to exit, at most `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("query a child's status") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Reads `from` to its end on a thread, appending to a shared buffer.
fn collect(from: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let reader = thread::spawn(move || {
        let mut from = from;
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            sink.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, reader)
}

/// A snapshot of a shared buffer, as text.
fn text(buffer: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(
        &buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
    .into_owned()
}

/// A running `tapstack --create` inside a namespace, stopped on drop.
///
/// Its stdout and stderr are read on threads the whole time, so it never
/// blocks on a full pipe, and both are kept for messages.
pub struct StackProcess<'ns> {
    netns: &'ns Netns,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl<'ns> StackProcess<'ns> {
    /// Starts `tapstack --create extra_args...` in `netns` and returns once it
    /// has printed [`READY`]; fails the test with its stderr if it does not
    /// within [`READY_TIMEOUT`] or exits first.
    ///
    /// The stack is sent SIGTERM if the thread that started it dies (the
    /// test process was killed): start and drop it on the same thread.
    pub fn start(netns: &'ns Netns, extra_args: &[&str]) -> Self {
        let mut command = netns.command(binary());
        command
            .arg("--create")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn `ip netns exec ... tapstack`");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let out = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = Arc::clone(&out);
        let out_reader = thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut ready_tx = Some(ready_tx);
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line) {
                    Ok(1..) => {}
                    _ => break,
                }
                sink.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(&line);
                if line.starts_with(READY.as_bytes())
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let (err, err_reader) = collect(stderr);
        let mut stack = Self {
            netns,
            child,
            stdout: out,
            stderr: err,
            readers: vec![out_reader, err_reader],
        };

        let why = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => return stack,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                format!("did not print `{READY}` within {READY_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                format!("closed stdout without printing `{READY}`")
            }
        };
        let status = terminate(&mut stack.child, libc::SIGTERM);
        stack.join_readers();
        panic!(
            "tapstack {} in {} ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            why,
            netns.name(),
            text(&stack.stdout),
            text(&stack.stderr)
        );
    }

    /// The stack's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Sends SIGTERM and returns how it exited (SIGKILL after
    /// [`EXIT_TIMEOUT`]).
    pub fn stop(self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) and returns how it exited.
    pub fn stop_with(mut self, signal: libc::c_int) -> ExitStatus {
        let status = terminate(&mut self.child, signal);
        self.join_readers();
        status
    }

    /// Stops it with SIGTERM and fails the test unless it exits with 0:
    /// proves it was still running, and healthy, at the end of a test.
    pub fn stop_cleanly(self) {
        let netns = self.netns.name().to_owned();
        let stderr = Arc::clone(&self.stderr);
        let status = self.stop();
        assert!(
            status.success(),
            "tapstack in {netns} ended with {status}; stderr:\n{}",
            text(&stderr)
        );
    }

    /// Waits for the output threads; they end once the process has exited.
    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for StackProcess<'_> {
    fn drop(&mut self) {
        if self.readers.is_empty() {
            return; // already stopped
        }
        let status = terminate(&mut self.child, libc::SIGTERM);
        self.join_readers();
        if !status.success() {
            eprintln!(
                "tapstack in {} ended with {status}; stderr:\n{}",
                self.netns.name(),
                text(&self.stderr)
            );
        }
    }
}

/// A client tool (`nc`, `telnet`, `socat`...) with piped stdin, stdout and
/// stderr, stopped on drop.
pub struct Tool {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Chunks of stdout as they arrive; disconnected at EOF.
    chunks: mpsc::Receiver<Vec<u8>>,
    /// Everything read from stdout so far.
    seen: Vec<u8>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Tool {
    /// Spawns `command` (usually from [`Netns::command`]) with piped stdio.
    pub fn spawn(mut command: Command) -> Self {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {what}: {err}"));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let (tx, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("stderr is piped"));
        Self {
            what,
            child,
            stdin,
            chunks,
            seen: Vec::new(),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Writes `bytes` to its stdin.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|err| panic!("write to {}: {err}", self.what));
    }

    /// Closes its stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout until `done(everything so far)` holds, and returns
    /// everything so far. Fails the test, with what it got and its stderr, if
    /// that takes longer than `timeout` or stdout ends first.
    pub fn read_until(&mut self, done: impl Fn(&[u8]) -> bool, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(why) => panic!(
                    "{}: {} after {timeout:?}\n--- stdout so far ---\n{:?}\n--- stderr ---\n{}",
                    self.what,
                    match why {
                        mpsc::RecvTimeoutError::Timeout => "no expected output",
                        mpsc::RecvTimeoutError::Disconnected => "stdout ended",
                    },
                    String::from_utf8_lossy(&self.seen),
                    text(&self.stderr)
                ),
            }
        }
        self.seen.clone()
    }

    /// Closes stdin and waits at most `timeout` for it to exit by itself;
    /// fails the test (after killing it) if it does not. Returns its status
    /// and all its output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        self.close_stdin();
        match wait_bounded(&mut self.child, timeout) {
            Some(status) => self.output(status),
            None => {
                let status = terminate(&mut self.child, libc::SIGTERM);
                let what = self.what.clone();
                let out = self.output(status);
                panic!(
                    "{what} did not exit within {timeout:?}\n--- stdout ---\n{:?}\n--- stderr ---\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Stops it (SIGTERM, then SIGKILL after [`EXIT_TIMEOUT`]) and returns its
    /// status and all its output.
    pub fn stop(mut self) -> Output {
        self.close_stdin();
        let status = terminate(&mut self.child, libc::SIGTERM);
        self.output(status)
    }

    /// Collects the rest of stdout and stderr of the exited process.
    fn output(&mut self, status: ExitStatus) -> Output {
        // The process has exited, so its pipes reach EOF; the bound only
        // guards against a grandchild that kept them open.
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while let Ok(chunk) = self
            .chunks
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.extend_from_slice(&chunk);
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        Output {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr,
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = terminate(&mut self.child, libc::SIGTERM);
    }
}

/// Runs `command` with `input` on stdin (then EOF) and returns its output;
/// fails the test if it has not exited after `timeout`.
pub fn run_bounded(command: Command, input: &[u8], timeout: Duration) -> Output {
    let mut tool = Tool::spawn(command);
    if !input.is_empty() {
        tool.send(input);
    }
    tool.finish(timeout)
}

/// A copy of an executable in a fresh world-readable directory, removed on
/// drop, for runs as an unprivileged user who may not reach the original
/// (a clone under `/root`, say).
pub struct PublicCopy {
    dir: PathBuf,
    path: PathBuf,
}

impl PublicCopy {
    /// Copies `original` to `$TMPDIR/tst-<pid>-<counter>-bin/`, mode 0755.
    pub fn new(original: &Path) -> Self {
        let dir = std::env::temp_dir().join(unique_name("bin"));
        fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        let copy = Self {
            path: dir.join(original.file_name().expect("an executable has a file name")),
            dir,
        };
        fs::set_permissions(&copy.dir, fs::Permissions::from_mode(0o755))
            .expect("chmod the copy's directory");
        fs::copy(original, &copy.path)
            .unwrap_or_else(|err| panic!("copy {}: {err}", original.display()));
        fs::set_permissions(&copy.path, fs::Permissions::from_mode(0o755)).expect("chmod the copy");
        copy
    }

    /// The copy's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PublicCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

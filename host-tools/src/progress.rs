//! A one-line progress bar on stderr, drawn only when stderr is a terminal,
//! so piped and scripted runs stay silent. Any thread may advance it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Redraws at most this often: enough to look alive, too rarely to cost anything.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Cells in the bar.
const WIDTH: usize = 30;

/// A progress bar for one task at a time.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    done: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    label: String,
    total: u64,
    last_draw: Option<Instant>,
}

impl Progress {
    /// A bar that draws only if stderr is a terminal and `wanted` is true.
    pub fn new(wanted: bool) -> Self {
        Self::with_enabled(wanted && std::io::stderr().is_terminal())
    }

    /// A bar that never draws (tests, `--json`).
    pub fn hidden() -> Self {
        Self::with_enabled(false)
    }

    fn with_enabled(enabled: bool) -> Self {
        let state = State {
            label: String::new(),
            total: 0,
            last_draw: None,
        };
        Self {
            enabled,
            done: AtomicU64::new(0),
            state: Mutex::new(state),
        }
    }

    /// Starts a task of `total` units.
    pub fn start(&self, label: impl Into<String>, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        if let Ok(mut state) = self.state.lock() {
            state.label = label.into();
            state.total = total.max(1);
            state.last_draw = None;
        }
        self.draw(false);
    }

    /// Adds `n` units of work done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.draw(false);
    }

    /// Sets the units done.
    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.draw(false);
    }

    /// Erases the bar, so the next line prints on a clean line.
    pub fn clear(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    fn draw(&self, force: bool) {
        if !self.enabled {
            return;
        }
        // try_lock: a thread that finds another drawing skips its redraw.
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        let now = Instant::now();
        if !force
            && state
                .last_draw
                .is_some_and(|t| now.duration_since(t) < REDRAW_EVERY)
        {
            return;
        }
        state.last_draw = Some(now);
        let done = self.done.load(Ordering::Relaxed).min(state.total);
        // Precision is irrelevant for a bar: a u64 ratio in f64 is plenty.
        let fraction = done as f64 / state.total as f64;
        let cells = ((fraction * WIDTH as f64) as usize).min(WIDTH);
        let bar: String = "#".repeat(cells) + &".".repeat(WIDTH - cells);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {:>3.0}% {}",
            fraction * 100.0,
            state.label
        );
        let _ = err.flush();
    }
}

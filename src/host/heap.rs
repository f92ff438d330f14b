//! A counting global allocator: the proof that the stack serves without the heap.
//!
//! The library has no allocator at all; the binary around it does (clap, the
//! banner, the TAP's two frame buffers), but only while it starts. This
//! allocator wraps [`System`] and counts every allocation and the bytes asked
//! for, with relaxed atomics: two uncontended additions per allocation, and
//! nothing at all on the serving path when that path allocates nothing, which
//! is the point. [`mark_ready`] is called when the stack prints
//! `tapstack: ready`; on exit the binary prints [`usage`], split at that
//! moment:
//!
//! ```text
//! heap: 450 allocations (93.1 KiB) at start-up, 0 while serving
//! ```
//!
//! A reallocation counts as one allocation of its new size (it may move the
//! block); frees are not counted. The process has one thread, so the split
//! is exact: nothing allocates between the mark and the first frame except
//! the serving path itself.
#![allow(unsafe_code)] // `GlobalAlloc` is an unsafe trait; each method forwards to `System`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tapstack::stack::Bytes;

/// The system allocator, counted. Registered in `main.rs` with
/// `#[global_allocator]`.
pub struct Counting;

/// Allocations (including reallocations) since the process started.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes asked for by those allocations.
static BYTES: AtomicU64 = AtomicU64::new(0);
/// [`ALLOCATIONS`] and [`BYTES`] when the stack became ready; `u64::MAX`
/// until then.
static READY_ALLOCATIONS: AtomicU64 = AtomicU64::new(u64::MAX);
static READY_BYTES: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size as u64, Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds `GlobalAlloc`'s contract; counting touches only atomics and never
// allocates.
unsafe impl GlobalAlloc for Counting {
    // SAFETY: an unsafe trait method; its contract is forwarded to `System`.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    // SAFETY: an unsafe trait method; its contract is forwarded to `System`.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    // SAFETY: an unsafe trait method; its contract is forwarded to `System`.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    // SAFETY: an unsafe trait method; its contract is forwarded to `System`.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A number of allocations and the bytes they asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Allocations, reallocations included.
    pub allocations: u64,
    /// Bytes asked for.
    pub bytes: u64,
}

/// The heap use of a run, split at the moment the stack became ready.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// From the process start to [`mark_ready`].
    pub start_up: Count,
    /// From [`mark_ready`] to the call of [`usage`]; `None` if the stack never
    /// became ready.
    pub serving: Option<Count>,
}

/// Marks the end of start-up: from here on the stack serves, and every
/// allocation counts as one "while serving".
pub fn mark_ready() {
    READY_BYTES.store(BYTES.load(Relaxed), Relaxed);
    READY_ALLOCATIONS.store(ALLOCATIONS.load(Relaxed), Relaxed);
}

/// The counts so far, split at [`mark_ready`].
pub fn usage() -> Usage {
    let now = Count {
        allocations: ALLOCATIONS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    };
    match READY_ALLOCATIONS.load(Relaxed) {
        u64::MAX => Usage {
            start_up: now,
            serving: None,
        },
        allocations => {
            let start_up = Count {
                allocations,
                bytes: READY_BYTES.load(Relaxed),
            };
            Usage {
                start_up,
                serving: Some(Count {
                    allocations: now.allocations - start_up.allocations,
                    bytes: now.bytes - start_up.bytes,
                }),
            }
        }
    }
}

/// `N` as "KiB"/"MiB" text, saturating on a 32-bit target.
fn bytes(n: u64) -> Bytes {
    Bytes(usize::try_from(n).unwrap_or(usize::MAX))
}

/// `heap: 450 allocations (93.1 KiB) at start-up, 0 while serving`; the
/// serving part shows its bytes too when it is not zero.
impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap: {} allocations ({}) at start-up",
            self.start_up.allocations,
            bytes(self.start_up.bytes)
        )?;
        match self.serving {
            None => write!(f, ", never ready"),
            Some(Count { allocations: 0, .. }) => write!(f, ", 0 while serving"),
            Some(serving) => write!(
                f,
                ", {} ({}) while serving",
                serving.allocations,
                bytes(serving.bytes)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_as_documented() {
        let usage = Usage {
            start_up: Count {
                allocations: 141,
                bytes: 27 * 1024,
            },
            serving: Some(Count {
                allocations: 0,
                bytes: 0,
            }),
        };
        assert_eq!(
            usage.to_string(),
            "heap: 141 allocations (27.0 KiB) at start-up, 0 while serving"
        );
        let leaky = Usage {
            serving: Some(Count {
                allocations: 3,
                bytes: 96,
            }),
            ..usage
        };
        assert_eq!(
            leaky.to_string(),
            "heap: 141 allocations (27.0 KiB) at start-up, 3 (96 B) while serving"
        );
        let never = Usage {
            serving: None,
            ..usage
        };
        assert_eq!(
            never.to_string(),
            "heap: 141 allocations (27.0 KiB) at start-up, never ready"
        );
    }

    #[test]
    fn counts_what_this_thread_allocates() {
        // Other test threads allocate too, so only a lower bound is exact.
        let before = ALLOCATIONS.load(Relaxed);
        let bytes_before = BYTES.load(Relaxed);
        let v: Vec<u8> = Vec::with_capacity(1000);
        drop(std::hint::black_box(v));
        assert!(ALLOCATIONS.load(Relaxed) > before);
        assert!(BYTES.load(Relaxed) >= bytes_before + 1000);
    }
}

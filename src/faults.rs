//! Fault injection on the link: drop, corrupt, size-limit and rate-limit
//! frames on purpose, reproducibly, to watch TCP repair what UDP cannot.
//!
//! Why not smoltcp's `FaultInjector`: it works on fixed 1536-byte buffers
//! (larger frames are dropped, and it caps the MTU it reports to 1536), and it
//! says nothing about what it did, so its faults could not show in the trace
//! or the counters. This injector decides, [`crate::link::Observed`] applies
//! the decision and reports it.
//!
//! Every decision comes from one xorshift generator seeded by
//! [`FaultSettings::seed`]: the same seed and the same frames in the same
//! order give the same faults.

use smoltcp::time::{Duration, Instant};

/// What to break, and how often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultSettings {
    /// Percentage (0-100) of frames dropped, each direction.
    pub drop_pct: u8,
    /// Percentage (0-100) of frames with one bit flipped, each direction.
    pub corrupt_pct: u8,
    /// Frames longer than this many bytes are dropped (0: no limit).
    pub size_limit: usize,
    /// At most this many frames per [`rate_interval`](Self::rate_interval), each direction (0: no limit).
    pub rate_limit: u32,
    /// The interval of the rate limit.
    pub rate_interval: Duration,
    /// Seed of the generator (0 is replaced by a fixed non-zero value).
    pub seed: u64,
}

impl FaultSettings {
    /// True when any fault is configured.
    pub fn any(&self) -> bool {
        self.drop_pct > 0 || self.corrupt_pct > 0 || self.size_limit > 0 || self.rate_limit > 0
    }
}

/// Why an injected fault dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// By the `drop_pct` chance.
    Chance,
    /// Longer than `size_limit`.
    TooLarge,
    /// Over the rate limit.
    RateLimit,
}

/// A fault done to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The frame was dropped.
    Dropped(DropReason),
    /// One bit was flipped: `byte` is the offset in the frame, `bit` the mask.
    Corrupted {
        /// Offset of the changed byte.
        byte: usize,
        /// The flipped bit, as a mask.
        bit: u8,
    },
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::Dropped(DropReason::Chance) => f.write_str("FAULT dropped (--drop-chance)"),
            Fault::Dropped(DropReason::TooLarge) => f.write_str("FAULT dropped (--size-limit)"),
            Fault::Dropped(DropReason::RateLimit) => f.write_str("FAULT dropped (--rate-limit)"),
            Fault::Corrupted { byte, bit } => {
                write!(f, "FAULT corrupted byte {byte} bit 0x{bit:02x}")
            }
        }
    }
}

/// A direction's token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    refilled_at: Option<Instant>,
}

/// The injector's state.
#[derive(Clone, Debug)]
pub struct Injector {
    settings: FaultSettings,
    rng: u64,
    rx: Bucket,
    tx: Bucket,
}

/// Seed used when the user gives 0 (xorshift must not start at 0).
const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl Injector {
    /// An injector with these settings.
    pub const fn new(settings: FaultSettings) -> Self {
        let rng = if settings.seed == 0 {
            DEFAULT_SEED
        } else {
            settings.seed
        };
        let bucket = Bucket {
            tokens: 0,
            refilled_at: None,
        };
        Self {
            settings,
            rng,
            rx: bucket,
            tx: bucket,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &FaultSettings {
        &self.settings
    }

    /// True when any fault is configured.
    pub fn active(&self) -> bool {
        self.settings.any()
    }

    fn next(&mut self) -> u64 {
        // xorshift64* (Marsaglia; Vigna's multiplier).
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, pct: u8) -> bool {
        pct > 0 && (self.next() >> 32) % 100 < u64::from(pct)
    }

    /// Decides the fate of one frame of `len` bytes in direction `rx` (true)
    /// or tx (false). A corruption names the byte and bit; the caller flips it.
    pub fn decide(&mut self, rx: bool, len: usize, now: Instant) -> Option<Fault> {
        if !self.active() {
            return None;
        }
        let s = self.settings;
        if s.size_limit > 0 && len > s.size_limit {
            return Some(Fault::Dropped(DropReason::TooLarge));
        }
        if s.rate_limit > 0 {
            let bucket = if rx { &mut self.rx } else { &mut self.tx };
            let due = bucket
                .refilled_at
                .is_none_or(|at| now - at >= s.rate_interval);
            if due {
                bucket.tokens = s.rate_limit;
                bucket.refilled_at = Some(now);
            }
            if bucket.tokens == 0 {
                return Some(Fault::Dropped(DropReason::RateLimit));
            }
            bucket.tokens -= 1;
        }
        if self.chance(s.drop_pct) {
            return Some(Fault::Dropped(DropReason::Chance));
        }
        if len > 0 && self.chance(s.corrupt_pct) {
            let r = self.next();
            let byte = (r >> 8) as usize % len;
            let bit = 1u8 << (r & 7);
            return Some(Fault::Corrupted { byte, bit });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(settings: FaultSettings, frames: usize) -> heapless::Vec<Option<Fault>, 256> {
        let mut inj = Injector::new(settings);
        (0..frames)
            .map(|i| inj.decide(i % 2 == 0, 100 + i, Instant::from_millis(i as i64)))
            .collect()
    }

    #[test]
    fn nothing_configured_nothing_done() {
        assert!(
            run(FaultSettings::default(), 200)
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn same_seed_same_faults_other_seed_other_faults() {
        let s = FaultSettings {
            drop_pct: 10,
            corrupt_pct: 5,
            seed: 42,
            ..Default::default()
        };
        assert_eq!(run(s, 200), run(s, 200));
        assert_ne!(run(s, 200), run(FaultSettings { seed: 43, ..s }, 200));
    }

    #[test]
    fn rates_are_near_the_chances() {
        let s = FaultSettings {
            drop_pct: 10,
            corrupt_pct: 5,
            seed: 7,
            ..Default::default()
        };
        let mut inj = Injector::new(s);
        let (mut dropped, mut corrupted) = (0, 0);
        for i in 0..10_000 {
            match inj.decide(true, 1000, Instant::from_millis(i)) {
                Some(Fault::Dropped(DropReason::Chance)) => dropped += 1,
                Some(Fault::Corrupted { byte, bit }) => {
                    assert!(byte < 1000 && bit.count_ones() == 1);
                    corrupted += 1;
                }
                None => {}
                other => panic!("{other:?}"),
            }
        }
        // 10% of 10000 and 5% of the remaining 9000, give or take 3 standard deviations.
        assert!((910..=1090).contains(&dropped), "{dropped}");
        assert!((385..=515).contains(&corrupted), "{corrupted}");
    }

    #[test]
    fn size_and_rate_limits() {
        let s = FaultSettings {
            size_limit: 500,
            ..Default::default()
        };
        let mut inj = Injector::new(s);
        assert_eq!(
            inj.decide(true, 501, Instant::ZERO),
            Some(Fault::Dropped(DropReason::TooLarge))
        );
        assert_eq!(inj.decide(false, 500, Instant::ZERO), None);

        let s = FaultSettings {
            rate_limit: 3,
            rate_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let mut inj = Injector::new(s);
        let t0 = Instant::from_millis(1000);
        let fates: heapless::Vec<_, 8> = (0..5).map(|_| inj.decide(true, 60, t0)).collect();
        assert_eq!(fates[..3], [None, None, None]);
        assert_eq!(fates[3..], [Some(Fault::Dropped(DropReason::RateLimit)); 2]);
        // The other direction has its own bucket; the next interval refills.
        assert_eq!(inj.decide(false, 60, t0), None);
        assert_eq!(inj.decide(true, 60, t0 + Duration::from_millis(100)), None);
    }
}

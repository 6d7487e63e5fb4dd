// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! A bound on how many lines one kind of log message may take: a burst, then a steady rate.
//! Clients choose how many requests fail; without it they would choose how much we log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `burst` lines at once, refilled at `per_second`; what it refuses is counted
/// so that the next line allowed, or a periodic summary, can say how many were left out.
#[derive(Debug)]
pub struct LogLimit {
    burst: f64,
    per_second: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

/// Whether to log a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it, saying that this many lines were left out before it.
    Log {
        /// Lines left out since the last one logged or summarised.
        suppressed: u64,
    },
    /// Leave it out (it is counted).
    Suppress,
}

impl Bucket {
    /// The pure step: refill for the time passed, then take a token if there is one.
    fn take(self, now: Instant, burst: f64, per_second: f64) -> (Bucket, Verdict) {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = (self.tokens + passed * per_second).min(burst);
        if tokens >= 1.0 {
            let next = Bucket {
                tokens: tokens - 1.0,
                at: now,
                suppressed: 0,
            };
            (
                next,
                Verdict::Log {
                    suppressed: self.suppressed,
                },
            )
        } else {
            let next = Bucket {
                tokens,
                at: now,
                suppressed: self.suppressed + 1,
            };
            (next, Verdict::Suppress)
        }
    }
}

impl LogLimit {
    /// A limit of `burst` lines at once and `per_second` after that.
    pub fn new(burst: u32, per_second: u32) -> Self {
        LogLimit {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            state: Mutex::new(Bucket {
                tokens: f64::from(burst.max(1)),
                at: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged now.
    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Verdict {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (next, verdict) = state.take(now, self.burst, self.per_second);
        *state = next;
        verdict
    }

    /// The lines left out since the last one logged, now reported by the caller.
    pub fn take_suppressed(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.suppressed)
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut: what a
/// client sent goes into a log line bounded.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes)", &text[..cut], text.len()).into()
}

/// How often a summary of suppressed lines is due.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let limit = LogLimit {
            burst: 3.0,
            per_second: 2.0,
            state: Mutex::new(Bucket {
                tokens: 3.0,
                at: start,
                suppressed: 0,
            }),
        };
        let log = |suppressed| Verdict::Log { suppressed };
        let steps = [
            (0, log(0)),
            (0, log(0)),
            (0, log(0)),
            (0, Verdict::Suppress),
            (100, Verdict::Suppress),
            // Half a second refills one token.
            (500, log(2)),
            (500, Verdict::Suppress),
            (1000, log(1)),
            // Long quiet: back to the burst, no more.
            (60_000, log(0)),
            (60_000, log(0)),
            (60_000, log(0)),
            (60_000, Verdict::Suppress),
        ];
        for (i, (at, want)) in steps.into_iter().enumerate() {
            assert_eq!(limit.check_at(ms(at)), want, "step {i} at {at} ms");
        }
        assert_eq!(limit.take_suppressed(), 1);
        assert_eq!(limit.take_suppressed(), 0);
    }

    #[test]
    fn truncation() {
        for (text, max, want) in [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("a longer text", 4, "a lo... (13 bytes)"),
            ("ééé", 3, "é... (6 bytes)"),
        ] {
            assert_eq!(truncate(text, max), want, "{text:?}");
        }
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Where formatted lines go: stderr and klog's files, as a [`Route`](crate::klog::Route) says,
//! written by a thread of their own so that logging never waits on the output.
//!
//! A line is put in a queue of at most [`QUEUE_BYTES`] and the caller goes on; one writer
//! thread takes lines from it and writes them. When the output stalls (a pipe nobody reads, a
//! stuck log shipper, a hung file system) the queue fills and further lines are dropped and
//! counted in [`lines_dropped`]; a line whose write fails counts the same. Once a write succeeds
//! again the writer reports the count in one warning. The daemon's loops and the webhook's
//! requests never block on a log line.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

use super::route::FileSet;
use super::{InitError, Settings};
use crate::klog::Severity;

/// The most bytes of lines waiting for the writer: about 400 lines of 160 bytes, a burst far
/// beyond what either program logs at once, and little memory.
pub const QUEUE_BYTES: usize = 64 * 1024;

/// Lines dropped since the start: lines the queue had no room for, and lines whose write
/// failed.
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The count of dropped log lines, as a counter to register (`…_log_lines_dropped_total`):
/// every call returns the same counter.
pub fn lines_dropped() -> Counter {
    DROPPED.clone()
}

/// Lines waiting for the writer, and what it is doing.
#[derive(Debug, Default)]
struct State {
    lines: VecDeque<(Severity, Vec<u8>)>,
    /// Bytes in `lines`.
    bytes: usize,
    /// The writer holds a line it has not finished writing.
    writing: bool,
    /// Lines dropped since the last report.
    unreported: u64,
}

impl State {
    fn idle(&self) -> bool {
        self.lines.is_empty() && !self.writing
    }
}

/// The queue between the threads that log and the writer thread.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the writer has written everything queued.
    idle: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a line, or drops and counts it when the queue is full. A line to `keep` (an
    /// event named [`ALWAYS`](super::ALWAYS): a start failure, the fatal error, the report of
    /// dropped lines) is queued all the same: such lines are few, and the one an operator
    /// needs.
    fn push(&self, severity: Severity, line: &[u8], keep: bool) {
        let mut state = self.lock();
        if state.bytes + line.len() > QUEUE_BYTES && !keep {
            state.unreported += 1;
            DROPPED.inc();
            return;
        }
        state.bytes += line.len();
        state.lines.push_back((severity, line.to_vec()));
        drop(state);
        self.queued.notify_one();
    }

    /// The next line to write, waiting for one.
    fn next(&self) -> (Severity, Vec<u8>) {
        let mut state = self.lock();
        loop {
            if let Some((severity, line)) = state.lines.pop_front() {
                state.bytes -= line.len();
                state.writing = true;
                return (severity, line);
            }
            state = self
                .queued
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Records that the last line taken was written (or not); returns the count of dropped
    /// lines to report now, when writing works.
    fn done(&self, written: bool) -> u64 {
        let mut state = self.lock();
        state.writing = false;
        if !written {
            state.unreported += 1;
            DROPPED.inc();
        }
        let report = if written {
            std::mem::take(&mut state.unreported)
        } else {
            0
        };
        if state.idle() {
            self.idle.notify_all();
        }
        report
    }

    /// Waits until every queued line is written, for at most `limit`; whether it got there.
    fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !state.idle() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.idle.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

/// The writer thread's side: stderr and the files, as the route says.
#[derive(Debug)]
struct Output {
    stderr_from: Severity,
    files: Option<FileSet>,
}

impl Output {
    /// Writes a line where it belongs; false when a write failed.
    fn write_line(&mut self, severity: Severity, line: &[u8]) -> bool {
        let mut written = true;
        if severity >= self.stderr_from {
            written &= io::stderr().lock().write_all(line).is_ok();
        }
        if let Some(files) = &mut self.files {
            written &= files.write(severity, line);
        }
        written
    }
}

/// Writes queued lines until the process ends.
fn write_lines(queue: &Queue, mut output: Output) {
    loop {
        let (severity, line) = queue.next();
        let written = output.write_line(severity, &line);
        let dropped = queue.done(written);
        if dropped > 0 {
            // Named ALWAYS: shown whatever the filter, and queued even when the queue is full.
            tracing::warn!(
                name: super::ALWAYS,
                lines = dropped,
                "log lines were dropped: the log output did not keep up (a pipe nobody read, a \
                 stuck log shipper, a full disk); writing works again"
            );
        }
    }
}

/// Where formatted lines go: the queue of the writer thread.
#[derive(Debug, Clone)]
pub struct Sink {
    queue: Arc<Queue>,
}

impl Sink {
    /// Opens the files the route asks for and starts the writer thread.
    pub(super) fn open(settings: Settings<'_>) -> Result<Sink, InitError> {
        let route = settings.klog.route();
        let output = Output {
            stderr_from: route.stderr_from,
            files: FileSet::open(&route, settings)?,
        };
        let queue = Arc::new(Queue::default());
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("log-writer".to_string())
            .spawn(move || write_lines(&writer, output))
            .map_err(InitError::Thread)?;
        Ok(Sink { queue })
    }

    /// Waits until every line logged so far is written, for at most `limit`; whether it got
    /// there.
    pub fn flush(&self, limit: Duration) -> bool {
        self.queue.flush(limit)
    }
}

/// One event's writer: the formatter writes the whole line at once.
#[derive(Debug)]
pub struct LineWriter<'a> {
    sink: &'a Sink,
    severity: Severity,
    /// The line is queued even when the queue is full.
    keep: bool,
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.queue.push(self.severity, buf, self.keep);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            severity: Severity::INFO,
            keep: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            severity: Severity::of_level(meta.level()),
            keep: meta.name() == super::ALWAYS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_the_report_gets_through() {
        let queue = Queue::default();
        let before = DROPPED.get();
        let line = vec![b'x'; 100];
        let fits = QUEUE_BYTES / line.len();
        for _ in 0..fits + 5 {
            queue.push(Severity::INFO, &line, false);
        }
        assert_eq!(queue.lock().lines.len(), fits);
        assert_eq!(queue.lock().unreported, 5);
        // Other tests may drop lines of their own meanwhile: at least these five.
        assert!(DROPPED.get() >= before + 5);

        // A failed write counts too, and nothing is reported while writing fails.
        let _ = queue.next();
        assert_eq!(queue.done(false), 0);
        assert_eq!(queue.lock().unreported, 6);
        // The first write that works reports them all, once.
        let _ = queue.next();
        assert_eq!(queue.done(true), 6);
        let _ = queue.next();
        assert_eq!(queue.done(true), 0);

        // A line to keep (the report, the fatal error) is queued even when the queue is full.
        while queue.lock().bytes + line.len() <= QUEUE_BYTES {
            queue.push(Severity::INFO, &line, false);
        }
        let queued = queue.lock().lines.len();
        queue.push(Severity::WARNING, b"report\n", true);
        queue.push(Severity::INFO, &line, false);
        assert_eq!(queue.lock().lines.len(), queued + 1);
        assert_eq!(queue.lock().unreported, 1);
        let _ = queue.next();
        assert_eq!(queue.done(true), 1);
        assert_eq!(queue.lock().unreported, 0);
    }

    #[test]
    fn flush_waits_for_the_writer_within_its_limit() {
        let queue = Arc::new(Queue::default());
        queue.push(Severity::INFO, b"one\n", false);
        // Nobody writes: the flush gives up at its limit.
        let started = Instant::now();
        assert!(!queue.flush(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let writer = queue.clone();
        let thread = std::thread::spawn(move || {
            let _ = writer.next();
            writer.done(true)
        });
        assert!(queue.flush(Duration::from_secs(10)));
        assert_eq!(thread.join().expect("the writer"), 0);
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Where formatted lines go: stderr and klog's files, as a [`Route`](crate::klog::Route) says.

use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::route::FileSet;
use super::{InitError, Settings};
use crate::klog::Severity;

/// Where formatted lines go: stderr and files, as a [`Route`](crate::klog::Route) says.
#[derive(Debug, Clone)]
pub struct Sink {
    stderr_from: Severity,
    files: Option<Arc<Mutex<FileSet>>>,
}

impl Sink {
    pub(super) fn open(settings: Settings<'_>) -> Result<Sink, InitError> {
        let route = settings.klog.route();
        let files = FileSet::open(&route, settings)?.map(|set| Arc::new(Mutex::new(set)));
        Ok(Sink {
            stderr_from: route.stderr_from,
            files,
        })
    }

    fn write_line(&self, severity: Severity, line: &[u8]) {
        if severity >= self.stderr_from {
            let _ = io::stderr().lock().write_all(line);
        }
        if let Some(files) = &self.files {
            let mut files = match files.lock() {
                Ok(files) => files,
                Err(poisoned) => poisoned.into_inner(),
            };
            files.write(severity, line);
        }
    }
}

/// One event's writer: the formatter writes the whole line at once.
#[derive(Debug)]
pub struct LineWriter<'a> {
    sink: &'a Sink,
    severity: Severity,
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.write_line(self.severity, buf);
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
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            severity: Severity::of_level(meta.level()),
        }
    }
}

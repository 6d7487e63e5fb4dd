// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! klog's files: one `--log_file`, or one file per severity in `--log_dir`, named and headed
//! as klog names and heads them, and which of them a line of each severity goes to.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::stamp::Stamp;
use super::{InitError, LogFormat, Settings};
use crate::klog::{Files, Route, Severity};

#[derive(Debug)]
pub(super) enum FileSet {
    Single(File),
    PerSeverity {
        dir: PathBuf,
        one_output: bool,
        /// INFO, WARNING, ERROR, FATAL; opened on first use.
        open: [Option<File>; 4],
        names: FileNames,
    },
}

/// klog's file names: `PROGRAM.HOST.USER.log.SEVERITY.YYYYMMDD-HHMMSS.PID`, with a symlink
/// `PROGRAM.SEVERITY` to the newest.
#[derive(Debug)]
pub(super) struct FileNames {
    program: String,
    host: String,
    user: String,
    started: String,
    pid: u32,
    /// The header written at the top of each file, empty with `--skip_log_headers`.
    header: String,
}

impl FileNames {
    fn name(&self, severity: Severity) -> String {
        format!(
            "{}.{}.{}.log.{}.{}.{}",
            self.program,
            self.host,
            self.user,
            severity.name(),
            self.started,
            self.pid
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknownhost".to_string())
}

fn user_name() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self").map(|meta| meta.uid()) {
        Ok(0) => "root".to_string(),
        _ => std::env::var("USER")
            .ok()
            .filter(|user| !user.is_empty() && !user.contains(['/', '.']))
            .unwrap_or_else(|| "unknownuser".to_string()),
    }
}

/// klog's file header, for a file created at `created`.
fn file_header(program: &str, version: &str, host: &str, created: &Stamp) -> String {
    let mut created_at = String::new();
    // Writing to a String cannot fail.
    let _ = created.file_header(&mut created_at);
    format!(
        "Log file created at: {created_at}\nRunning on machine: {host}\n\
         Binary: {program} {version} (Rust)\n\
         Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n"
    )
}

fn open_append(path: &Path, header: &str) -> Result<File, InitError> {
    let file_error = |source| InitError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(file_error)?;
    file.write_all(header.as_bytes()).map_err(file_error)?;
    Ok(file)
}

impl FileSet {
    pub(super) fn open(
        route: &Route,
        settings: Settings<'_>,
    ) -> Result<Option<FileSet>, InitError> {
        let header = |host: &str| {
            if settings.klog.skip_log_headers || settings.format == LogFormat::Json {
                String::new()
            } else {
                file_header(settings.program, settings.version, host, &Stamp::now())
            }
        };
        match &route.files {
            Files::None => Ok(None),
            Files::Single(path) => Ok(Some(FileSet::Single(open_append(
                path,
                &header(&host_name()),
            )?))),
            Files::PerSeverity { dir, one_output } => {
                let host = host_name();
                let mut started = String::new();
                // Writing to a String cannot fail.
                let _ = Stamp::now().file_name(&mut started);
                let mut set = FileSet::PerSeverity {
                    dir: dir.clone(),
                    one_output: *one_output,
                    open: [None, None, None, None],
                    names: FileNames {
                        program: settings.program.to_string(),
                        header: header(&host),
                        host,
                        user: user_name(),
                        started,
                        pid: std::process::id(),
                    },
                };
                // klog creates the INFO file with the first file of any severity; creating it
                // now reports an unusable directory at start instead of losing lines.
                set.file(Severity::INFO)?;
                Ok(Some(set))
            }
        }
    }

    /// The file of one severity (of every severity for `Single`), opened when first needed.
    fn file(&mut self, severity: Severity) -> Result<&mut File, InitError> {
        match self {
            FileSet::Single(file) => Ok(file),
            FileSet::PerSeverity {
                dir, open, names, ..
            } => {
                let index = severity.0.clamp(0, 3) as usize;
                if open[index].is_none() {
                    let name = names.name(severity);
                    let file = open_append(&dir.join(&name), &names.header)?;
                    let link = dir.join(format!("{}.{}", names.program, severity.name()));
                    let _ = std::fs::remove_file(&link);
                    let _ = std::os::unix::fs::symlink(&name, &link);
                    open[index] = Some(file);
                }
                open[index].as_mut().ok_or_else(|| InitError::File {
                    path: dir.clone(),
                    source: io::Error::other("not open"),
                })
            }
        }
    }

    /// Writes a line to the files of its severity; false when a write failed.
    pub(super) fn write(&mut self, severity: Severity, line: &[u8]) -> bool {
        let targets: Vec<Severity> = match self {
            FileSet::Single(_) => vec![Severity::INFO],
            FileSet::PerSeverity { one_output, .. } => {
                let own = Severity(severity.0.clamp(0, 3));
                if *one_output {
                    vec![own]
                } else {
                    Severity::ALL.into_iter().filter(|s| *s <= own).collect()
                }
            }
        };
        let mut written = true;
        for target in targets {
            match self.file(target) {
                Ok(file) => written &= file.write_all(line).is_ok(),
                Err(error) => {
                    // As klog does, the line still appears somewhere.
                    let mut stderr = io::stderr().lock();
                    written &= stderr.write_all(line).is_ok();
                    let _ = writeln!(stderr, "log: {}", crate::error_chain(&error));
                }
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_file_header() {
        assert_eq!(
            file_header(
                "prog",
                "v1",
                "node-1",
                &crate::logging::stamp::tests::sample()
            ),
            "Log file created at: 2026/03/04 05:06:07\nRunning on machine: node-1\n\
             Binary: prog v1 (Rust)\n\
             Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n"
        );
    }
}

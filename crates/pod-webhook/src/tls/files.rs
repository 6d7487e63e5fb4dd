// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Reading the certificate files: only regular files of at most [`MAX_FILE_BYTES`], opened
//! without blocking, so a FIFO, a device or a huge file in their place is an error naming the
//! file rather than a reload stuck for good or a webhook out of memory.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::TlsError;
use crate::config::TlsFiles;

/// The most bytes a certificate, key or CA file may have: a chain of ten 4096-bit RSA
/// certificates is about 20 KiB, a bundle of every public root CA about 250 KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The bytes of the files, to notice changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) cert: Vec<u8>,
    pub(super) key: Vec<u8>,
    pub(super) client_ca: Option<Vec<u8>>,
}

impl Snapshot {
    /// Reads the files; the first that cannot be read is the error.
    pub(super) fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Snapshot {
            cert: read("certificate", &files.cert)?,
            key: read("key", &files.key)?,
            client_ca: files
                .client_ca
                .as_deref()
                .map(|path| read("client CA", path))
                .transpose()?,
        })
    }
}

/// What a file that is not a regular file is, for the error.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    }
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. `O_NONBLOCK`: opening a FIFO nobody
/// writes returns at once instead of waiting for a writer (it has no effect on a regular
/// file); `O_NOCTTY`: a terminal in its place never becomes the webhook's. What is checked is
/// the file opened (`fstat`), not the path again, so a swap in between changes nothing.
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let io_error = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(TlsError::NotRegular {
            what,
            path: path.to_owned(),
            kind: kind_of(meta.file_type()),
        });
    }
    let too_large = |size| TlsError::TooLarge {
        what,
        path: path.to_owned(),
        size,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    // A file that grows while it is read stops one byte past the bound, and is refused.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(too_large(read));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn text(result: Result<Vec<u8>, TlsError>) -> String {
        match result {
            Ok(bytes) => format!("{} bytes", bytes.len()),
            Err(error) => crate::error_chain(&error),
        }
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = test_support::webhook::temp_dir();
        let path = |name: &str| dir.path().join(name);

        std::fs::write(path("tls.crt"), b"pem").expect("write");
        std::fs::write(path("max.crt"), vec![b'x'; MAX_FILE_BYTES as usize]).expect("write");
        // Sparse: 50 MB without writing them.
        File::create(path("huge.crt"))
            .and_then(|file| file.set_len(50_000_000))
            .expect("a large file");
        std::os::unix::fs::symlink("tls.crt", path("link.crt")).expect("a symlink");
        std::os::unix::fs::symlink("huge.crt", path("link-huge.crt")).expect("a symlink");
        let fifo = path("fifo.crt");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        std::os::unix::fs::symlink("fifo.crt", path("link-fifo.crt")).expect("a symlink");

        let shown = |name: &str| path(name).display().to_string();
        for (name, want) in [
            ("tls.crt", "3 bytes".to_string()),
            ("max.crt", format!("{MAX_FILE_BYTES} bytes")),
            // A Secret's files are symlinks: followed.
            ("link.crt", "3 bytes".to_string()),
            (
                "huge.crt",
                format!(
                    "certificate {} is too large: 50000000 bytes, at most 1048576 are read",
                    shown("huge.crt")
                ),
            ),
            (
                "link-huge.crt",
                format!(
                    "certificate {} is too large: 50000000 bytes, at most 1048576 are read",
                    shown("link-huge.crt")
                ),
            ),
            (
                "fifo.crt",
                format!(
                    "certificate {} is not a regular file but a FIFO: only regular files are read",
                    shown("fifo.crt")
                ),
            ),
            (
                "link-fifo.crt",
                format!(
                    "certificate {} is not a regular file but a FIFO: only regular files are read",
                    shown("link-fifo.crt")
                ),
            ),
            (
                ".",
                format!(
                    "certificate {} is not a regular file but a directory: only regular files \
                     are read",
                    shown(".")
                ),
            ),
        ] {
            let started = Instant::now();
            assert_eq!(text(read("certificate", &path(name))), want, "{name}");
            // A FIFO nobody writes must not hold the read up.
            assert!(started.elapsed() < Duration::from_secs(5), "{name}");
        }
        assert_eq!(
            text(read("key", Path::new("/dev/null"))),
            "key /dev/null is not a regular file but a character device: only regular files \
             are read"
        );
        let missing = text(read("client CA", &path("missing.crt")));
        assert!(
            missing.starts_with(&format!("cannot read client CA {}: ", shown("missing.crt"))),
            "{missing}"
        );
    }
}

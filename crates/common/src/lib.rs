// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! What both apiserver-proxy binaries share: Go's flag value syntaxes, klog's flags, the klog
//! and JSON log formats, one way to print an error with its causes, the dual-stack listener and
//! the accept loop on it.

pub mod accept;
pub mod goflag;
pub mod klog;
pub mod listen;
pub mod logging;

/// An error with its causes, on one line. Each error's message names its own cause only (as
/// a `source()` or in its text, never both), so joining them shows every cause once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error whose message names only what it was doing; the cause is its `source()`.
    #[derive(Debug)]
    struct Doing(&'static str, Option<std::io::Error>);

    impl fmt::Display for Doing {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Doing {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|error| error as _)
        }
    }

    #[test]
    fn each_cause_once_in_order() {
        let leaf = Doing("read /etc/tls/tls.crt", None);
        assert_eq!(error_chain(&leaf), "read /etc/tls/tls.crt");
        let error = Doing(
            "load the certificate",
            Some(std::io::Error::from_raw_os_error(2)),
        );
        assert_eq!(
            error_chain(&error),
            "load the certificate: No such file or directory (os error 2)"
        );
        // A cause whose text happens to repeat the message is still shown: nothing is
        // guessed away.
        let error = Doing("timed out", Some(std::io::Error::other("timed out")));
        assert_eq!(error_chain(&error), "timed out: timed out");
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! TLS: loading the certificate, key and client CA, and reloading them when the files change.
//!
//! Each accepted connection takes the current [`ServerConfig`], so a reload affects new
//! connections only and never disturbs one in progress. The files are compared by content, which
//! also catches Kubernetes' atomic symlink swap of a mounted Secret.
//!
//! Only regular files of at most [`MAX_FILE_BYTES`] are read, opened without blocking
//! ([`files`]): a FIFO, a device or a huge file in their place is an error naming the file. The
//! checks run on a thread of their own that nothing waits for at exit, so not even a file
//! system that hangs can hold up the shutdown.

mod files;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::config::{TlsFiles, TlsMinVersion};
use crate::metrics::Metrics;

pub use files::MAX_FILE_BYTES;
use files::Snapshot;

/// Why the certificate files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {}", path.display())]
    Read {
        /// Which file it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not a regular file (a FIFO, a device, a directory, a socket).
    #[error("{what} {} is not a regular file but {kind}: only regular files are read", path.display())]
    NotRegular {
        /// Which file it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A file is larger than [`MAX_FILE_BYTES`].
    #[error("{what} {} is too large: {size} bytes, at most {MAX_FILE_BYTES} are read", path.display())]
    TooLarge {
        /// Which file it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Its size, or the bytes read before giving up.
        size: u64,
    },
    /// A file is not valid PEM, or holds no item of the kind wanted.
    #[error("{what} {} {problem}", path.display())]
    Pem {
        /// Which file it is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The client CA file holds a certificate that cannot be a trust anchor.
    #[error("client CA {} holds an unusable certificate", path.display())]
    ClientCa {
        /// Its path.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: rustls::Error,
    },
    /// rustls refuses the combination (for example a key that does not match the certificate).
    #[error("cannot use certificate {} with key {}", cert.display(), key.display())]
    Config {
        /// The certificate path.
        cert: PathBuf,
        /// The key path.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// What is wrong with a PEM file, with the offending line as text (pem::Error shows it as a
/// list of byte values).
fn pem_problem(err: pem::Error, kind: &str) -> String {
    let line = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        match text.char_indices().nth(80) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_owned(),
        }
    };
    match err {
        pem::Error::NoItemsFound => format!("holds no {kind}"),
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "is not valid PEM: its {:?} section has no END line",
            line(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line: start } => format!(
            "is not valid PEM: malformed section start {:?}",
            line(&start)
        ),
        other => format!("is not valid PEM: {other}"),
    }
}

/// Whether an I/O error means the process is out of a resource (file descriptors, memory)
/// rather than that a file is missing or unreadable.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    // EMFILE and ENFILE on Linux, the only target.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    err.kind() == io::ErrorKind::OutOfMemory || matches!(err.raw_os_error(), Some(EMFILE | ENFILE))
}

impl TlsError {
    /// Whether the files could not be read for want of file descriptors or memory: says
    /// nothing about the files.
    pub fn is_resource_exhaustion(&self) -> bool {
        matches!(self, TlsError::Read { source, .. } if is_resource_exhaustion(source))
    }
}

fn certificates(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |problem| TlsError::Pem {
        what,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(pem_problem(e, "certificate")))?;
    if certs.is_empty() {
        return Err(pem_err("holds no certificate".into()));
    }
    Ok(certs)
}

/// The `notAfter` of a DER certificate, in Unix seconds; `None` when x509-parser cannot read
/// it (rustls has accepted the certificate by then: it stays in use).
fn not_after(cert: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// A configuration built from the files, with when its certificate expires.
#[derive(Debug, Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// The serving certificate's `notAfter`, in Unix seconds.
    not_after: Option<i64>,
}

fn build(
    files: &TlsFiles,
    snapshot: &Snapshot,
    min_version: TlsMinVersion,
    http2: bool,
) -> Result<Loaded, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("certificate", &files.cert, &snapshot.cert)?;
    let not_after = chain.first().and_then(|leaf| not_after(leaf));
    let key = PrivateKeyDer::from_pem_slice(&snapshot.key).map_err(|e| TlsError::Pem {
        what: "key",
        path: files.key.clone(),
        problem: pem_problem(e, "private key"),
    })?;
    let config_err = |source| TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(config_err)?;
    let builder = match (&files.client_ca, &snapshot.client_ca) {
        (Some(path), Some(bytes)) => {
            builder.with_client_cert_verifier(client_verifier(path, bytes, provider.clone())?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(config_err)?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

fn client_verifier(
    path: &Path,
    bytes: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("client CA", path, bytes)? {
        roots.add(cert).map_err(|source| TlsError::ClientCa {
            path: path.to_owned(),
            source,
        })?;
    }
    // Asked of every client, verified when presented (a certificate of another CA fails the
    // handshake), required only on the review path: the kubelet's HTTPS probes and a scraper
    // present none (`server::answer::ClientCert`).
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            source: rustls::Error::General(e.to_string()),
        })
}

/// What a reload check found.
#[derive(Debug)]
pub enum Reload {
    /// The files are as they were (or as they were when they last failed).
    Unchanged,
    /// The files are changing right now; look again later.
    Settling,
    /// New files were loaded; new connections use them.
    Reloaded,
    /// New files are broken; the old certificate stays in use.
    Failed(TlsError),
    /// The files could not be read for want of file descriptors or memory; look again later.
    Deferred(TlsError),
}

/// The current TLS configuration and the files it came from.
#[derive(Debug)]
pub struct TlsStore {
    files: TlsFiles,
    min_version: TlsMinVersion,
    http2: bool,
    current: RwLock<Loaded>,
    /// The bytes last loaded and the bytes that last failed.
    seen: Mutex<(Snapshot, Option<Snapshot>)>,
}

impl TlsStore {
    /// Loads the files; any problem is an error naming the file.
    pub fn load(
        files: &TlsFiles,
        min_version: TlsMinVersion,
        http2: bool,
    ) -> Result<Self, TlsError> {
        let snapshot = Snapshot::read(files)?;
        let loaded = build(files, &snapshot, min_version, http2)?;
        Ok(TlsStore {
            files: files.clone(),
            min_version,
            http2,
            current: RwLock::new(loaded),
            seen: Mutex::new((snapshot, None)),
        })
    }

    fn loaded(&self) -> Loaded {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.loaded().config
    }

    /// When the certificate in use expires (its `notAfter`), in Unix seconds; `None` when it
    /// cannot be read from the certificate.
    pub fn not_after(&self) -> Option<i64> {
        self.loaded().not_after
    }

    /// Reads the files and, when they changed and stay unchanged for `settle`, loads them.
    /// Blocking: call it from a blocking thread.
    pub fn check(&self, settle: Duration) -> Reload {
        let first = match Snapshot::read(&self.files) {
            Ok(s) => s,
            Err(e) if e.is_resource_exhaustion() => return Reload::Deferred(e),
            Err(_) => {
                // A file may be missing for a moment while it is replaced.
                std::thread::sleep(settle);
                match Snapshot::read(&self.files) {
                    Ok(_) => return Reload::Settling,
                    Err(e) if e.is_resource_exhaustion() => return Reload::Deferred(e),
                    Err(e) => return self.failed_unless_seen(None, e),
                }
            }
        };
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if first == seen.0 || seen.1.as_ref() == Some(&first) {
                return Reload::Unchanged;
            }
        }
        // A Secret update swaps all files at once, but other writers may not: wait for quiet.
        std::thread::sleep(settle);
        match Snapshot::read(&self.files) {
            Ok(second) if second == first => {}
            _ => return Reload::Settling,
        }
        match build(&self.files, &first, self.min_version, self.http2) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (first, None);
                Reload::Reloaded
            }
            Err(e) => self.failed_unless_seen(Some(first), e),
        }
    }

    fn failed_unless_seen(&self, snapshot: Option<Snapshot>, err: TlsError) -> Reload {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // An unreadable file has no bytes; report each distinct broken state once.
        let key = snapshot.unwrap_or(Snapshot {
            cert: err.to_string().into_bytes(),
            key: Vec::new(),
            client_ca: None,
        });
        if seen.1.as_ref() == Some(&key) {
            return Reload::Unchanged;
        }
        seen.1 = Some(key);
        Reload::Failed(err)
    }
}

/// Checks the files every `interval` until the task is dropped, logging and counting reloads.
///
/// The checks run on a thread of their own, not on tokio's blocking pool: the runtime waits
/// for its blocking tasks when it shuts down, and a check stuck in a hung file system would
/// hold up the exit for good. Nothing waits for this thread; it ends at its next check once
/// the task is gone. A check that does not finish is reported once, and the certificate in
/// use stays.
pub async fn watch(store: Arc<TlsStore>, interval: Duration, metrics: Arc<Metrics>) {
    let settle = (interval / 5).min(Duration::from_millis(200));
    let stuck_after = interval + STUCK_AFTER;
    let mut deferred = false;
    loop {
        let mut checks = match spawn_checks(store.clone(), interval, settle) {
            Ok(checks) => checks,
            Err(e) => {
                warn!(error = %e, "cannot start the certificate checks; retrying");
                tokio::time::sleep(interval).await;
                continue;
            }
        };
        let mut stuck = false;
        loop {
            let result = match tokio::time::timeout(stuck_after, checks.recv()).await {
                Ok(Some(result)) => result,
                // The thread ended (a panic): start another.
                Ok(None) => break,
                Err(_) => {
                    if !stuck {
                        stuck = true;
                        warn!(
                            waited = ?stuck_after,
                            "a certificate check has not finished (a hung file system?); \
                             the current certificate stays in use"
                        );
                    }
                    continue;
                }
            };
            if stuck {
                stuck = false;
                info!("the certificate check finished after all");
            }
            if deferred && !matches!(result, Reload::Deferred(_)) {
                deferred = false;
                info!("the certificate files can be read again");
            }
            report(result, &store, &mut deferred, &metrics);
        }
        warn!("the certificate checks stopped; starting them again");
    }
}

/// How much longer than the interval a check may take before it is reported as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Starts the thread that checks the files every `interval` and sends each result.
fn spawn_checks(
    store: Arc<TlsStore>,
    interval: Duration,
    settle: Duration,
) -> io::Result<tokio::sync::mpsc::Receiver<Reload>> {
    let (sender, checks) = tokio::sync::mpsc::channel(1);
    std::thread::Builder::new()
        .name("cert-reload".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                if sender.blocking_send(store.check(settle)).is_err() {
                    // The watch is gone: the server stopped.
                    return;
                }
            }
        })?;
    Ok(checks)
}

/// Sets the expiry metric to the certificate in use; one that cannot be read is 0, which the
/// expiry alerts take for an expired certificate, and a warning.
pub fn record_expiry(store: &TlsStore, metrics: &Metrics) {
    let not_after = store.not_after();
    if not_after.is_none() {
        warn!(
            cert = %store.files.cert.display(),
            "cannot read the serving certificate's notAfter; its expiry metric is 0"
        );
    }
    metrics.set_certificate_expiry(not_after);
}

/// Logs and counts the result of one check.
fn report(result: Reload, store: &TlsStore, deferred: &mut bool, metrics: &Metrics) {
    match result {
        Reload::Unchanged | Reload::Settling => {}
        Reload::Deferred(e) => {
            // Not the files' fault: no reload error, and one warning until it passes.
            if !*deferred {
                *deferred = true;
                warn!(
                    error = %crate::error_chain(&e),
                    "cannot check the certificate files for changes; retrying"
                );
            }
        }
        Reload::Reloaded => {
            metrics.cert_reloads.inc();
            record_expiry(store, metrics);
            info!(
                not_after = store.not_after(),
                "reloaded the TLS certificate; new connections use it"
            );
        }
        Reload::Failed(e) => {
            metrics.cert_reload_errors.inc();
            warn!(
                error = %crate::error_chain(&e),
                "cannot reload the TLS certificate; keeping the previous one"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_problems_read_as_text() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"-----BEGIN CERTIFICATE-----\nMIIB\n",
                "is not valid PEM: its \"CERTIFICATE\" section has no END line",
            ),
            (b"not a certificate\n", "holds no certificate"),
            (b"", "holds no certificate"),
        ];
        for (bytes, want) in cases {
            let got = certificates("certificate", Path::new("c.pem"), bytes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.contains(want), "{got:?} lacks {want:?}");
            assert!(!got.contains("[45, 45"), "{got}");
        }
    }

    /// A directory of its own for one test's files, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("pod-webhook-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create the test directory");
            Dir(path)
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                cert: self.0.join("tls.crt"),
                key: self.0.join("tls.key"),
                client_ca: None,
            }
        }

        /// Writes a fresh self-signed certificate and its key.
        fn write_good(&self) {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .expect("generate a certificate");
            self.write(
                cert.cert.pem().as_bytes(),
                cert.key_pair.serialize_pem().as_bytes(),
            );
        }

        fn write(&self, cert: &[u8], key: &[u8]) {
            let files = self.files();
            std::fs::write(files.cert, cert).expect("write the certificate");
            std::fs::write(files.key, key).expect("write the key");
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(dir: &Dir) -> TlsStore {
        TlsStore::load(&dir.files(), TlsMinVersion::Tls12, false).expect("load a good certificate")
    }

    #[test]
    fn a_bad_certificate_keeps_the_last_good_one_until_fixed() {
        let dir = Dir::new("bad-then-fixed");
        dir.write_good();
        let store = load(&dir);
        let good = store.current();
        assert!(matches!(store.check(Duration::ZERO), Reload::Unchanged));

        // Broken: reported once, the old configuration stays in use.
        dir.write(
            b"not a certificate
",
            b"not a key
",
        );
        match store.check(Duration::ZERO) {
            Reload::Failed(TlsError::Pem { what, .. }) => assert_eq!(what, "certificate"),
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&good, &store.current()));
        assert!(matches!(store.check(Duration::ZERO), Reload::Unchanged));
        assert!(Arc::ptr_eq(&good, &store.current()));

        // Fixed with a new certificate: new connections get it.
        dir.write_good();
        assert!(matches!(store.check(Duration::ZERO), Reload::Reloaded));
        let fixed = store.current();
        assert!(!Arc::ptr_eq(&good, &fixed));
        assert!(matches!(store.check(Duration::ZERO), Reload::Unchanged));
        assert!(Arc::ptr_eq(&fixed, &store.current()));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = Dir::new("mismatch");
        dir.write_good();
        let store = load(&dir);
        let good = store.current();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("generate a certificate");
        let key = std::fs::read(dir.files().key).expect("read the key");
        dir.write(other.cert.pem().as_bytes(), &key);
        assert!(matches!(
            store.check(Duration::ZERO),
            Reload::Failed(TlsError::Config { .. })
        ));
        assert!(Arc::ptr_eq(&good, &store.current()));
    }

    #[test]
    fn a_missing_file_keeps_the_last_good_one_and_is_reported_once() {
        let dir = Dir::new("missing");
        dir.write_good();
        let store = load(&dir);
        let good = store.current();
        std::fs::remove_file(dir.files().key).expect("remove the key");
        match store.check(Duration::ZERO) {
            Reload::Failed(TlsError::Read { what, source, .. }) => {
                assert_eq!((what, source.kind()), ("key", io::ErrorKind::NotFound));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.check(Duration::ZERO), Reload::Unchanged));
        assert!(Arc::ptr_eq(&good, &store.current()));
        // At startup, a missing file is an error naming it.
        let error = TlsStore::load(&dir.files(), TlsMinVersion::Tls12, false)
            .map(|_| ())
            .expect_err("no key");
        assert!(error.to_string().contains("cannot read key"), "{error}");
    }

    #[test]
    fn a_fifo_or_a_huge_file_keeps_the_last_good_one() {
        let dir = Dir::new("fifo");
        dir.write_good();
        let store = load(&dir);
        let good = store.current();
        let cert = dir.files().cert;

        std::fs::remove_file(&cert).expect("remove the certificate");
        let made = std::process::Command::new("mkfifo")
            .arg(&cert)
            .status()
            .expect("run mkfifo");
        assert!(made.success());
        // Nobody writes the FIFO: the check does not wait for a writer.
        match store.check(Duration::ZERO) {
            Reload::Failed(TlsError::NotRegular { what, kind, .. }) => {
                assert_eq!((what, kind), ("certificate", "a FIFO"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.check(Duration::ZERO), Reload::Unchanged));
        assert!(Arc::ptr_eq(&good, &store.current()));

        std::fs::remove_file(&cert).expect("remove the FIFO");
        std::fs::File::create(&cert)
            .and_then(|file| file.set_len(50_000_000))
            .expect("a 50 MB file");
        match store.check(Duration::ZERO) {
            Reload::Failed(TlsError::TooLarge { what, size, .. }) => {
                assert_eq!((what, size), ("certificate", 50_000_000));
            }
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&good, &store.current()));

        dir.write_good();
        assert!(matches!(store.check(Duration::ZERO), Reload::Reloaded));
        assert!(!Arc::ptr_eq(&good, &store.current()));
    }

    #[test]
    fn not_after_in_unix_seconds() {
        for (year, month, day, want) in [
            (2027, 1, 2, 1_798_848_000),
            // UTCTime up to 2049, GeneralizedTime from 2050 on (RFC 5280).
            (2049, 12, 31, 2_524_521_600),
            (2050, 1, 1, 2_524_608_000),
            (2126, 1, 1, 4_922_899_200),
        ] {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
            params.not_after = rcgen::date_time_ymd(year, month, day);
            let key = rcgen::KeyPair::generate().expect("a key");
            let cert = params.self_signed(&key).expect("a certificate");
            assert_eq!(not_after(cert.der()), Some(want), "{year}-{month}-{day}");
        }
        assert_eq!(not_after(b"not a certificate"), None);
    }

    #[test]
    fn the_expiry_follows_the_certificate_in_use() {
        let dir = Dir::new("expiry");
        let write_until = |year| {
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
            let key = rcgen::KeyPair::generate().expect("a key");
            let cert = params.self_signed(&key).expect("a certificate");
            dir.write(cert.pem().as_bytes(), key.serialize_pem().as_bytes());
        };
        write_until(2030);
        let store = load(&dir);
        assert_eq!(store.not_after(), Some(1_893_456_000));
        // A broken pair keeps the old certificate, and its expiry.
        dir.write(b"not a certificate\n", b"not a key\n");
        assert!(matches!(store.check(Duration::ZERO), Reload::Failed(_)));
        assert_eq!(store.not_after(), Some(1_893_456_000));
        write_until(2031);
        assert!(matches!(store.check(Duration::ZERO), Reload::Reloaded));
        assert_eq!(store.not_after(), Some(1_924_992_000));
    }

    #[test]
    fn resource_exhaustion_is_not_a_bad_file() {
        for (err, exhausted) in [
            (io::Error::from_raw_os_error(24), true),
            (io::Error::from_raw_os_error(23), true),
            (io::Error::from(io::ErrorKind::OutOfMemory), true),
            (io::Error::from(io::ErrorKind::NotFound), false),
            (io::Error::from(io::ErrorKind::PermissionDenied), false),
        ] {
            let tls = TlsError::Read {
                what: "certificate",
                path: PathBuf::from("tls.crt"),
                source: err,
            };
            assert_eq!(tls.is_resource_exhaustion(), exhausted, "{tls:?}");
        }
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Soak: the real binary, as a child process, under keep-alive load for `SOAK_SECONDS`
//! (default 60) while its certificate is rotated every `SOAK_ROTATE_SECONDS` (default 3) by a
//! Kubernetes-style `..data` symlink swap and hundreds of idle and slow clients hold
//! connections. Zero failed well-formed requests; RSS at the end within 5 MiB of RSS after the
//! warm-up; the server's open file descriptors back to their baseline once the clients leave.
//! Everything on 127.0.0.1; every loop is bounded in time and count.

use test_support::webhook as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Ca, Client, Pem, admission, decoded_patch, k8s_secret_write, review_request, spawn_binary,
    status_kib, temp_dir,
};
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V1: &str = "admission.k8s.io/v1";
const LOAD_CONNECTIONS: usize = 8;
const IDLE_TCP: usize = 100;
const IDLE_TLS: usize = 100;
const SLOW: usize = 100;
const RSS_GROWTH_BOUND_KIB: u64 = 5 * 1024;

fn env_secs(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        })
        .unwrap_or(default);
    Duration::from_secs(secs)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("server fds")
        .count()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    idle_reconnects: AtomicU64,
    slow_cut_off: AtomicU64,
}

/// One keep-alive connection posting pods; a new connection every 500 requests so rotated
/// certificates are picked up. Returns the failures.
async fn load(
    client: Client,
    addr: SocketAddr,
    id: usize,
    until: Instant,
    counts: Arc<Counts>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let pod = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a", "env": [{"name": "A", "value": "1"}]}]}});
    let mut i = 0u64;
    'outer: while Instant::now() < until && i < 10_000_000 {
        let mut conn = match client.connect(addr).await {
            Ok(conn) => conn,
            Err(e) => {
                failures.push(format!("w{id}: connect: {e}"));
                break;
            }
        };
        for _ in 0..500 {
            if Instant::now() >= until {
                break 'outer;
            }
            i += 1;
            let uid = format!("w{id}-{i}");
            let result = conn
                .send(review_request(admission(V1, &uid, pod.clone()).to_string()))
                .await;
            match result {
                Ok(reply) if reply.status == StatusCode::OK => {
                    let review = reply.json();
                    let patch = decoded_patch(&review);
                    if review["response"]["uid"] != uid.as_str()
                        || patch.map(|p| p.as_array().map(Vec::len)) != Some(Some(2))
                    {
                        failures.push(format!("{uid}: wrong answer {review}"));
                    } else {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(reply) => {
                    failures.push(format!("{uid}: status {} {}", reply.status, reply.text()))
                }
                Err(e) => failures.push(format!("{uid}: {e}")),
            }
            if failures.len() >= 20 {
                break 'outer;
            }
        }
    }
    failures
}

/// A TCP connection that never starts TLS; reconnects whenever the server hangs up.
async fn idle_tcp(addr: SocketAddr, until: Instant, counts: Arc<Counts>) {
    while Instant::now() < until {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut buf = [0u8; 64];
        if tokio::time::timeout_at(until.into(), tcp.read(&mut buf))
            .await
            .is_ok()
        {
            counts.idle_reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A TLS connection that never sends a request.
async fn idle_tls(client: Client, addr: SocketAddr, until: Instant, counts: Arc<Counts>) {
    while Instant::now() < until {
        let Ok(mut tls) = client.tls(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut buf = [0u8; 64];
        if tokio::time::timeout_at(until.into(), tls.read(&mut buf))
            .await
            .is_ok()
        {
            counts.idle_reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A slow-loris client: a request head trickled out a byte a second until cut off.
async fn slow(client: Client, addr: SocketAddr, until: Instant, counts: Arc<Counts>) {
    while Instant::now() < until {
        let Ok(mut tls) = client.tls(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if tls
            .write_all(b"POST /webhook/pod-apiserver-env HTTP/1.1\r\nx-slow: ")
            .await
            .is_err()
        {
            continue;
        }
        let _ = tls.flush().await;
        for _ in 0..10_000 {
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if tls.write_all(b"a").await.is_err() || tls.flush().await.is_err() {
                counts.slow_cut_off.fetch_add(1, Ordering::Relaxed);
                break;
            }
            // The server may also have closed: a read sees it without blocking long.
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await
            {
                counts.slow_cut_off.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs 60 s (make test runs it)"]
async fn soak_load_rotation_idle_and_slow_clients() {
    let duration = env_secs("SOAK_SECONDS", 60);
    let rotate_every = env_secs("SOAK_ROTATE_SECONDS", 3).max(Duration::from_secs(1));
    let warm_up = duration / 6;

    let ca = Ca::new("soak CA").expect("CA");
    let pems: Vec<Pem> = (0..4)
        .map(|i| ca.server(&format!("soak-{i}")).expect("cert"))
        .collect();
    let dir = temp_dir();
    k8s_secret_write(dir.path(), 0, &pems[0]);
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let (mut server, addr) = spawn_binary(
        dir.path(),
        &ca.cert_pem(),
        &["--shutdown-delay=100ms"],
        log.into(),
        None,
    )
    .await;
    let pid = server.id();
    let client = Client::new(&ca.cert_pem(), None, &[b"http/1.1"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_baseline = open_fds(pid);

    let started = Instant::now();
    let until = started + duration;
    let counts = Arc::new(Counts::default());
    let mut loaders = Vec::new();
    for id in 0..LOAD_CONNECTIONS {
        loaders.push(tokio::spawn(load(
            client.clone(),
            addr,
            id,
            until,
            counts.clone(),
        )));
    }
    let mut holders = Vec::new();
    for _ in 0..IDLE_TCP {
        holders.push(tokio::spawn(idle_tcp(addr, until, counts.clone())));
    }
    for _ in 0..IDLE_TLS {
        holders.push(tokio::spawn(idle_tls(
            client.clone(),
            addr,
            until,
            counts.clone(),
        )));
    }
    for _ in 0..SLOW {
        holders.push(tokio::spawn(slow(
            client.clone(),
            addr,
            until,
            counts.clone(),
        )));
    }

    // Rotate the certificate until the end; note RSS once warmed up.
    let mut rotations = 0u32;
    let mut rss_warm = None;
    let mut peak_fds = 0;
    while Instant::now() + rotate_every < until {
        tokio::time::sleep(rotate_every).await;
        rotations += 1;
        k8s_secret_write(
            dir.path(),
            rotations,
            &pems[rotations as usize % pems.len()],
        );
        peak_fds = peak_fds.max(open_fds(pid));
        if rss_warm.is_none() && started.elapsed() >= warm_up {
            rss_warm = Some(status_kib(pid, "VmRSS:"));
        }
    }
    tokio::time::sleep_until(until.into()).await;
    let rss_end = status_kib(pid, "VmRSS:");
    let rss_warm = rss_warm.unwrap_or(rss_end);

    let mut failures = Vec::new();
    for task in loaders {
        failures.extend(task.await.expect("load task"));
    }
    for task in holders {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("idle and slow clients stop at the deadline")
            .expect("holder task");
    }
    // The last certificate is the one new connections get.
    let last = rotations as usize % pems.len();
    let want = rustls::pki_types::CertificateDer::from(
        rustls::pki_types::pem::PemObject::from_pem_slice(pems[last].cert.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .expect("cert"),
    );
    let mut served_last = false;
    for _ in 0..100 {
        if let Ok(conn) = client.connect(addr).await
            && conn.peer_cert == want.as_ref()
        {
            served_last = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);

    // Every client is gone: the server's descriptors return to the baseline.
    let mut fds_end = open_fds(pid);
    for _ in 0..150 {
        if fds_end <= fds_baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_end = open_fds(pid);
    }
    let peak_rss = status_kib(pid, "VmHWM:");
    let ok = counts.ok.load(Ordering::Relaxed);
    eprintln!(
        "soak: {:?}, {ok} well-formed requests ({:.0}/s), {} failed; {rotations} certificate rotations; \
         {} idle/slow connections held ({} idle reconnects, {} slow clients cut off); \
         RSS after warm-up {:.1} MiB, at the end {:.1} MiB, peak {:.1} MiB; fds baseline {fds_baseline}, \
         peak {peak_fds}, after {fds_end}",
        duration,
        ok as f64 / duration.as_secs_f64(),
        failures.len(),
        IDLE_TCP + IDLE_TLS + SLOW,
        counts.idle_reconnects.load(Ordering::Relaxed),
        counts.slow_cut_off.load(Ordering::Relaxed),
        rss_warm as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
    );
    assert!(
        failures.is_empty(),
        "failed well-formed requests: {failures:#?}"
    );
    assert!(ok > 0, "no request served");
    assert!(rotations >= 1, "no rotation within {duration:?}");
    assert!(
        served_last,
        "new connections get the last rotated certificate"
    );
    assert!(
        peak_fds >= fds_baseline + IDLE_TLS + SLOW,
        "the idle and slow clients really held connections (peak fds {peak_fds})"
    );
    if duration > Duration::from_secs(12) {
        assert!(
            counts.slow_cut_off.load(Ordering::Relaxed) > 0,
            "slow clients are cut off"
        );
    }
    assert!(
        rss_end <= rss_warm + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB"
    );
    assert_eq!(
        fds_end, fds_baseline,
        "file descriptors back to the baseline"
    );

    // And it still shuts down cleanly.
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    );
}

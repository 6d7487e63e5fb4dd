// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Start-to-ready time: starts the webhook binary, then polls `GET /readyz` over TLS as fast as
//! it can, and reports the time from spawning the process to the first 200. Repeats and prints
//! min / median / max.
//!
//!     ready-time WEBHOOK_BINARY CERT_DIR PORT [RUNS]

use std::error::Error;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn ready(connector: &TlsConnector, port: u16) -> bool {
    let attempt = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<bool, std::io::Error>(answer.starts_with(b"HTTP/1.1 200"))
    };
    attempt.await.unwrap_or(false)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ready-time WEBHOOK_BINARY CERT_DIR PORT [RUNS]";
    let binary = args.next().ok_or(usage)?;
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    if runs == 0 {
        return Err("RUNS must be at least 1".into());
    }

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt"))? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .args(["--apiserver-fqdn=foo.bar.", "--host=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg("--cert-dir")
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let became_ready = runtime.block_on(async {
            while started.elapsed() < Duration::from_secs(10) {
                if ready(&connector, port).await {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            None
        });
        child.kill()?;
        child.wait()?;
        times.push(became_ready.ok_or("the webhook did not become ready within 10 s")?);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "start-to-ready over {runs} runs: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

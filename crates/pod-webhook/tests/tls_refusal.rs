// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Clients that offer only TLS 1.0 or 1.1 are refused with a protocol_version alert. rustls
//! clients cannot offer those versions, so the ClientHellos are written out byte by byte (and
//! the same hello offering TLS 1.2 gets a ServerHello, which shows the hello itself is sound);
//! Debian's openssl, allowed the old versions at security level 0, is refused with a fatal alert.
//! (mTLS refusals are in e2e.rs: `mtls_guards_reviews_and_lets_probes_through`.)

use test_support::webhook as common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Certs, Server, config};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TLS10: u16 = 0x0301;
const TLS11: u16 = 0x0302;
const TLS12: u16 = 0x0303;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const PROTOCOL_VERSION: u8 = 70;

fn u16be(v: usize) -> [u8; 2] {
    u16::try_from(v).expect("fits in u16").to_be_bytes()
}

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend_from_slice(&u16be(body.len()));
    out.extend_from_slice(body);
    out
}

/// A ClientHello record offering `version` (and nothing newer: no supported_versions
/// extension), with ECDHE suites, groups and signature algorithms the server supports.
fn client_hello(version: u16) -> Vec<u8> {
    let mut hello = version.to_be_bytes().to_vec();
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f, 0x00ff];
    hello.extend_from_slice(&u16be(suites.len() * 2));
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    let name = b"localhost";
    let mut sni = u16be(name.len() + 3).to_vec();
    sni.push(0);
    sni.extend_from_slice(&u16be(name.len()));
    sni.extend_from_slice(name);
    let mut extensions = extension(0x0000, &sni);
    extensions.extend(extension(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17])); // x25519, P-256
    extensions.extend(extension(0x000b, &[1, 0])); // uncompressed points
    extensions.extend(extension(
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ));
    extensions.extend(extension(0x0017, &[])); // extended master secret
    hello.extend_from_slice(&u16be(extensions.len()));
    hello.extend_from_slice(&extensions);

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&u32::try_from(hello.len()).expect("len").to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![HANDSHAKE, 0x03, 0x01];
    record.extend_from_slice(&u16be(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

/// Sends the hello and reads what the server answers until it closes (or 10 s pass).
async fn answer_to(addr: SocketAddr, hello: &[u8]) -> (Vec<u8>, bool) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(hello).await.expect("write hello");
    // A ServerHello flight does not end with a close: stop once it is in.
    test_support::read_until(&mut tcp, Duration::from_secs(10), |out| {
        out.first() == Some(&HANDSHAKE) && out.len() > 5
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_10_and_11_hellos_get_a_protocol_version_alert() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;

    // The control: the same hello offering TLS 1.2 is answered with a ServerHello.
    let (answer, _) = answer_to(server.addr, &client_hello(TLS12)).await;
    assert_eq!(answer.first(), Some(&HANDSHAKE), "{answer:02x?}");
    assert_eq!(
        answer.get(5),
        Some(&2),
        "server_hello expected: {answer:02x?}"
    );

    for (name, version) in [("TLS 1.0", TLS10), ("TLS 1.1", TLS11)] {
        let (answer, closed) = answer_to(server.addr, &client_hello(version)).await;
        assert!(closed, "{name}: the server closes the connection");
        // One alert record: level fatal (2), description protocol_version.
        assert_eq!(answer.first(), Some(&ALERT), "{name}: {answer:02x?}");
        assert_eq!(
            answer.get(5..7),
            Some(&[2, PROTOCOL_VERSION][..]),
            "{name}: fatal protocol_version alert expected: {answer:02x?}"
        );
        assert_eq!(
            answer.len(),
            7,
            "{name}: nothing but the alert: {answer:02x?}"
        );
    }

    // Still serving TLS 1.2 and 1.3 clients.
    let client = certs.http1_client();
    let reply = client
        .once(server.addr, common::get("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(reply.status, hyper::StatusCode::OK);
}

/// The same refusal seen by a real TLS stack: openssl offering only TLS 1.0 or 1.1 (allowed
/// at security level 0) gets a fatal alert from the server and negotiates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_with_only_tls_10_or_11_is_refused() {
    let certs = Certs::new();
    let server = Server::start(config(certs.dir.path())).await;
    let connect = server.addr.to_string();
    for flag in ["-tls1", "-tls1_1"] {
        let addr = connect.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr,
                    "-servername",
                    "localhost",
                    flag,
                ])
                .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
                .stdin(std::process::Stdio::null())
                .output()
        })
        .await
        .expect("join")
        .expect("openssl must be installed (Debian package openssl) for this test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "{flag}: handshake must fail:\n{text}"
        );
        // The server read the hello and answered with one fatal alert (7 bytes): protocol
        // version, or handshake failure when the hello also offers only TLS 1.0-era suites.
        assert!(
            text.contains("SSL handshake has read 7 bytes")
                && (text.contains("SSL alert number 70") || text.contains("SSL alert number 40")),
            "{flag}: the server's fatal alert expected:\n{text}"
        );
        assert!(
            text.contains("Cipher is (NONE)"),
            "{flag}: nothing negotiated:\n{text}"
        );
    }
}

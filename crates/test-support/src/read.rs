// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Reading what a server sends until it closes the connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads until EOF, a read error, or `limit`. Returns what arrived (also when `limit` passed)
/// and whether the stream ended before `limit`.
pub async fn read_until_close(
    reader: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> (Vec<u8>, bool) {
    read_until(reader, limit, |_| false).await
}

/// [`read_until_close`], also stopping as soon as `done` holds for what arrived so far (which
/// counts as ending before `limit`).
pub async fn read_until(
    reader: &mut (impl AsyncRead + Unpin),
    limit: Duration,
    mut done: impl FnMut(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let ended = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if done(&out) {
                break;
            }
        }
    })
    .await
    .is_ok();
    (out, ended)
}

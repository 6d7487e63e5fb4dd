// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The listening socket: one address, or the dual-stack wildcard; a backlog of 1024 either way.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

use crate::config::Listen;

use super::ServerError;

/// Connections waiting to be accepted: room for a burst of kube-apiserver's clients.
const BACKLOG: i32 = 1024;

pub(super) async fn bind(listen: &Listen) -> Result<TcpListener, ServerError> {
    let host = listen.host.trim_start_matches('[').trim_end_matches(']');
    let bind_err = |addr: String| move |source| ServerError::Bind { addr, source };
    let ipv6_wildcard = host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_unspecified());
    if host.is_empty() || ipv6_wildcard {
        // All addresses (and `::`, as in Go): the IPv6 wildcard with IPv4 mapped in; on a host
        // without IPv6, the IPv4 wildcard alone.
        let all = format!("all addresses, port {}", listen.port);
        let listener = match common::listen::bind_dual_stack(listen.port, BACKLOG) {
            Ok(listener) => listener,
            // Both failures named: on a host without IPv6 the first only says so, and the
            // second is the one that matters.
            Err(dual_stack) => common::listen::bind(
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen.port)),
                BACKLOG,
            )
            .map_err(bind_err(format!(
                "{all}; IPv6 wildcard: {dual_stack}; IPv4 wildcard"
            )))?,
        };
        TcpListener::from_std(listener).map_err(bind_err(all))
    } else {
        // A name may stand for several addresses: the first that binds, as the standard
        // library's `bind` does, but with our backlog.
        let named = format!("{}:{}", listen.host, listen.port);
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address for the host");
        for addr in tokio::net::lookup_host((host, listen.port))
            .await
            .map_err(bind_err(named.clone()))?
        {
            match common::listen::bind(addr, BACKLOG).and_then(TcpListener::from_std) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = e,
            }
        }
        Err(bind_err(named)(last))
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Listening sockets with a backlog of our choosing (the standard library's is 128): one
//! address, or the IPv6 wildcard that takes IPv4 too, as Go's listeners do.

use std::net::{Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// `[::]:port`, listening for IPv4 too whatever `net.ipv6.bindv6only` says (a hardened node may
/// set it), non-blocking, with room for `backlog` connections waiting to be accepted.
pub fn bind_dual_stack(port: u16, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// `addr`, non-blocking, with room for `backlog` connections waiting to be accepted.
pub fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn takes_ipv4_and_ipv6_clients() {
        let listener = bind_dual_stack(0, 8).expect("bind [::]:0");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(false).expect("blocking");
        for client in ["127.0.0.1", "::1"] {
            let address = SocketAddr::new(client.parse().expect("ip"), port);
            let _stream = TcpStream::connect(address).expect("connect");
            let (_, peer) = listener.accept().expect("accept");
            assert_eq!(peer.ip().to_canonical(), address.ip(), "{client}");
        }
    }

    /// Clients the listener has not accepted yet wait in its backlog: `backlog` of them connect
    /// at once, where the standard library's 128 would leave the rest retrying their SYN.
    #[test]
    fn holds_as_many_waiting_clients_as_asked() {
        for address in ["127.0.0.1:0", "[::1]:0"] {
            let address: SocketAddr = address.parse().expect("address");
            let Ok(listener) = bind(address, 1024) else {
                assert!(address.is_ipv6(), "cannot bind {address}");
                continue; // no IPv6 on this host
            };
            let addr = listener.local_addr().expect("address");
            let mut waiting = Vec::new();
            let started = std::time::Instant::now();
            for i in 0..300 {
                let stream = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("client {i} to {addr}: {e}"));
                waiting.push(stream);
            }
            // A SYN dropped for a full backlog is retried after 1 s at the earliest.
            assert!(
                started.elapsed() < std::time::Duration::from_millis(900),
                "{addr}: 300 clients took {:?}",
                started.elapsed()
            );
        }
    }
}

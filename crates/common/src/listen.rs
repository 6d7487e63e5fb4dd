// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The IPv6 wildcard listener that takes IPv4 too, as Go's listeners do.

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
}

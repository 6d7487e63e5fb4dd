// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Links and addresses over rtnetlink. Requests go over a socket of their own that joins no
//! multicast group, so a notification can never be taken for a reply (netlink-proto matches
//! replies by sequence number and sender, and every notification comes from the kernel) and a
//! burst of notifications cannot crowd a reply out of the socket's buffer. The notifications
//! are read on a second socket (`events.rs`).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

/// How long one netlink request (or one dump) may take. The kernel answers in microseconds; a
/// request still unanswered after this is lost, and the connection is replaced.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub is_dummy: bool,
    pub is_loopback: bool,
    pub up: bool,
}

/// One copy of the proxy's address on some interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    pub ip: IpAddr,
    pub index: u32,
    pub prefix_len: u8,
    pub scope: AddressScope,
    pub deprecated: bool,
    /// The address protocol (`IFA_PROTO`, Linux 5.18 and later), which marks who added it.
    pub protocol: Option<u8>,
    message: AddressMessage,
}

/// The address protocol the sidecar marks its addresses with, so that it recognises them
/// later (an earlier IP, say). Values 0 to 3 are the kernel's own.
pub const ADDRESS_PROTOCOL: u8 = 0x70;

/// A netlink request that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {cause}{}", hint(cause, action))]
pub struct NetifError {
    pub action: String,
    /// What the kernel answered (shown in the message: a leaf cause, not a `source()`).
    pub cause: io::Error,
}

/// What to check for the kernel's answer `error` to `action`, if the errno says more.
fn hint(error: &io::Error, action: &str) -> &'static str {
    match error.raw_os_error() {
        Some(EPERM) => " (the sidecar needs CAP_NET_ADMIN)",
        // The kernel refuses IPv6 addresses with EACCES where IPv6 is disabled.
        Some(EACCES) if names_ipv6(action) => {
            " (IPv6 is disabled in this network namespace: set the sysctls net.ipv6.conf.all.disable_ipv6 and net.ipv6.conf.<interface>.disable_ipv6 to 0)"
        }
        Some(EOPNOTSUPP) => {
            " (the kernel cannot create dummy links: enable CONFIG_DUMMY or create the interface beforehand)"
        }
        _ => "",
    }
}

/// Whether an action is about an IPv6 address (names one, as `add fd00::2 to interface lo`).
fn names_ipv6(action: &str) -> bool {
    action
        .split_whitespace()
        .any(|word| word.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A lifetime that never ends (`INFINITY_LIFE_TIME`).
const FOREVER: u32 = u32::MAX;

const EPERM: i32 = 1;
const EACCES: i32 = 13;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;
const EADDRNOTAVAIL: i32 = 99;

fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn failed(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetifError {
    let action = action.into();
    move |error| NetifError {
        action,
        cause: to_io(error),
    }
}

/// A netlink connection for links and addresses.
#[derive(Debug, Clone)]
pub struct Netif {
    handle: Arc<Mutex<Handle>>,
}

/// A request-only netlink connection, running on the current runtime until its handle is
/// dropped.
fn open_requests() -> Result<Handle, NetifError> {
    let (connection, handle, _notifications) =
        rtnetlink::new_connection().map_err(|cause| NetifError {
            action: "open a netlink socket".into(),
            cause,
        })?;
    tokio::spawn(connection);
    Ok(handle)
}

impl Netif {
    /// Opens the request connection on the current runtime.
    pub fn connect() -> Result<Netif, NetifError> {
        Ok(Netif {
            handle: Arc::new(Mutex::new(open_requests()?)),
        })
    }

    fn handle(&self) -> Handle {
        match self.handle.lock() {
            Ok(handle) => handle.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs one request within [`REQUEST_TIMEOUT`]. A request that overruns it is abandoned
    /// together with its connection, so a lost reply cannot leave anything pending.
    async fn bounded<T>(
        &self,
        action: impl FnOnce() -> String,
        request: impl Future<Output = Result<T, NetifError>>,
    ) -> Result<T, NetifError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(result) => result,
            Err(_) => {
                if let (Ok(fresh), Ok(mut handle)) = (open_requests(), self.handle.lock()) {
                    *handle = fresh;
                }
                Err(NetifError {
                    action: action(),
                    cause: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from the kernel within {REQUEST_TIMEOUT:?}"),
                    ),
                })
            }
        }
    }

    /// The link called `name`, or `None` when there is none.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetifError> {
        let action = || format!("look up interface {name}");
        let mut links = self
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        self.bounded(action, async {
            match links.try_next().await {
                Ok(link) => Ok(link.map(|message| link_from(&message))),
                Err(error) => match to_io(error) {
                    error if error.raw_os_error() == Some(ENODEV) => Ok(None),
                    cause => Err(NetifError {
                        action: action(),
                        cause,
                    }),
                },
            }
        })
        .await
    }

    /// Creates a dummy link that is up.
    pub async fn create_dummy(&self, name: &str) -> Result<Link, NetifError> {
        let action = || format!("create dummy interface {name}");
        let request = self
            .handle()
            .link()
            .add(LinkDummy::new(name).up().build())
            .execute();
        self.bounded(action, async { request.await.map_err(failed(action())) })
            .await?;
        self.link_by_name(name).await?.ok_or_else(|| NetifError {
            action: format!("find dummy interface {name} after creating it"),
            cause: io::Error::from_raw_os_error(ENODEV),
        })
    }

    /// Brings a link up.
    pub async fn set_up(&self, link: &Link) -> Result<(), NetifError> {
        let action = || format!("bring interface {} up", link.name);
        let request = self
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(link.index).up().build())
            .execute();
        self.bounded(action, async { request.await.map_err(failed(action())) })
            .await
    }

    /// Deletes a link; one that is already gone counts as deleted.
    pub async fn delete_link(&self, link: &Link) -> Result<(), NetifError> {
        let action = || format!("delete interface {}", link.name);
        let request = self.handle().link().del(link.index).execute();
        self.bounded(action, async {
            gone_is_done(request.await.map_err(to_io), ENODEV, action)
        })
        .await
    }

    /// The addresses on any interface that `keep` accepts. Only those are held: a node can
    /// carry thousands of addresses (kube-proxy in IPVS mode puts every Service IP on
    /// kube-ipvs0), and a sync that held them all would cost megabytes each time.
    pub async fn addresses(
        &self,
        keep: impl Fn(&AddressEntry) -> bool,
    ) -> Result<Vec<AddressEntry>, NetifError> {
        let action = || "list the addresses".to_string();
        let mut dump = self.handle().address().get().execute();
        self.bounded(action, async {
            let mut found = Vec::new();
            while let Some(message) = dump.try_next().await.map_err(failed(action()))? {
                if let Some(ip) = address_of(&message) {
                    let entry = entry(ip, message);
                    if keep(&entry) {
                        found.push(entry);
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// Puts `ip` on the link with a full-length prefix, global scope (host scope would break
    /// Cilium's BPF masquerading) and the sidecar's mark ([`ADDRESS_PROTOCOL`]), or updates the
    /// copy there in place. An IPv6 address gets a
    /// preferred lifetime of 0: it stays reachable but the kernel never picks it as the source
    /// of the node's own traffic (IPv4 has no such state).
    pub async fn add_address(&self, link: &Link, ip: IpAddr) -> Result<(), NetifError> {
        let action = || format!("add {ip} to interface {}", link.name);
        let mut request = self
            .handle()
            .address()
            .add(link.index, ip, full_prefix(ip))
            .replace();
        request.message_mut().header.scope = AddressScope::Universe;
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Protocol(ADDRESS_PROTOCOL.into()));
        if ip.is_ipv6() {
            // The address is this node's own: no duplicate address detection, which would keep
            // it tentative (unusable) for a while, or for good on a link without carrier.
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = FOREVER;
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(lifetimes));
        }
        let request = request.execute();
        self.bounded(action, async { request.await.map_err(failed(action())) })
            .await
    }

    /// Deletes one copy of the address; one that is already gone counts as deleted.
    pub async fn delete_address(&self, entry: &AddressEntry) -> Result<(), NetifError> {
        let action = || format!("delete address from interface index {}", entry.index);
        let request = self.handle().address().del(entry.message.clone()).execute();
        self.bounded(action, async {
            gone_is_done(request.await.map_err(to_io), EADDRNOTAVAIL, action)
        })
        .await
    }
}

fn entry(ip: IpAddr, message: AddressMessage) -> AddressEntry {
    let protocol = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Protocol(protocol) => Some(u8::from(*protocol)),
            _ => None,
        });
    AddressEntry {
        ip,
        index: message.header.index,
        prefix_len: message.header.prefix_len,
        scope: message.header.scope,
        deprecated: message
            .header
            .flags
            .contains(AddressHeaderFlags::Deprecated),
        protocol,
        message,
    }
}

/// A delete whose target is already gone (the kernel answers `gone_errno`) has done its job.
fn gone_is_done(
    result: io::Result<()>,
    gone_errno: i32,
    action: impl FnOnce() -> String,
) -> Result<(), NetifError> {
    match result {
        Err(error) if error.raw_os_error() != Some(gone_errno) => Err(NetifError {
            action: action(),
            cause: error,
        }),
        _ => Ok(()),
    }
}

/// /32 for IPv4, /128 for IPv6.
pub fn full_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn link_from(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        is_dummy: false,
        is_loopback: message.header.flags.contains(LinkFlags::Loopback),
        up: message.header.flags.contains(LinkFlags::Up),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::LinkInfo(infos) => {
                link.is_dummy = infos
                    .iter()
                    .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Dummy)));
            }
            _ => {}
        }
    }
    link
}

fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// What a kernel notification means for the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The proxy's address was removed from some interface.
    AddressRemoved,
    /// The proxy's address was put on the interface with this index, or changed there (its
    /// flags or lifetimes). `position` is the address's place in `--ip-address`; `preferred`
    /// tells an IPv6 address whose preferred lifetime is not over, which the node may pick as
    /// a source (always false for IPv4, which has no such state).
    AddressAdded {
        index: u32,
        position: usize,
        preferred: bool,
    },
    /// A link changed state or was removed.
    LinkChanged { index: u32, removed: bool, up: bool },
    /// Anything else.
    Other,
}

/// Classifies a notification against the proxy's addresses.
pub fn classify(message: &NetlinkMessage<RouteNetlinkMessage>, ips: &[IpAddr]) -> Event {
    let position = |address: &AddressMessage| {
        address_of(address).and_then(|ip| ips.iter().position(|wanted| *wanted == ip))
    };
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(address))
            if position(address).is_some() =>
        {
            Event::AddressRemoved
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
            match position(address) {
                Some(position) => Event::AddressAdded {
                    index: address.header.index,
                    position,
                    preferred: ips.get(position).is_some_and(IpAddr::is_ipv6)
                        && !address
                            .header
                            .flags
                            .contains(AddressHeaderFlags::Deprecated),
                },
                None => Event::Other,
            }
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => Event::LinkChanged {
            index: link.header.index,
            removed: true,
            up: false,
        },
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Event::LinkChanged {
            index: link.header.index,
            removed: false,
            up: link.header.flags.contains(LinkFlags::Up),
        },
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::NetlinkHeader;

    fn message(inner: RouteNetlinkMessage) -> NetlinkMessage<RouteNetlinkMessage> {
        NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(inner),
        )
    }

    fn address(ip: &str, index: u32, local: bool) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.index = index;
        let ip: IpAddr = ip.parse().expect("ip");
        message.attributes.push(if local {
            AddressAttribute::Local(ip)
        } else {
            AddressAttribute::Address(ip)
        });
        message
    }

    fn link(index: u32, flags: LinkFlags) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = flags;
        message
    }

    #[test]
    fn notifications_are_classified_against_the_proxy_address() {
        let ip: IpAddr = "10.96.0.2".parse().expect("ip");
        let cases = [
            (
                message(RouteNetlinkMessage::DelAddress(address(
                    "10.96.0.2",
                    1,
                    true,
                ))),
                Event::AddressRemoved,
            ),
            (
                message(RouteNetlinkMessage::NewAddress(address(
                    "10.96.0.2",
                    4,
                    true,
                ))),
                Event::AddressAdded {
                    index: 4,
                    position: 0,
                    preferred: false,
                },
            ),
            // Without IFA_LOCAL, IFA_ADDRESS is the interface's own address.
            (
                message(RouteNetlinkMessage::NewAddress(address(
                    "10.96.0.2",
                    5,
                    false,
                ))),
                Event::AddressAdded {
                    index: 5,
                    position: 0,
                    preferred: false,
                },
            ),
            (
                message(RouteNetlinkMessage::DelAddress(address(
                    "10.96.0.3",
                    1,
                    true,
                ))),
                Event::Other,
            ),
            (
                message(RouteNetlinkMessage::NewAddress(address("fd00::2", 1, true))),
                Event::Other,
            ),
            (
                message(RouteNetlinkMessage::DelLink(link(7, LinkFlags::Up))),
                Event::LinkChanged {
                    index: 7,
                    removed: true,
                    up: false,
                },
            ),
            (
                message(RouteNetlinkMessage::NewLink(link(7, LinkFlags::Up))),
                Event::LinkChanged {
                    index: 7,
                    removed: false,
                    up: true,
                },
            ),
            (
                message(RouteNetlinkMessage::NewLink(link(7, LinkFlags::empty()))),
                Event::LinkChanged {
                    index: 7,
                    removed: false,
                    up: false,
                },
            ),
        ];
        for (message, want) in cases {
            assert_eq!(classify(&message, &[ip]), want, "{message:?}");
        }
    }

    #[test]
    fn notifications_are_classified_against_every_proxy_address() {
        let ips: Vec<IpAddr> = ["10.96.0.2", "fd00::2"]
            .iter()
            .map(|text| text.parse().expect("ip"))
            .collect();
        let cases = [
            (
                RouteNetlinkMessage::DelAddress(address("fd00::2", 1, true)),
                Event::AddressRemoved,
            ),
            (
                RouteNetlinkMessage::DelAddress(address("10.96.0.2", 1, true)),
                Event::AddressRemoved,
            ),
            (
                RouteNetlinkMessage::NewAddress(address("fd00::2", 6, true)),
                Event::AddressAdded {
                    index: 6,
                    position: 1,
                    preferred: true,
                },
            ),
            (
                RouteNetlinkMessage::DelAddress(address("fd00::3", 1, true)),
                Event::Other,
            ),
        ];
        for (inner, want) in cases {
            let message = message(inner);
            assert_eq!(classify(&message, &ips), want, "{message:?}");
        }
    }

    #[test]
    fn errors_carry_a_hint_where_the_errno_has_one() {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "no answer");
        // what was done, what the kernel answered, the message
        let v4 = "add 10.96.0.2 to interface lo";
        let cases = [
            (
                v4,
                io::Error::from_raw_os_error(EPERM),
                "add 10.96.0.2 to interface lo: Operation not permitted (os error 1) (the sidecar needs CAP_NET_ADMIN)",
            ),
            (
                "add fd00::2 to interface lo",
                io::Error::from_raw_os_error(EACCES),
                "add fd00::2 to interface lo: Permission denied (os error 13) (IPv6 is disabled in this network namespace: set the sysctls net.ipv6.conf.all.disable_ipv6 and net.ipv6.conf.<interface>.disable_ipv6 to 0)",
            ),
            // EACCES for IPv4 is something else (a security module, say): no IPv6 hint.
            (
                v4,
                io::Error::from_raw_os_error(EACCES),
                "add 10.96.0.2 to interface lo: Permission denied (os error 13)",
            ),
            (
                v4,
                io::Error::from_raw_os_error(EOPNOTSUPP),
                "add 10.96.0.2 to interface lo: Operation not supported (os error 95) (the kernel cannot create dummy links: enable CONFIG_DUMMY or create the interface beforehand)",
            ),
            (
                v4,
                io::Error::from_raw_os_error(ENODEV),
                "add 10.96.0.2 to interface lo: No such device (os error 19)",
            ),
            (v4, timed_out(), "add 10.96.0.2 to interface lo: no answer"),
        ];
        for (action, cause, want) in cases {
            let error = NetifError {
                action: action.into(),
                cause,
            };
            assert_eq!(error.to_string(), want);
            // The kernel's answer is in the message: shown once, not again as a source.
            assert!(std::error::Error::source(&error).is_none(), "{want}");
        }
    }

    #[test]
    fn a_delete_of_what_is_gone_is_done() {
        let os = |errno| Err(io::Error::from_raw_os_error(errno));
        // the kernel's answer, the errno that means gone, whether the delete failed
        let cases = [
            (Ok(()), EADDRNOTAVAIL, false),
            (os(EADDRNOTAVAIL), EADDRNOTAVAIL, false),
            (os(ENODEV), ENODEV, false),
            (os(ENODEV), EADDRNOTAVAIL, true),
            (os(EPERM), ENODEV, true),
            (Err(io::Error::other("lost")), ENODEV, true),
        ];
        for (answer, gone, fails) in cases {
            let shown = format!("{answer:?}");
            let result = gone_is_done(answer, gone, || "delete".to_string());
            assert_eq!(result.is_err(), fails, "{shown} with gone {gone}");
        }
    }

    #[test]
    fn an_ipv6_address_made_preferred_again_is_told_apart() {
        let ips: Vec<IpAddr> = ["10.96.0.2", "fd00::2"]
            .iter()
            .map(|ip| ip.parse().expect("ip"))
            .collect();
        let notified = |ip: &str, deprecated: bool| {
            let mut message = address(ip, 4, true);
            if deprecated {
                message.header.flags |= AddressHeaderFlags::Deprecated;
            }
            classify(
                &self::message(RouteNetlinkMessage::NewAddress(message)),
                &ips,
            )
        };
        // address, deprecated, preferred
        let cases = [
            ("fd00::2", false, true),
            ("fd00::2", true, false),
            ("10.96.0.2", false, false),
            ("10.96.0.2", true, false),
        ];
        for (ip, deprecated, preferred) in cases {
            let position = usize::from(ip.contains(':'));
            assert_eq!(
                notified(ip, deprecated),
                Event::AddressAdded {
                    index: 4,
                    position,
                    preferred
                },
                "{ip} deprecated {deprecated}"
            );
        }
    }

    #[test]
    fn address_dumps_are_read_with_their_state_and_mark() {
        let dumped = |deprecated: bool, protocol: Option<u8>| {
            let mut message = address("fd00::2", 4, true);
            message.header.prefix_len = 128;
            message.header.scope = AddressScope::Link;
            if deprecated {
                message.header.flags |= AddressHeaderFlags::Deprecated;
            }
            if let Some(protocol) = protocol {
                message
                    .attributes
                    .push(AddressAttribute::Protocol(protocol.into()));
            }
            message
        };
        // deprecated, protocol
        let cases = [
            (false, None),
            (true, None),
            (false, Some(ADDRESS_PROTOCOL)),
            (true, Some(2)),
        ];
        let ip: IpAddr = "fd00::2".parse().expect("ip");
        for (deprecated, protocol) in cases {
            let found = entry(ip, dumped(deprecated, protocol));
            assert_eq!(
                (found.ip, found.index, found.prefix_len, found.scope),
                (ip, 4, 128, AddressScope::Link)
            );
            assert_eq!(
                (found.deprecated, found.protocol),
                (deprecated, protocol),
                "{found:?}"
            );
        }
    }
}

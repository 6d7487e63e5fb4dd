// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The kernel's address and link notifications, read on a socket of their own and reduced at
//! once to what the sidecar must do next. Nothing queues up: however many notifications arrive
//! while a sync runs, they leave one set of flags behind, so memory stays bounded and a burst
//! costs one sync. When the kernel drops notifications because the socket's buffer is full
//! (ENOBUFS), nothing that was lost can be known, so that asks for a full resync.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::StreamExt;
use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::netif::{self, Event, NetifError};

/// The receive buffer asked for; the kernel caps it at `net.core.rmem_max`. Overruns are
/// handled either way, a larger buffer only makes them rarer.
const RECEIVE_BUFFER: usize = 1 << 20;

/// The first bit of [`Need`] that flags a foreign copy of one address.
const FIRST_POSITION_BIT: u32 = 3;
/// The last position in `--ip-address` with a flag of its own.
const LAST_POSITION: usize = (u32::BITS - FIRST_POSITION_BIT - 1) as usize;

/// What the notifications since the last look ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need(u32);

impl Need {
    /// Nothing to do.
    pub const NONE: Need = Need(0);
    /// The address or its link changed: check the address.
    pub const ADDRESS: Need = Need(1);
    /// The first address was put on another interface (another process wants it there).
    pub const FOREIGN_COPY: Need = Need::foreign_copy_of(0);
    /// Notifications were lost: everything must be read again.
    pub const RESYNC: Need = Need(1 | 4);

    /// The address at `position` in `--ip-address` was put on another interface. Positions
    /// from [`LAST_POSITION`] on share its flag.
    pub const fn foreign_copy_of(position: usize) -> Need {
        let position = if position < LAST_POSITION {
            position
        } else {
            LAST_POSITION
        };
        Need(1 | 2 | 1 << (FIRST_POSITION_BIT + position as u32))
    }

    /// The positions in `--ip-address` of the addresses put on another interface.
    pub fn foreign_copies(self) -> impl Iterator<Item = usize> {
        (0..=LAST_POSITION)
            .filter(move |position| self.0 & 1 << (FIRST_POSITION_BIT + *position as u32) != 0)
    }

    pub fn address(self) -> bool {
        self.0 & Need::ADDRESS.0 != 0
    }

    pub fn foreign_copy(self) -> bool {
        self.0 & 2 != 0
    }

    pub fn resync(self) -> bool {
        self.0 & 4 != 0
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    #[must_use]
    pub fn and(self, other: Need) -> Need {
        Need(self.0 | other.0)
    }
}

/// Whether a notification concerns the sidecar: `link` is the interface the address was last
/// put on (`None` before the first sync).
pub fn need_for(event: Event, link: Option<u32>) -> Need {
    match event {
        Event::AddressRemoved => Need::ADDRESS,
        // The echo of our own add concerns nobody, unless it shows an IPv6 copy made preferred
        // again (the node could pick it as a source): that is repaired at once. A copy
        // elsewhere is a competitor's.
        Event::AddressAdded { .. } if link.is_none() => Need::ADDRESS,
        Event::AddressAdded {
            index, preferred, ..
        } if Some(index) == link => {
            if preferred {
                Need::ADDRESS
            } else {
                Need::NONE
            }
        }
        Event::AddressAdded { position, .. } => Need::foreign_copy_of(position),
        // Down or removed, the address must be repaired or reported; up again (after being
        // reported down) it is in place again.
        Event::LinkChanged { index, .. } if Some(index) == link => Need::ADDRESS,
        Event::LinkChanged { .. } | Event::Other => Need::NONE,
    }
}

#[derive(Debug, Default)]
struct Shared {
    pending: AtomicU32,
    wake: Notify,
    /// The link index the address is on; 0 (no link has it) before the first sync.
    link: AtomicU32,
}

impl Shared {
    fn raise(&self, need: Need) {
        if !need.is_none() {
            self.pending.fetch_or(need.0, Ordering::AcqRel);
            self.wake.notify_one();
        }
    }
}

/// The subscription; dropping it closes the socket.
#[derive(Debug)]
pub struct KernelEvents {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl KernelEvents {
    /// Subscribes to address and link notifications about `ips`.
    pub fn subscribe(ips: Vec<IpAddr>) -> Result<KernelEvents, NetifError> {
        let failed = |cause| NetifError {
            action: "subscribe to the kernel's address notifications".into(),
            cause,
        };
        let (mut connection, _requests, mut notifications) =
            rtnetlink::new_connection().map_err(failed)?;
        let socket = connection.socket_mut().socket_mut();
        let groups = SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR);
        socket.bind(&groups).map_err(failed)?;
        // Best effort: the default buffer works too, it only overruns sooner.
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        let shared = Arc::new(Shared::default());
        let reader = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Some((message, _)) = notifications.next().await {
                    let need = if let NetlinkPayload::Overrun(_) = message.payload {
                        Need::RESYNC
                    } else {
                        let link = match shared.link.load(Ordering::Acquire) {
                            0 => None,
                            index => Some(index),
                        };
                        need_for(netif::classify(&message, &ips), link)
                    };
                    shared.raise(need);
                }
            })
        };
        Ok(KernelEvents {
            shared,
            tasks: vec![tokio::spawn(connection), reader],
        })
    }

    /// A subscription that never reports anything (`--watch-kernel-events=false`).
    pub fn none() -> KernelEvents {
        KernelEvents {
            shared: Arc::default(),
            tasks: Vec::new(),
        }
    }

    /// Tells which interface now carries the address, so its own echo is not mistaken for a
    /// change.
    pub fn follow_link(&self, index: Option<u32>) {
        self.shared
            .link
            .store(index.unwrap_or(0), Ordering::Release);
    }

    /// Waits until a notification asks for something, and takes everything asked so far.
    pub async fn next(&self) -> Need {
        loop {
            let need = Need(self.shared.pending.swap(0, Ordering::AcqRel));
            if !need.is_none() {
                return need;
            }
            self.shared.wake.notified().await;
        }
    }
}

impl Drop for KernelEvents {
    fn drop(&mut self) {
        // The connection first: with the socket closed, nothing is left to report on.
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our address added on link `index`, first of its kind there.
    fn added(index: u32, preferred: bool) -> Event {
        Event::AddressAdded {
            index,
            position: 0,
            preferred,
        }
    }

    fn changed(index: u32, removed: bool, up: bool) -> Event {
        Event::LinkChanged { index, removed, up }
    }

    #[test]
    fn which_notifications_matter() {
        let cases = [
            (Event::AddressRemoved, Some(3), Need::ADDRESS),
            (Event::AddressRemoved, None, Need::ADDRESS),
            (added(3, false), Some(3), Need::NONE),
            (added(7, false), Some(3), Need::FOREIGN_COPY),
            (added(7, false), None, Need::ADDRESS),
            (changed(3, true, false), Some(3), Need::ADDRESS),
            (changed(3, false, false), Some(3), Need::ADDRESS),
            (changed(3, false, true), Some(3), Need::ADDRESS),
            (changed(9, true, false), Some(3), Need::NONE),
            (Event::Other, Some(3), Need::NONE),
            // Our own IPv6 copy made preferred again, by flags or lifetimes alone.
            (added(3, true), Some(3), Need::ADDRESS),
            (added(7, true), Some(3), Need::FOREIGN_COPY),
        ];
        for (event, link, want) in cases {
            assert_eq!(need_for(event, link), want, "{event:?} with link {link:?}");
        }
    }

    #[test]
    fn foreign_copies_are_told_apart_by_position() {
        let need = need_for(
            Event::AddressAdded {
                index: 7,
                position: 1,
                preferred: false,
            },
            Some(3),
        );
        assert!(need.address() && need.foreign_copy());
        assert_eq!(need.foreign_copies().collect::<Vec<_>>(), [1]);
        let both = need.and(Need::FOREIGN_COPY);
        assert_eq!(both.foreign_copies().collect::<Vec<_>>(), [0, 1]);
        // Positions beyond the last flag share it.
        let far = Need::foreign_copy_of(LAST_POSITION + 5);
        assert_eq!(far.foreign_copies().collect::<Vec<_>>(), [LAST_POSITION]);
        assert!(!far.resync());
        assert_eq!(Need::RESYNC.foreign_copies().count(), 0);
        assert_eq!(Need::ADDRESS.foreign_copies().count(), 0);
    }

    #[test]
    fn needs_combine() {
        let need = Need::NONE.and(Need::FOREIGN_COPY).and(Need::RESYNC);
        assert!(need.address() && need.foreign_copy() && need.resync());
        assert!(Need::ADDRESS.address() && !Need::ADDRESS.foreign_copy());
        assert!(Need::RESYNC.address() && !Need::RESYNC.foreign_copy());
        assert!(Need::NONE.is_none() && !Need::NONE.address());
    }

    #[tokio::test]
    async fn raised_needs_coalesce_until_taken() {
        let events = KernelEvents::none();
        for _ in 0..1000 {
            events.shared.raise(Need::ADDRESS);
        }
        events.shared.raise(Need::RESYNC);
        let need = events.next().await;
        assert!(need.address() && need.resync() && !need.foreign_copy());
        // Taken: nothing is pending any more.
        let again = tokio::time::timeout(std::time::Duration::from_millis(20), events.next()).await;
        assert!(again.is_err(), "nothing should be pending: {again:?}");
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The proxy's address, pure: which addresses can be kept with global scope, and which copies
//! found on the node to delete.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::address::AddressScope;

use crate::netif::{AddressEntry, full_prefix};

/// Why `ip` can never be the proxy's address, or `None` when it works like any other.
///
/// The address must be reachable from pods with global scope. The kernel derives the scope of
/// some IPv6 addresses from the address itself, whatever the request says: asking for global
/// scope there would delete and re-add the address forever.
pub fn unusable_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => unusable_v4(ip),
        IpAddr::V6(ip) => unusable_v6(ip),
    }
}

fn unusable_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [first, ..] = ip.octets();
    if ip.is_unspecified() {
        Some("it is the unspecified address")
    } else if ip.is_broadcast() {
        Some("it is the broadcast address")
    } else if ip.is_multicast() {
        Some("it is a multicast address")
    } else if ip.is_loopback() {
        Some(
            "it is an IPv4 loopback address (127.0.0.0/8), which pods cannot reach; the node's \
             127.0.0.1/8 on lo already covers it",
        )
    } else if first == 0 {
        Some(
            "it is in 0.0.0.0/8, \"this network\" (RFC 1122), a source address only, never a \
             destination",
        )
    } else {
        None
    }
}

fn unusable_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        Some("it is the unspecified address")
    } else if ip.is_multicast() {
        Some("it is a multicast address")
    } else if ip.is_loopback() {
        Some(
            "it is the IPv6 loopback address, which the kernel keeps at host scope and pods \
             cannot reach",
        )
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("it is an IPv6 link-local address (fe80::/10), which the kernel keeps at link scope")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some(
            "it is an IPv6 site-local address (fec0::/10), deprecated by RFC 3879, which the \
             kernel keeps at site scope",
        )
    } else if segments[..6] == [0; 6] {
        // ::a.b.c.d; :: and ::1 are caught above, ::ffff:a.b.c.d is IPv4 by now.
        Some(
            "it is an IPv4-compatible IPv6 address (::a.b.c.d), deprecated by RFC 4291; use the \
             IPv4 address itself",
        )
    } else {
        None
    }
}

/// One address on the node carrying the proxy's IP, as rtnetlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub ip: IpAddr,
    /// The link the address is on.
    pub index: u32,
    pub prefix_len: u8,
    pub scope: AddressScope,
    /// Whether its preferred lifetime is over (the kernel never picks it as a source then).
    pub deprecated: bool,
    /// Whether it carries the sidecar's mark.
    pub marked: bool,
}

impl From<&AddressEntry> for Found {
    fn from(entry: &AddressEntry) -> Self {
        Found {
            ip: entry.ip,
            index: entry.index,
            prefix_len: entry.prefix_len,
            scope: entry.scope,
            deprecated: entry.deprecated,
            marked: entry.protocol == Some(crate::netif::ADDRESS_PROTOCOL),
        }
    }
}

/// What to change so that the proxy's address is on the link exactly once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddressPlan {
    /// Positions in the found list of the copies to delete.
    pub delete: Vec<usize>,
    /// Whether to add the address to the link (after the deletions).
    pub add: bool,
    /// Whether to deprecate the IPv6 copy in place (re-added with a preferred lifetime of 0,
    /// which replaces its lifetimes without removing it), so that it is never a source.
    pub deprecate: bool,
    /// Whether the copy in place lacks the sidecar's mark (the Go original's, say): re-added
    /// in place with it, where the kernel keeps marks.
    pub mark: bool,
}

/// Whether a found address is a copy of the managed one, `ip` with a full-length prefix.
///
/// The same IP with a shorter prefix is a subnet address someone else configured (the node's
/// 127.0.0.1/8 on lo is one): never the sidecar's to delete.
pub fn is_copy(ip: IpAddr, found: &Found) -> bool {
    found.prefix_len == full_prefix(ip)
}

/// Keeps one copy on `link_index` with global scope and deletes every other copy (on another
/// link, left over from moving the IP, or with another scope: the kernel does not change the
/// scope of an existing address). Addresses that are not copies are left alone.
pub fn plan(ip: IpAddr, link_index: u32, found: &[Found]) -> AddressPlan {
    let mut plan = AddressPlan::default();
    let mut in_place = false;
    for (position, entry) in found.iter().enumerate() {
        if !is_copy(ip, entry) {
            continue;
        }
        let right = entry.index == link_index && entry.scope == AddressScope::Universe;
        if right && !in_place {
            in_place = true;
            plan.deprecate = ip.is_ipv6() && !entry.deprecated;
            plan.mark = !entry.marked;
        } else {
            plan.delete.push(position);
        }
    }
    // The kernel keeps one IPv6 address per link whatever its prefix: adding would rewrite the
    // foreign one's prefix, so it stays as it is and serves the proxy too.
    let foreign_on_link = ip.is_ipv6()
        && found
            .iter()
            .any(|entry| entry.index == link_index && !is_copy(ip, entry));
    plan.add = !in_place && !foreign_on_link;
    plan
}

/// What a sync writes for one address, once the plan's deletions are done: at most one add
/// (`replace`), which either puts the address on the link or rewrites the copy in place.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Add the missing address.
    pub add: bool,
    /// Rewrite the copy in place to deprecate it.
    pub deprecate: bool,
    /// Rewrite the copy in place to mark it as the sidecar's.
    pub mark: bool,
    /// The copy lacks the mark although the sidecar wrote it: the kernel keeps no marks.
    pub marks_unsupported: bool,
}

impl Change {
    /// Whether anything is written.
    pub fn writes(self) -> bool {
        self.add || self.deprecate || self.mark
    }
}

/// What to write after `plan`. `mark_attempted` tells whether the sidecar has already written
/// this address with its mark: a mark that did not stick then will not stick now.
pub fn change(plan: &AddressPlan, mark_attempted: bool) -> Change {
    let in_place = !plan.add;
    Change {
        add: plan.add,
        deprecate: in_place && plan.deprecate,
        mark: in_place && plan.mark && !mark_attempted,
        marks_unsupported: in_place && plan.mark && mark_attempted,
    }
}

/// An address family: each has its own iptables binaries and its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// The families present in `ips`, IPv4 first.
pub fn families(ips: &[IpAddr]) -> Vec<Family> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter(|family| ips.iter().any(|ip| Family::of(*ip) == *family))
        .collect()
}

/// Whether an address on the node concerns the sidecar: a copy of an IP it keeps (`wanted`)
/// or is told to remove (`remove`), or one it marked, under whatever IP. The rest of the node's
/// addresses, however many, are never looked at again.
pub fn concerns(found: &Found, wanted: &[IpAddr], remove: &[IpAddr]) -> bool {
    found.marked || wanted.contains(&found.ip) || remove.contains(&found.ip)
}

/// The addresses the sidecar added under another IP (marked, full-length prefix), to remove:
/// positions in `found`, every address on the node. Every address in `wanted` is wanted; so is
/// every IP in `others`, kept by another live instance (see `instance.rs`). A family with no
/// address in `wanted` is left alone, as another sidecar's to keep (one process per family, as
/// before `--ip-address` took a list, and as versions that claim no IP run).
pub fn stale(wanted: &[IpAddr], found: &[Found], others: &[IpAddr]) -> Vec<usize> {
    let families = families(wanted);
    found
        .iter()
        .enumerate()
        .filter(|(_, entry)| {
            entry.marked
                && !wanted.contains(&entry.ip)
                && !others.contains(&entry.ip)
                && families.contains(&Family::of(entry.ip))
                && entry.prefix_len == full_prefix(entry.ip)
        })
        .map(|(position, _)| position)
        .collect()
}

/// The addresses named by `--remove-ip-address` (the Go original's, under an earlier IP, which
/// carry no mark): positions in `found` of every full-length copy, on any interface, marked or
/// not, unless another live instance keeps the IP (`others`). The same IP with a shorter prefix
/// is a subnet address, never removed.
pub fn named_for_removal(remove: &[IpAddr], found: &[Found], others: &[IpAddr]) -> Vec<usize> {
    found
        .iter()
        .enumerate()
        .filter(|(_, entry)| {
            remove.contains(&entry.ip)
                && !others.contains(&entry.ip)
                && entry.prefix_len == full_prefix(entry.ip)
        })
        .map(|(position, _)| position)
        .collect()
}

/// The copies the teardown deletes: those on the sidecar's link.
pub fn teardown(ip: IpAddr, link_index: u32, found: &[Found]) -> Vec<usize> {
    found
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.index == link_index && is_copy(ip, entry))
        .map(|(position, _)| position)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    #[test]
    fn every_address_class_works_or_is_refused() {
        let cases: &[(&str, Option<&str>)] = &[
            // Must work.
            ("10.96.0.2", None),
            ("100.64.0.1", None),
            ("192.168.1.1", None),
            ("172.16.0.1", None),
            ("8.8.8.8", None),
            ("240.0.0.1", None),
            ("255.255.255.254", None),
            ("169.254.20.10", None),
            ("fd00::10", None),
            ("fc00::1", None),
            ("2001:db8::1", None),
            ("2a00:1450::1", None),
            ("64:ff9b::a00:1", None),
            ("::ffff:0:a00:1", None),
            ("fe00::1", None),
            // Refused.
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("0.0.0.0/8")),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.255", Some("multicast")),
            ("127.0.0.1", Some("IPv4 loopback")),
            ("127.0.0.53", Some("IPv4 loopback")),
            ("127.255.255.255", Some("IPv4 loopback")),
            ("::", Some("unspecified")),
            ("::1", Some("IPv6 loopback")),
            ("fe80::1", Some("link-local")),
            ("febf:ffff::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("feff::1", Some("site-local")),
            ("::102:304", Some("IPv4-compatible")),
            ("::0.0.0.2", Some("IPv4-compatible")),
            ("::ffff:ffff", Some("IPv4-compatible")),
            ("ff02::1", Some("multicast")),
            ("ff00::1", Some("multicast")),
        ];
        for (text, want) in cases {
            let reason = unusable_reason(ip(text));
            match (want, reason) {
                (None, None) => {}
                (Some(needle), Some(reason)) => {
                    assert!(reason.contains(needle), "{text}: {reason}")
                }
                _ => panic!("{text}: expected {want:?}, got {reason:?}"),
            }
        }
    }

    const LINK: u32 = 7;
    const OTHER: u32 = 3;

    fn found(index: u32, prefix_len: u8, scope: AddressScope) -> Found {
        Found {
            ip: ip("10.96.0.2"),
            index,
            prefix_len,
            scope,
            deprecated: true,
            marked: true,
        }
    }

    #[test]
    fn copies_to_delete_and_whether_to_add() {
        use AddressScope::{Host, Link, Universe};
        let v4 = ip("10.96.0.2");
        let v6 = ip("fd00::10");
        // name, address, found on the node, positions to delete, whether to add
        type Case = (&'static str, IpAddr, Vec<Found>, Vec<usize>, bool);
        let cases: &[Case] = &[
            ("missing", v4, vec![], vec![], true),
            (
                "in place",
                v4,
                vec![found(LINK, 32, Universe)],
                vec![],
                false,
            ),
            (
                "host scope is re-added",
                v4,
                vec![found(LINK, 32, Host)],
                vec![0],
                true,
            ),
            (
                "copy on another link",
                v4,
                vec![found(OTHER, 32, Universe), found(LINK, 32, Universe)],
                vec![0],
                false,
            ),
            (
                "only on another link",
                v4,
                vec![found(OTHER, 32, Universe)],
                vec![0],
                true,
            ),
            (
                "subnet address with the same IP is not a copy",
                v4,
                vec![found(LINK, 24, Universe), found(OTHER, 8, Host)],
                vec![],
                true,
            ),
            (
                "subnet address beside the copy",
                v4,
                vec![found(LINK, 8, Host), found(LINK, 32, Universe)],
                vec![],
                false,
            ),
            (
                "node loopback 127.0.0.1/8 is never touched",
                ip("127.0.0.1"),
                vec![found(1, 8, Host)],
                vec![],
                true,
            ),
            (
                "ipv6 in place",
                v6,
                vec![found(LINK, 128, Universe)],
                vec![],
                false,
            ),
            (
                "ipv6 link scope is re-added",
                v6,
                vec![found(LINK, 128, Link)],
                vec![0],
                true,
            ),
            (
                "ipv6 subnet address on the link is left and serves",
                v6,
                vec![found(LINK, 64, Universe)],
                vec![],
                false,
            ),
            (
                "ipv6 subnet address elsewhere",
                v6,
                vec![found(OTHER, 64, Universe), found(OTHER, 128, Universe)],
                vec![1],
                true,
            ),
        ];
        for (name, ip, found, delete, add) in cases {
            let plan = plan(*ip, LINK, found);
            assert_eq!(&plan.delete, delete, "{name}");
            assert_eq!(plan.add, *add, "{name}");
            assert!(!plan.deprecate && !plan.mark, "{name}");
        }
    }

    #[test]
    fn an_ipv6_copy_that_may_be_a_source_is_deprecated_in_place() {
        let preferred = Found {
            deprecated: false,
            ..found(LINK, 128, AddressScope::Universe)
        };
        let plan = plan(ip("fd00::10"), LINK, &[preferred]);
        assert_eq!(
            plan,
            AddressPlan {
                delete: vec![],
                add: false,
                deprecate: true,
                mark: false,
            }
        );
        // IPv4 has no such state: a copy in place stays as it is.
        let v4 = Found {
            deprecated: false,
            ..found(LINK, 32, AddressScope::Universe)
        };
        assert_eq!(plan_v4(&[v4]), AddressPlan::default());
    }

    #[test]
    fn an_unmarked_copy_is_marked_in_place() {
        let unmarked = Found {
            marked: false,
            ..found(LINK, 32, AddressScope::Universe)
        };
        let plan = plan_v4(&[unmarked]);
        assert!(plan.mark && !plan.add && plan.delete.is_empty());
    }

    #[test]
    fn one_write_per_address_and_a_mark_tried_once() {
        let plan = |add, deprecate, mark| AddressPlan {
            delete: vec![],
            add,
            deprecate,
            mark,
        };
        let change = |add, deprecate, mark, marks_unsupported| Change {
            add,
            deprecate,
            mark,
            marks_unsupported,
        };
        // name, plan, whether the mark was attempted, the change
        let cases = [
            (
                "in place",
                plan(false, false, false),
                false,
                Change::default(),
            ),
            (
                "missing",
                plan(true, false, false),
                false,
                change(true, false, false, false),
            ),
            (
                "missing again",
                plan(true, false, false),
                true,
                change(true, false, false, false),
            ),
            (
                "an add marks anyway",
                plan(true, false, true),
                true,
                change(true, false, false, false),
            ),
            (
                "unmarked",
                plan(false, false, true),
                false,
                change(false, false, true, false),
            ),
            (
                "unmarked after a try",
                plan(false, false, true),
                true,
                change(false, false, false, true),
            ),
            (
                "preferred",
                plan(false, true, false),
                false,
                change(false, true, false, false),
            ),
            (
                "preferred, unmarked",
                plan(false, true, true),
                false,
                change(false, true, true, false),
            ),
            (
                "preferred, unmarked after a try",
                plan(false, true, true),
                true,
                change(false, true, false, true),
            ),
        ];
        for (name, plan, attempted, want) in cases {
            let got = super::change(&plan, attempted);
            assert_eq!(got, want, "{name}");
            assert_eq!(
                got.writes(),
                want.add || want.deprecate || want.mark,
                "{name}"
            );
        }
        assert!(!Change::default().writes());
        assert!(!change(false, false, false, true).writes());
    }

    /// `text` on the sidecar's link with global scope, marked or not.
    fn on_link(text: &str, prefix_len: u8, marked: bool) -> Found {
        Found {
            ip: ip(text),
            marked,
            ..found(LINK, prefix_len, AddressScope::Universe)
        }
    }

    #[test]
    fn only_marked_full_length_addresses_of_another_ip_are_stale() {
        let on_node = [
            on_link("10.96.0.2", 32, true),       // the wanted one
            on_link("240.107.17.226", 32, true),  // an earlier IP of ours
            on_link("100.107.17.226", 32, false), // the Go original's earlier IP: not ours to judge
            on_link("192.168.1.5", 24, true),     // not a proxy address
            on_link("fd00:10:96::2", 128, true),  // IPv6, kept by this sidecar or another one
            on_link("127.0.0.1", 8, false),
            on_link("fd00::2", 128, true), // wanted in the dual-stack cases
        ];
        // name, the wanted set, the stale positions
        let cases: &[(&str, &[&str], &[usize])] = &[
            (
                "IPv4 alone: IPv6 is another sidecar's",
                &["10.96.0.2"],
                &[1],
            ),
            ("IPv6 alone: IPv4 is another sidecar's", &["fd00::2"], &[4]),
            (
                "both families: every other marked address",
                &["10.96.0.2", "fd00::2"],
                &[1, 4],
            ),
            (
                "both families, both in place",
                &["10.96.0.2", "fd00:10:96::2", "fd00::2"],
                &[1],
            ),
            ("two of one family", &["10.96.0.2", "240.107.17.226"], &[]),
        ];
        for (name, wanted, want) in cases {
            let wanted: Vec<IpAddr> = wanted.iter().map(|text| ip(text)).collect();
            assert_eq!(stale(&wanted, &on_node, &[]), *want, "{name}");
        }
        assert!(stale(&[ip("10.96.0.2")], &on_node[..1], &[]).is_empty());
    }

    #[test]
    fn an_ip_another_live_instance_keeps_is_never_stale_nor_removed() {
        let on_node = [
            on_link("10.96.0.2", 32, true),  // ours
            on_link("10.96.0.3", 32, true),  // the new DaemonSet's, running
            on_link("10.96.0.4", 32, true),  // an earlier IP nobody keeps any more
            on_link("10.96.0.9", 32, false), // named for removal
        ];
        let wanted = [ip("10.96.0.2")];
        // the IPs other live instances keep, stale positions, positions of named ones removed
        let cases: &[(&[&str], &[usize], &[usize])] = &[
            (&[], &[1, 2], &[3]),
            (&["10.96.0.3"], &[2], &[3]),
            (&["10.96.0.3", "10.96.0.4"], &[], &[3]),
            (&["10.96.0.9"], &[1, 2], &[]),
            // Our own IP kept elsewhere too (two instances, one IP) changes nothing here.
            (&["10.96.0.2"], &[1, 2], &[3]),
        ];
        for (others, want_stale, want_named) in cases {
            let others: Vec<IpAddr> = others.iter().map(|text| ip(text)).collect();
            assert_eq!(stale(&wanted, &on_node, &others), *want_stale, "{others:?}");
            let named = named_for_removal(&[ip("10.96.0.9")], &on_node, &others);
            assert_eq!(named, *want_named, "{others:?}");
        }
    }

    #[test]
    fn only_full_length_copies_of_named_addresses_are_removed() {
        let at = |text: &str, index: u32, prefix_len: u8, marked: bool| Found {
            ip: ip(text),
            marked,
            ..found(index, prefix_len, AddressScope::Universe)
        };
        let on_node = [
            at("10.96.0.9", LINK, 32, false),  // the Go original's, on the link
            at("10.96.0.9", OTHER, 32, false), // and on another link
            at("10.96.0.9", OTHER, 24, false), // a subnet address with that IP
            at("10.96.0.2", LINK, 32, false),  // unmarked, not named
            at("fd00::9", LINK, 128, true),    // named, marked
            at("fd00::9", OTHER, 64, false),
        ];
        let cases: &[(&[&str], &[usize])] = &[
            (&[], &[]),
            (&["10.96.0.9"], &[0, 1]),
            (&["10.96.0.9", "fd00::9"], &[0, 1, 4]),
            (&["10.96.0.7"], &[]),
        ];
        for (remove, want) in cases {
            let remove: Vec<IpAddr> = remove.iter().map(|text| ip(text)).collect();
            assert_eq!(
                named_for_removal(&remove, &on_node, &[]),
                *want,
                "{remove:?}"
            );
        }
    }

    #[test]
    fn only_copies_of_kept_or_named_ips_and_marked_addresses_concern_the_sidecar() {
        let (wanted, remove) = ([ip("10.96.0.2"), ip("fd00::2")], [ip("10.96.0.9")]);
        // the address, whether it concerns the sidecar
        let cases = [
            (on_link("10.96.0.2", 32, false), true), // kept, the Go original's copy
            (on_link("10.96.0.2", 24, false), true), // kept, a wrong prefix to repair
            (on_link("fd00::2", 128, true), true),   // kept, ours
            (on_link("10.96.0.9", 32, false), true), // named for removal
            (on_link("240.107.17.226", 32, true), true), // ours, under an earlier IP
            (on_link("192.168.1.5", 24, false), false), // the node's own
            (on_link("10.96.0.10", 32, false), false), // a Service IP on kube-ipvs0
            (on_link("fd00:10:96::a", 128, false), false), // and its IPv6 twin
        ];
        for (address, want) in cases {
            assert_eq!(concerns(&address, &wanted, &remove), want, "{address:?}");
        }
        // Deciding from the addresses that concern the sidecar removes the same ones as
        // deciding from every address on the node.
        let every: Vec<Found> = cases.iter().map(|(address, _)| *address).collect();
        let kept: Vec<Found> = cases.iter().filter(|(_, c)| *c).map(|(a, _)| *a).collect();
        let picked = |positions: Vec<usize>, from: &[Found]| -> Vec<Found> {
            positions.iter().map(|at| from[*at]).collect()
        };
        assert_eq!(
            picked(stale(&wanted, &kept, &[]), &kept),
            picked(stale(&wanted, &every, &[]), &every)
        );
        assert_eq!(
            picked(named_for_removal(&remove, &kept, &[]), &kept),
            picked(named_for_removal(&remove, &every, &[]), &every)
        );
    }

    #[test]
    fn families_in_order() {
        let cases: &[(&[&str], &[Family])] = &[
            (&["10.96.0.2"], &[Family::V4]),
            (&["fd00::2"], &[Family::V6]),
            (&["fd00::2", "10.96.0.2"], &[Family::V4, Family::V6]),
            (&["10.96.0.2", "10.96.0.3"], &[Family::V4]),
        ];
        for (ips, want) in cases {
            let ips: Vec<IpAddr> = ips.iter().map(|text| ip(text)).collect();
            assert_eq!(families(&ips), *want, "{ips:?}");
        }
    }

    fn plan_v4(found: &[Found]) -> AddressPlan {
        plan(ip("10.96.0.2"), LINK, found)
    }

    #[test]
    fn teardown_deletes_only_copies_on_the_link() {
        use AddressScope::{Host, Universe};
        let on_node = [
            found(LINK, 32, Universe),
            found(LINK, 24, Universe),
            found(OTHER, 32, Universe),
            found(LINK, 32, Host),
        ];
        assert_eq!(teardown(ip("10.96.0.2"), LINK, &on_node), [0, 3]);
        assert!(teardown(ip("127.0.0.1"), 1, &[found(1, 8, Host)]).is_empty());
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The bytes nf_tables speaks: requests framed into batches, the answers read back, and the
//! netlink messages of a datagram split apart. Pure.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, NfTablesMessage, RuleAttribute, TableAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterMessageInner};

use super::Family;

/// `NFNL_SUBSYS_NFTABLES`: the subsystem a batch is addressed to.
pub(super) const SUBSYS_NFTABLES: u16 = 10;

/// One message of a batch the kernel refused, or the batch as a whole (`index` `None`).
#[derive(Debug)]
pub struct Refusal {
    /// The message's position in the batch.
    pub index: Option<usize>,
    /// What the message asked, e.g. `add chain inet apiserver-proxy prerouting`.
    pub what: String,
    pub error: io::Error,
}

pub(super) fn describe_refusals(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(|refusal| format!("{}: {}", refusal.what, refusal.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One change in a batch: an nf_tables message, its family and its netlink flags beyond
/// `NLM_F_REQUEST | NLM_F_ACK` (e.g. `NLM_F_CREATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub family: Family,
    pub flags: u16,
    pub message: NfTablesMessage,
}

/// The name nft gives a family.
pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::Inet => "inet",
        Family::IPv4 => "ip",
        Family::IPv6 => "ip6",
        Family::ARP => "arp",
        Family::Bridge => "bridge",
        Family::NetDev => "netdev",
        _ => "unknown",
    }
}

impl Request {
    /// The request as nft would say it, for errors and logs.
    pub fn describe(&self) -> String {
        let family = family_name(self.family);
        let table_name = |attributes: &[TableAttribute]| {
            attributes.iter().find_map(|attribute| match attribute {
                TableAttribute::Name(name) => Some(name.clone()),
                _ => None,
            })
        };
        let chain_names = |attributes: &[ChainAttribute]| {
            let mut table = None;
            let mut chain = None;
            for attribute in attributes {
                match attribute {
                    ChainAttribute::Table(name) => table = Some(name.clone()),
                    ChainAttribute::Name(name) => chain = Some(name.clone()),
                    _ => {}
                }
            }
            (table, chain)
        };
        let (verb, object, table, chain) = match &self.message {
            NfTablesMessage::NewTable(m) => ("add", "table", table_name(&m.attributes), None),
            NfTablesMessage::DeleteTable(m) => ("delete", "table", table_name(&m.attributes), None),
            NfTablesMessage::NewChain(m) => {
                let (table, chain) = chain_names(&m.attributes);
                ("add", "chain", table, chain)
            }
            NfTablesMessage::DeleteChain(m) => {
                let (table, chain) = chain_names(&m.attributes);
                ("delete", "chain", table, chain)
            }
            NfTablesMessage::NewRule(m) | NfTablesMessage::DeleteRule(m) => {
                let (table, chain) = rule_names(&m.attributes);
                let verb = if matches!(self.message, NfTablesMessage::NewRule(_)) {
                    "add"
                } else {
                    "delete"
                };
                (verb, "rule", table, chain)
            }
            other => (
                "send",
                "message",
                None,
                Some(format!("{:?}", other.message_type())),
            ),
        };
        [
            Some(verb.to_string()),
            Some(object.to_string()),
            Some(family.to_string()),
            table,
            chain,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
    }
}

pub(super) fn rule_names(attributes: &[RuleAttribute]) -> (Option<String>, Option<String>) {
    let mut table = None;
    let mut chain = None;
    for attribute in attributes {
        match attribute {
            RuleAttribute::Table(name) => table = Some(name.clone()),
            RuleAttribute::Chain(name) => chain = Some(name.clone()),
            _ => {}
        }
    }
    (table, chain)
}

/// The netlink messages packed in one datagram, each as its bytes; a truncated tail ends the
/// list with `Err`.
pub(super) fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<&[u8], ()>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            rest = &[];
            return Some(Err(()));
        };
        let length = buffer.length() as usize;
        let message = &rest[..length];
        rest = rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Ok(message))
    })
}

pub(super) fn parse(message: &[u8]) -> Option<NetlinkMessage<NetfilterMessage>> {
    NetlinkMessage::<NetfilterMessage>::deserialize(message).ok()
}

/// A netfilter message with its netlink header, ready to be serialized.
pub(super) fn framed(
    family: Family,
    res_id: u16,
    flags: u16,
    sequence: u32,
    inner: impl Into<NetfilterMessageInner>,
) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, res_id),
            inner,
        )),
    );
    message.finalize();
    message
}

pub(super) fn append(buffer: &mut Vec<u8>, message: &NetlinkMessage<NetfilterMessage>) {
    let start = buffer.len();
    buffer.resize(start + message.buffer_len(), 0);
    message.serialize(&mut buffer[start..]);
    buffer.resize(buffer.len().next_multiple_of(4), 0);
}

/// The bytes of a batch starting at `sequence`: begin, the requests (each acknowledged), end.
pub fn batch_bytes(requests: &[Request], sequence: u32) -> Vec<u8> {
    let mut buffer = Vec::new();
    let control = |sequence, message| {
        framed(
            Family::Unspec,
            SUBSYS_NFTABLES,
            NLM_F_REQUEST,
            sequence,
            message,
        )
    };
    append(&mut buffer, &control(sequence, ControlMessage::BatchBegin));
    for (offset, request) in (1..).zip(requests) {
        let flags = NLM_F_REQUEST | NLM_F_ACK | request.flags;
        let message = framed(
            request.family,
            0,
            flags,
            sequence.wrapping_add(offset),
            request.message.clone(),
        );
        append(&mut buffer, &message);
    }
    let end = sequence.wrapping_add(requests.len() as u32 + 1);
    append(&mut buffer, &control(end, ControlMessage::BatchEnd));
    buffer
}

/// What the answers to a batch sent at `sequence` say: every refusal, each tied to its request.
/// A request without an answer counts as refused: the batch is not known to be applied.
pub fn batch_outcome(requests: &[Request], sequence: u32, answers: &[(u32, i32)]) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    let mut answered = vec![false; requests.len()];
    for &(answer_sequence, code) in answers {
        let offset = answer_sequence.wrapping_sub(sequence) as usize;
        let index = offset
            .checked_sub(1)
            .filter(|index| *index < requests.len());
        if let Some(index) = index {
            answered[index] = true;
        }
        if code != 0 {
            refusals.push(Refusal {
                index,
                what: match index {
                    Some(index) => requests[index].describe(),
                    None => "the batch".to_string(),
                },
                error: io::Error::from_raw_os_error(code.abs()),
            });
        }
    }
    if refusals.is_empty() {
        for (index, _) in answered
            .iter()
            .enumerate()
            .filter(|(_, answered)| !**answered)
        {
            refusals.push(Refusal {
                index: Some(index),
                what: requests[index].describe(),
                error: io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"),
            });
        }
    }
    refusals
}

/// The (sequence, error code) of every acknowledgement or error in a datagram.
pub(super) fn acks(datagram: &[u8]) -> Vec<(u32, i32)> {
    messages(datagram)
        .filter_map(Result::ok)
        .filter_map(parse)
        .filter_map(|message| match message.payload {
            NetlinkPayload::Error(error) => {
                Some((message.header.sequence_number, error.raw_code()))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_CREATE;
    use netlink_packet_netfilter::nftables::{ChainMessage, RuleMessage, TableMessage};

    use super::*;

    fn requests() -> Vec<Request> {
        vec![
            Request {
                family: Family::Inet,
                flags: NLM_F_CREATE,
                message: NfTablesMessage::NewTable(TableMessage {
                    attributes: vec![TableAttribute::Name("apiserver-proxy".into())],
                }),
            },
            Request {
                family: Family::Inet,
                flags: NLM_F_CREATE,
                message: NfTablesMessage::NewChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table("apiserver-proxy".into()),
                        ChainAttribute::Name("prerouting".into()),
                    ],
                }),
            },
            Request {
                family: Family::IPv6,
                flags: 0,
                message: NfTablesMessage::DeleteRule(RuleMessage {
                    attributes: vec![
                        RuleAttribute::Table("raw".into()),
                        RuleAttribute::Chain("OUTPUT".into()),
                    ],
                }),
            },
        ]
    }

    #[test]
    fn requests_are_described_as_nft_would_say_them() {
        let described: Vec<String> = requests().iter().map(Request::describe).collect();
        assert_eq!(
            described,
            [
                "add table inet apiserver-proxy",
                "add chain inet apiserver-proxy prerouting",
                "delete rule ip6 raw OUTPUT",
            ]
        );
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_with_consecutive_sequences() {
        let bytes = batch_bytes(&requests(), 100);
        let headers: Vec<(u16, u16, u32)> = messages(&bytes)
            .map(|message| {
                let buffer = NetlinkBuffer::new_checked(message.expect("whole")).expect("header");
                (
                    buffer.message_type(),
                    buffer.flags(),
                    buffer.sequence_number(),
                )
            })
            .collect();
        let change = NLM_F_REQUEST | NLM_F_ACK;
        assert_eq!(
            headers,
            [
                (16, NLM_F_REQUEST, 100),
                (10 << 8, change | NLM_F_CREATE, 101),
                (10 << 8 | 3, change | NLM_F_CREATE, 102),
                (10 << 8 | 8, change, 103),
                (17, NLM_F_REQUEST, 104),
            ]
        );
        // The batch is addressed to nf_tables: res_id in the begin message's nfgenmsg.
        let begin = messages(&bytes).next().expect("begin").expect("whole");
        assert_eq!(&begin[16..20], &[0, 0, 0, 10]);
    }

    #[test]
    fn every_refusal_is_tied_to_its_request() {
        const ENOENT: i32 = 2;
        const EEXIST: i32 = 17;
        let all_acked = [(101, 0), (102, 0), (103, 0)];
        /// A refusal as the table states it: index, request, errno.
        type Wanted<'a> = (Option<usize>, &'a str, i32);
        /// A case: its name, the answers (sequence, code), the refusals wanted.
        type Case<'a> = (&'a str, Vec<(u32, i32)>, Vec<Wanted<'a>>);
        let cases: Vec<Case> = vec![
            ("all acknowledged", all_acked.to_vec(), vec![]),
            (
                "a stray answer to another request is ignored",
                vec![(101, 0), (102, 0), (103, 0), (7, 0)],
                vec![],
            ),
            (
                "one refused, the others acknowledged",
                vec![(101, 0), (102, -EEXIST), (103, 0)],
                vec![(Some(1), "add chain inet apiserver-proxy prerouting", EEXIST)],
            ),
            (
                "two refused",
                vec![(101, 0), (102, -ENOENT), (103, -ENOENT)],
                vec![
                    (Some(1), "add chain inet apiserver-proxy prerouting", ENOENT),
                    (Some(2), "delete rule ip6 raw OUTPUT", ENOENT),
                ],
            ),
            (
                "the batch itself refused",
                vec![(100, -ENOENT)],
                vec![(None, "the batch", ENOENT)],
            ),
            (
                "an answer missing",
                vec![(101, 0), (103, 0)],
                vec![(Some(1), "add chain inet apiserver-proxy prerouting", 0)],
            ),
        ];
        for (case, answers, wanted) in cases {
            let refusals = batch_outcome(&requests(), 100, &answers);
            let got: Vec<Wanted> = refusals
                .iter()
                .map(|r| {
                    (
                        r.index,
                        r.what.as_str(),
                        r.error.raw_os_error().unwrap_or(0),
                    )
                })
                .collect();
            assert_eq!(got, wanted, "{case}");
        }
    }

    #[test]
    fn acknowledgements_are_read_with_their_sequence() {
        let mut bytes = Vec::new();
        for (sequence, code) in [(5u32, 0i32), (6, -17)] {
            let mut header = NetlinkHeader::default();
            header.sequence_number = sequence;
            let mut error = netlink_packet_core::ErrorMessage::default();
            error.code = std::num::NonZeroI32::new(code);
            let mut message =
                NetlinkMessage::<NetfilterMessage>::new(header, NetlinkPayload::Error(error));
            message.finalize();
            let start = bytes.len();
            bytes.resize(start + message.buffer_len(), 0);
            message.serialize(&mut bytes[start..]);
        }
        assert_eq!(acks(&bytes), [(5, 0), (6, -17)]);
    }
}

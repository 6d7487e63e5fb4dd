// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! nf_tables over netlink, with neither the `nft` binary nor libnftnl: the ruleset's generation
//! id, dumps of tables, chains and rules, atomic batches, and the notifications every change
//! sends — including every change `iptables-nft` makes.
//!
//! Two sockets, each on `NETLINK_NETFILTER`: [`Nftables`] asks and changes, [`Notifications`]
//! listens to the `NFNLGRP_NFTABLES` group. What a notification means is decided by [`decode`]
//! and [`Transactions`], pure and table-tested; the sockets only carry bytes.
//!
//! A batch is processed by the kernel inside the `sendmsg` that carries it, so every answer is
//! already queued when the send returns: the answers are read without waiting, as `nft` does.

use std::io;
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkPayload};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, GenMessage, NfTablesMessage, RuleAttribute, RuleMessage,
    TableMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

mod event;
mod wire;

use event::gen_event;
pub use event::{Event, Folded, Op, Transaction, Transactions, decode};
pub use wire::{Refusal, Request, batch_bytes, batch_outcome, family_name};
use wire::{acks, append, describe_refusals, framed, messages, parse, rule_names};

pub use netlink_packet_netfilter::NetfilterProtoFamily as Family;

/// `NFNLGRP_NFTABLES`: the multicast group of nf_tables notifications.
const GROUP_NFTABLES: u32 = 7;
/// The receive buffer asked for; the kernel caps it at `net.core.rmem_max`. Overruns are
/// reported either way, a larger buffer only makes them rarer.
const RECEIVE_BUFFER: usize = 1 << 20;
/// How long one request may take before it counts as lost.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a dump interrupted by a concurrent change is started again.
const DUMP_ATTEMPTS: usize = 5;

/// What went wrong talking to nf_tables.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot {action}")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no answer to {action} within {bound:?}")]
    Timeout {
        action: &'static str,
        bound: Duration,
    },
    #[error("nf_tables refused to {action}")]
    Refused {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("nf_tables refused the batch: {}", describe_refusals(.0))]
    Batch(Vec<Refusal>),
    #[error("an undecodable answer to {action}: {detail}")]
    Decode {
        action: &'static str,
        detail: String,
    },
    #[error("{action} kept being interrupted by other changes ({DUMP_ATTEMPTS} attempts)")]
    Interrupted { action: &'static str },
}

/// A socket that asks nf_tables and changes it.
pub struct Nftables {
    socket: TokioSocket,
    sequence: u32,
}

impl std::fmt::Debug for Nftables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nftables")
            .field("sequence", &self.sequence)
            .finish()
    }
}

fn io_error(action: &'static str) -> impl FnOnce(io::Error) -> NftError {
    move |source| NftError::Io { action, source }
}

fn open_socket(action: &'static str) -> Result<TokioSocket, NftError> {
    let mut socket = TokioSocket::new(NETLINK_NETFILTER).map_err(io_error(action))?;
    socket
        .socket_mut()
        .bind(&SocketAddr::new(0, 0))
        .map_err(io_error(action))?;
    // Best effort: the default buffer works too, it only overruns sooner.
    let _ = socket.socket_mut().set_rx_buf_sz(RECEIVE_BUFFER);
    Ok(socket)
}

impl Nftables {
    pub fn open() -> Result<Nftables, NftError> {
        Ok(Nftables {
            socket: open_socket("open a netlink socket to nf_tables")?,
            // Start somewhere unlikely to collide with an earlier socket's stray answers.
            sequence: std::process::id().wrapping_mul(1 << 16),
        })
    }

    /// The socket's netlink port id: the `port` of the transactions it makes.
    pub fn port(&self) -> Result<u32, NftError> {
        let mut address = SocketAddr::new(0, 0);
        self.socket
            .socket_ref()
            .get_address(&mut address)
            .map_err(io_error("read the netlink socket's address"))?;
        Ok(address.port_number())
    }

    fn next_sequence(&mut self, count: u32) -> u32 {
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(count);
        sequence
    }

    async fn send(&self, bytes: &[u8], action: &'static str) -> Result<(), NftError> {
        let sent = self.socket.send(bytes).await.map_err(io_error(action))?;
        if sent != bytes.len() {
            return Err(NftError::Io {
                action,
                source: io::Error::new(io::ErrorKind::WriteZero, "short send"),
            });
        }
        Ok(())
    }

    /// Applies `requests` as one transaction: all of them or none.
    pub async fn apply(&mut self, requests: &[Request]) -> Result<(), NftError> {
        const ACTION: &str = "send a batch to nf_tables";
        let sequence = self.next_sequence(requests.len() as u32 + 2);
        self.send(&batch_bytes(requests, sequence), ACTION).await?;
        // Everything the kernel answers is queued by now: read until the socket is empty.
        let mut answers = Vec::new();
        loop {
            match self.socket.socket_ref().recv_from_full() {
                Ok((datagram, _)) => answers.extend(acks(&datagram)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(NftError::Io {
                        action: ACTION,
                        source,
                    });
                }
            }
        }
        let last = sequence.wrapping_add(requests.len() as u32 + 1);
        answers.retain(|(answer, _)| answer.wrapping_sub(sequence) <= last.wrapping_sub(sequence));
        let refusals = batch_outcome(requests, sequence, &answers);
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(NftError::Batch(refusals))
        }
    }

    /// Sends one request and collects the nf_tables messages answering it, each with its
    /// family, up to the end of a dump or the one answer of a get. A dump interrupted by a
    /// concurrent change is started again.
    async fn request(
        &mut self,
        action: &'static str,
        family: Family,
        flags: u16,
        message: NfTablesMessage,
    ) -> Result<Vec<(Family, NfTablesMessage)>, NftError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        for _ in 0..DUMP_ATTEMPTS {
            let sequence = self.next_sequence(1);
            let request = framed(family, 0, NLM_F_REQUEST | flags, sequence, message.clone());
            let mut bytes = Vec::new();
            append(&mut bytes, &request);
            self.send(&bytes, action).await?;
            let collect = self.collect(action, sequence, dump);
            let (answers, interrupted) = tokio::time::timeout(REQUEST_TIMEOUT, collect)
                .await
                .map_err(|_| NftError::Timeout {
                    action,
                    bound: REQUEST_TIMEOUT,
                })??;
            if !interrupted {
                return Ok(answers);
            }
        }
        Err(NftError::Interrupted { action })
    }

    async fn collect(
        &self,
        action: &'static str,
        sequence: u32,
        dump: bool,
    ) -> Result<(Vec<(Family, NfTablesMessage)>, bool), NftError> {
        let mut answers = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .await
                .map_err(io_error(action))?;
            for message in messages(&datagram) {
                let message = message.map_err(|()| NftError::Decode {
                    action,
                    detail: "a truncated netlink message".into(),
                })?;
                let Some(message) = parse(message) else {
                    return Err(NftError::Decode {
                        action,
                        detail: format!("{} bytes that are no netfilter message", message.len()),
                    });
                };
                if message.header.sequence_number != sequence {
                    continue;
                }
                interrupted |= message.header.flags & NLM_F_DUMP_INTR != 0;
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok((answers, interrupted)),
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(NftError::Refused {
                            action,
                            source: error.to_io(),
                        });
                    }
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        header,
                        inner: NetfilterMessageInner::NfTables(inner),
                        ..
                    }) => {
                        answers.push((header.family, inner));
                        if !dump {
                            return Ok((answers, interrupted));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The ruleset's generation id: it changes with every transaction anyone commits.
    pub async fn generation(&mut self) -> Result<u32, NftError> {
        const ACTION: &str = "read the nf_tables generation";
        let answers = self
            .request(
                ACTION,
                Family::Unspec,
                0,
                NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
            )
            .await?;
        answers
            .iter()
            .find_map(|(_, answer)| match answer {
                NfTablesMessage::NewGen(message) => match gen_event(message, 0) {
                    Event::NewGen { id, .. } => Some(id),
                    _ => None,
                },
                _ => None,
            })
            .ok_or(NftError::Decode {
                action: ACTION,
                detail: "no generation id in the answer".into(),
            })
    }

    /// Every table of `family` (`Family::Unspec`: of all families), with its family.
    pub async fn tables(
        &mut self,
        family: Family,
    ) -> Result<Vec<(Family, TableMessage)>, NftError> {
        let answers = self
            .dump(
                "dump the nf_tables tables",
                family,
                NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
            )
            .await?;
        Ok(answers
            .into_iter()
            .filter_map(|(family, message)| match message {
                NfTablesMessage::NewTable(table) => Some((family, table)),
                _ => None,
            })
            .collect())
    }

    /// Every chain of `family`, of the table named `table` if given.
    pub async fn chains(
        &mut self,
        family: Family,
        table: Option<&str>,
    ) -> Result<Vec<(Family, ChainMessage)>, NftError> {
        let answers = self
            .dump(
                "dump the nf_tables chains",
                family,
                NfTablesMessage::GetChain(ChainMessage { attributes: vec![] }),
            )
            .await?;
        Ok(answers
            .into_iter()
            .filter_map(|(family, message)| match message {
                NfTablesMessage::NewChain(chain) => Some((family, chain)),
                _ => None,
            })
            .filter(|(_, chain)| {
                table.is_none_or(|table| {
                    chain
                        .attributes
                        .contains(&ChainAttribute::Table(table.to_string()))
                })
            })
            .collect())
    }

    /// Every rule of `table` in `family`.
    pub async fn rules(
        &mut self,
        family: Family,
        table: &str,
    ) -> Result<Vec<RuleMessage>, NftError> {
        let filter = RuleMessage {
            attributes: vec![RuleAttribute::Table(table.to_string())],
        };
        let answers = self
            .dump(
                "dump the nf_tables rules",
                family,
                NfTablesMessage::GetRule(filter),
            )
            .await?;
        Ok(answers
            .into_iter()
            .filter_map(|(_, message)| match message {
                NfTablesMessage::NewRule(rule) => Some(rule),
                _ => None,
            })
            .filter(|rule| rule_names(&rule.attributes).0.as_deref() == Some(table))
            .collect())
    }

    /// A dump of all objects of a kind; `Family::Unspec` dumps every family at once.
    async fn dump(
        &mut self,
        action: &'static str,
        family: Family,
        message: NfTablesMessage,
    ) -> Result<Vec<(Family, NfTablesMessage)>, NftError> {
        self.request(action, family, NLM_F_DUMP, message).await
    }
}

/// A socket subscribed to every nf_tables change in the network namespace.
pub struct Notifications {
    socket: TokioSocket,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    pub fn subscribe() -> Result<Notifications, NftError> {
        const ACTION: &str = "subscribe to nf_tables notifications";
        let socket = open_socket(ACTION)?;
        socket
            .socket_ref()
            .add_membership(GROUP_NFTABLES)
            .map_err(io_error(ACTION))?;
        Ok(Notifications { socket })
    }

    /// The events of the next datagram; an overrun is [`Event::Overrun`], after which the
    /// socket goes on.
    pub async fn next(&mut self) -> Result<Vec<Event>, NftError> {
        match self.socket.recv_from_full().await {
            Ok((datagram, _)) => Ok(decode(&datagram)),
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => Ok(vec![Event::Overrun]),
            Err(source) => Err(NftError::Io {
                action: "read nf_tables notifications",
                source,
            }),
        }
    }
}

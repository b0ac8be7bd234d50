//! Turns ctnetlink messages into [`Flow`]s.
//!
//! The framing (netlink header, nfgenmsg, the selection) is here; the
//! attributes of each conntrack entry go to an [`AttrDecoder`]. flowtop's is
//! [`super::wire`] (walks the attributes in place, allocates nothing). The
//! framing is generic so that the crate-based reference decoder of
//! `flowtop-testkit`, the oracle of the differential proptests and of the
//! `ctnetlink_diff` fuzz target, runs through this very framing: the
//! differential checks then compare attribute decoding alone.
//!
//! The selection is applied as early as possible: the family from the
//! nfgenmsg and the protocol from a non-allocating peek, both before any
//! attribute is decoded.

use netlink_packet_core::{DecodeError, NetlinkBuffer, NLM_F_CREATE};

use super::wire;
use crate::flow::model::{Family, Flow};
use crate::flow::Selection;

/// nfnetlink subsystem id of ctnetlink, the high byte of the message type.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NFGENMSG_LEN: usize = 4;
const NETLINK_HEADER_LEN: usize = 16;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// What a conntrack message says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtEventKind {
    /// An entry the kernel just created (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE`).
    New,
    /// A change to an entry (`IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE`); also dump entries.
    Update,
    /// The entry is gone; carries its final counters.
    Destroy,
}

/// One decoded netlink message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Flow(CtEventKind, Flow),
    /// A conntrack entry the selection excludes (counted, not decoded).
    Filtered,
    /// End of a dump.
    Done,
    /// An error or acknowledgement from the kernel: 0 is an ack, else -errno.
    Error(i32),
    /// Anything else (noop, other subsystems).
    Ignored,
}

/// Turns the attributes of one conntrack entry (the bytes after the
/// nfgenmsg) into a [`Flow`].
pub trait AttrDecoder {
    /// The layer-4 protocol of the original tuple, without decoding the
    /// rest: the selection drops unwanted entries before [`Self::decode_flow`].
    fn peek_protocol(&self, attrs: &[u8]) -> Result<Option<u8>, DecodeError>;
    /// The whole entry.
    fn decode_flow(&self, family: Family, attrs: &[u8]) -> Result<Flow, DecodeError>;
}

/// flowtop's attribute decoder, [`super::wire`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire;

impl AttrDecoder for Wire {
    fn peek_protocol(&self, attrs: &[u8]) -> Result<Option<u8>, DecodeError> {
        wire::peek_protocol(attrs)
    }
    fn decode_flow(&self, family: Family, attrs: &[u8]) -> Result<Flow, DecodeError> {
        wire::decode_flow(family, attrs)
    }
}

/// Decodes every netlink message in one datagram, calling `f` for each.
/// A malformed message is reported through `f` as `Err` and decoding goes on
/// with the next one when the framing allows it.
pub fn for_each_message(datagram: &[u8], sel: &Selection, f: impl FnMut(Result<Message, DecodeError>)) {
    for_each_message_with(&Wire, datagram, sel, f);
}

/// [`for_each_message`] with another attribute decoder (the testkit's
/// reference decoder; flowtop itself always uses [`Wire`]).
pub fn for_each_message_with<D: AttrDecoder>(
    decoder: &D,
    datagram: &[u8],
    sel: &Selection,
    mut f: impl FnMut(Result<Message, DecodeError>),
) {
    let mut offset = 0;
    while offset + NETLINK_HEADER_LEN <= datagram.len() {
        let rest = &datagram[offset..];
        let nl = match NetlinkBuffer::new_checked(rest) {
            Ok(nl) => nl,
            Err(e) => {
                // The length field cannot be trusted: nothing after it can be framed.
                f(Err(e));
                return;
            }
        };
        let len = nl.length() as usize;
        f(decode_one(
            nl.message_type(),
            nl.flags(),
            nl.payload(),
            sel,
            decoder,
        ));
        if len == 0 {
            return;
        }
        offset += (len + 3) & !3;
    }
}

fn decode_one<D: AttrDecoder>(
    msg_type: u16,
    flags: u16,
    payload: &[u8],
    sel: &Selection,
    decoder: &D,
) -> Result<Message, DecodeError> {
    match msg_type {
        NLMSG_DONE => return Ok(Message::Done),
        NLMSG_NOOP | NLMSG_OVERRUN => return Ok(Message::Ignored),
        NLMSG_ERROR => {
            let code = payload
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| DecodeError::from("truncated NLMSG_ERROR"))?;
            return Ok(Message::Error(code));
        }
        _ => {}
    }
    if msg_type >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(Message::Ignored);
    }
    let kind = match msg_type & 0xff {
        IPCTNL_MSG_CT_NEW if flags & NLM_F_CREATE != 0 => CtEventKind::New,
        IPCTNL_MSG_CT_NEW => CtEventKind::Update,
        IPCTNL_MSG_CT_DELETE => CtEventKind::Destroy,
        _ => return Ok(Message::Ignored),
    };
    if payload.len() < NFGENMSG_LEN {
        return Err(DecodeError::from(
            "ctnetlink message shorter than its nfgenmsg header",
        ));
    }
    let family = match payload[0] {
        AF_INET => Family::Ipv4,
        AF_INET6 => Family::Ipv6,
        _ => return Ok(Message::Ignored),
    };
    if !sel.family(family) {
        return Ok(Message::Filtered);
    }
    let attrs = &payload[NFGENMSG_LEN..];
    let protocol = decoder.peek_protocol(attrs)?;
    match protocol {
        Some(p) if sel.proto(p) => {}
        Some(_) => return Ok(Message::Filtered),
        None => {
            return Err(DecodeError::from(
                "conntrack entry without CTA_TUPLE_ORIG protocol",
            ))
        }
    }
    let flow = decoder.decode_flow(family, attrs)?;
    Ok(Message::Flow(kind, flow))
}

// The production attribute decoder, under the names callers know.
pub use super::wire::{decode_flow, peek_protocol};

#[cfg(test)]
mod tests {
    use crate::flow::model::STATUS_FLAGS;

    #[test]
    fn status_flag_names_follow_the_kernel_bits() {
        assert_eq!(status_of(0b1110), vec!["SEEN_REPLY", "ASSURED", "CONFIRMED"]);
        assert_eq!(STATUS_FLAGS.len(), 16);
    }

    fn status_of(bits: u32) -> Vec<&'static str> {
        crate::flow::model::status_names(bits).collect()
    }
}

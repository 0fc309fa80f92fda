//! nftables transactions over NETLINK_NETFILTER, without the `nft` command.
//!
//! `nft -f` reads the table back from the kernel before it applies
//! anything, so even a one-element change costs tens of milliseconds once
//! a table holds thousands of chains. The kernel itself needs a few
//! microseconds per element. An [`NftBatch`] holds the changes of one
//! transaction (set and map elements added and removed, sets and chains
//! flushed, rules added), encoded as the kernel takes them; an
//! [`NftSocket`] sends it as one nfnetlink batch (`NFNL_MSG_BATCH_BEGIN`,
//! the messages, `NFNL_MSG_BATCH_END`) and reads every message's
//! acknowledgement. The kernel applies the batch atomically: all of it or,
//! on the first refused message, none.
//!
//! Values are bytes exactly as nft stores them (see [`NftElement`]): keys
//! and data of a concatenation are each padded to 4 bytes, addresses and
//! ports in network byte order, `numgen` and `mark` values in host order.
//! Deciding those bytes from nft's text is the caller's business
//! (`weft_nft` does it for weft's tables).

mod expr;
mod socket;

use std::ffi::CString;

pub use expr::{NftCmpOp, NftExpr, NftMetaKey, NftPayloadBase};
pub use socket::NftSocket;
pub(crate) use socket::netfilter_socket;

/// `NFPROTO_INET`: the family of an `inet` table.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`: the family of an `ip` table, and of IPv4 NAT.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`: the family of an `ip6` table, and of IPv6 NAT.
pub const NFPROTO_IPV6: u8 = 10;

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`, `NFNL_MSG_BATCH_END`.
const MSG_BATCH_BEGIN: u16 = 0x10;
const MSG_BATCH_END: u16 = 0x11;
/// `enum nf_tables_msg_types`.
const MSG_NEWRULE: u16 = 6;
const MSG_DELRULE: u16 = 8;
const MSG_NEWSETELEM: u16 = 12;
const MSG_DELSETELEM: u16 = 14;

/// netlink flags.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
/// `NLA_F_NESTED`: marks an attribute whose payload is attributes.
const NLA_F_NESTED: u16 = 0x8000;

/// `NFTA_RULE_*`.
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_EXPRESSIONS: u16 = 4;
/// `NFTA_SET_ELEM_LIST_*`.
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
/// `NFTA_LIST_ELEM`: one entry of a nested list.
const LIST_ELEM: u16 = 1;
/// `NFTA_SET_ELEM_*`.
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_USERDATA: u16 = 6;
/// `NFTA_DATA_VALUE`, `NFTA_DATA_VERDICT`.
const DATA_VALUE: u16 = 1;
const DATA_VERDICT: u16 = 2;
/// `NFTA_VERDICT_CODE`, `NFTA_VERDICT_CHAIN`.
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;
/// `NFTNL_UDATA_SET_ELEM_COMMENT`: the user-data TLV nft keeps an
/// element's comment in.
const UDATA_SET_ELEM_COMMENT: u8 = 0;

/// The data of a map element, or what an `immediate` expression loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftData {
    /// Bytes (an address, a port, a concatenation of them).
    Value(Vec<u8>),
    /// A verdict.
    Verdict(NftVerdict),
}

/// A verdict, as verdict maps and rules give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftVerdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `jump <chain>`.
    Jump(String),
    /// `goto <chain>`.
    Goto(String),
}

/// One element of a set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftElement {
    /// The key's bytes: for a single value its own width (2 bytes for an
    /// `inet_service`, 4 for an `ipv4_addr`), for a concatenation each
    /// part padded with zeros to a multiple of 4 bytes.
    pub key: Vec<u8>,
    /// The value, for a map (ignored when deleting).
    pub data: Option<NftData>,
    /// A comment (`comment "…"`), kept where nft keeps it: in the
    /// element's user data.
    pub comment: Option<String>,
}

/// The messages of one nftables transaction, in order, for one table
/// family. Built up with the methods below, sent with
/// [`NftSocket::commit`].
#[derive(Clone, Debug)]
pub struct NftBatch {
    family: u8,
    messages: Vec<Message>,
}

/// One encoded message body (after the nfgenmsg header) with its type,
/// flags and the operation's name for errors.
#[derive(Clone, Debug)]
struct Message {
    kind: u16,
    flags: u16,
    attrs: Vec<u8>,
    op: String,
}

impl NftBatch {
    /// An empty transaction on tables of `family` ([`NFPROTO_INET`], …).
    pub fn new(family: u8) -> NftBatch {
        NftBatch {
            family,
            messages: Vec::new(),
        }
    }

    /// Number of messages (not counting the batch's begin and end).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message was added.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Adds `elements` to set or map `set` of `table`, as `nft add element`
    /// does: a key already there with the same value is kept, one with
    /// another value fails the transaction (EEXIST).
    pub fn add_elements(&mut self, table: &str, set: &str, elements: &[NftElement]) -> &mut Self {
        let op = format!("add {} element(s) to {table} {set}", elements.len());
        let attrs = elements_attrs(table, set, Some(elements), true);
        self.push(MSG_NEWSETELEM, NLM_F_CREATE, attrs, op)
    }

    /// Removes the elements with `elements`' keys from set or map `set`
    /// of `table`. Fails the transaction (ENOENT) when a key is missing.
    pub fn delete_elements(
        &mut self,
        table: &str,
        set: &str,
        elements: &[NftElement],
    ) -> &mut Self {
        let op = format!("delete {} element(s) from {table} {set}", elements.len());
        let attrs = elements_attrs(table, set, Some(elements), false);
        self.push(MSG_DELSETELEM, 0, attrs, op)
    }

    /// Removes every element of set or map `set` of `table`.
    pub fn flush_set(&mut self, table: &str, set: &str) -> &mut Self {
        let attrs = elements_attrs(table, set, None, false);
        self.push(MSG_DELSETELEM, 0, attrs, format!("flush set {table} {set}"))
    }

    /// Removes every rule of `chain` of `table`.
    pub fn flush_chain(&mut self, table: &str, chain: &str) -> &mut Self {
        let mut attrs = Vec::new();
        put_str(&mut attrs, RULE_TABLE, table);
        put_str(&mut attrs, RULE_CHAIN, chain);
        self.push(
            MSG_DELRULE,
            0,
            attrs,
            format!("flush chain {table} {chain}"),
        )
    }

    /// Appends a rule made of `exprs` to `chain` of `table`.
    pub fn add_rule(&mut self, table: &str, chain: &str, exprs: &[NftExpr]) -> &mut Self {
        let mut attrs = Vec::new();
        put_str(&mut attrs, RULE_TABLE, table);
        put_str(&mut attrs, RULE_CHAIN, chain);
        nest(&mut attrs, RULE_EXPRESSIONS, |list| {
            for e in exprs {
                nest(list, LIST_ELEM, |out| e.encode(out));
            }
        });
        let op = format!("add rule to {table} {chain}");
        self.push(MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, attrs, op)
    }

    fn push(&mut self, kind: u16, flags: u16, attrs: Vec<u8>, op: String) -> &mut Self {
        self.messages.push(Message {
            kind,
            flags,
            attrs,
            op,
        });
        self
    }

    /// The whole batch as one datagram: begin, the messages with sequence
    /// numbers `seq + 1`, `seq + 2`, …, end (`seq` and the last plus one).
    /// Every message asks for an acknowledgement.
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .messages
                .iter()
                .map(|m| m.attrs.len() + 20)
                .sum::<usize>(),
        );
        // The batch messages name the subsystem in nfgenmsg's res_id.
        message(
            &mut out,
            MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            SUBSYS_NFTABLES,
            &[],
        );
        for (i, m) in self.messages.iter().enumerate() {
            message(
                &mut out,
                (SUBSYS_NFTABLES << 8) | m.kind,
                NLM_F_REQUEST | NLM_F_ACK | m.flags,
                seq + 1 + i as u32,
                self.family,
                0,
                &m.attrs,
            );
        }
        let end = seq + 1 + self.messages.len() as u32;
        message(
            &mut out,
            MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            SUBSYS_NFTABLES,
            &[],
        );
        out
    }

    /// The operation's name of message `i` (0-based), for errors.
    fn op(&self, i: usize) -> Option<&str> {
        self.messages.get(i).map(|m| m.op.as_str())
    }
}

/// The attributes of a NEWSETELEM/DELSETELEM message; no element list
/// flushes the set.
fn elements_attrs(
    table: &str,
    set: &str,
    elements: Option<&[NftElement]>,
    with_data: bool,
) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, ELEM_LIST_TABLE, table);
    put_str(&mut attrs, ELEM_LIST_SET, set);
    if let Some(elements) = elements {
        nest(&mut attrs, ELEM_LIST_ELEMENTS, |list| {
            for e in elements {
                nest(list, LIST_ELEM, |out| {
                    nest(out, ELEM_KEY, |k| put(k, DATA_VALUE, &e.key));
                    if let (true, Some(data)) = (with_data, &e.data) {
                        nest(out, ELEM_DATA, |d| put_data(d, data));
                    }
                    if let (true, Some(comment)) = (with_data, &e.comment) {
                        put(out, ELEM_USERDATA, &comment_udata(comment));
                    }
                });
            }
        });
    }
    attrs
}

/// nft's user-data TLV for an element comment: type, length, the text
/// with its NUL (a comment with a NUL inside is cut there, as nft does).
fn comment_udata(comment: &str) -> Vec<u8> {
    let text = CString::new(comment.split('\0').next().unwrap_or_default())
        .expect("no NUL left")
        .into_bytes_with_nul();
    let len = text.len().min(255);
    let mut out = vec![UDATA_SET_ELEM_COMMENT, len as u8];
    out.extend_from_slice(&text[..len]);
    out
}

/// `data` as NFTA_DATA_VALUE or NFTA_DATA_VERDICT inside the caller's nest.
pub(crate) fn put_data(out: &mut Vec<u8>, data: &NftData) {
    match data {
        NftData::Value(bytes) => put(out, DATA_VALUE, bytes),
        NftData::Verdict(v) => nest(out, DATA_VERDICT, |out| {
            // NF_DROP 0, NF_ACCEPT 1, NFT_JUMP -3, NFT_GOTO -4.
            let (code, chain): (i32, Option<&str>) = match v {
                NftVerdict::Drop => (0, None),
                NftVerdict::Accept => (1, None),
                NftVerdict::Jump(c) => (-3, Some(c)),
                NftVerdict::Goto(c) => (-4, Some(c)),
            };
            put(out, VERDICT_CODE, &code.to_be_bytes());
            if let Some(chain) = chain {
                put_str(out, VERDICT_CHAIN, chain);
            }
        }),
    }
}

/// One netlink message: nlmsghdr, nfgenmsg, attributes.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
}

/// An attribute with `payload`, padded to 4 bytes.
pub(crate) fn put(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    pad(out);
}

/// A NUL-terminated string attribute.
pub(crate) fn put_str(out: &mut Vec<u8>, kind: u16, text: &str) {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    put(out, kind, &bytes);
}

/// A big-endian u32 attribute (nftables' integers).
pub(crate) fn put_u32(out: &mut Vec<u8>, kind: u16, value: u32) {
    put(out, kind, &value.to_be_bytes());
}

/// A nested attribute whose payload `fill` writes.
pub(crate) fn nest(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    fill(out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests;

//! Rule expressions, encoded as `nft` encodes them (compare
//! `nft --debug=netlink`).

use super::{NftData, nest, put_data, put_str, put_u32};

/// `NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`.
const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;

/// What a `meta` expression loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftMetaKey {
    /// `meta nfproto` (`NFT_META_NFPROTO`): the packet's family, 1 byte.
    NfProto,
    /// `meta l4proto` (`NFT_META_L4PROTO`): the transport protocol, 1 byte.
    L4Proto,
}

/// Comparison operators of `cmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftCmpOp {
    /// `NFT_CMP_EQ`.
    Eq,
    /// `NFT_CMP_NEQ`.
    Neq,
}

/// Where a `payload` expression reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftPayloadBase {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    Network,
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    Transport,
}

/// One expression of a rule. Registers are numbered as the kernel numbers
/// them: 0 the verdict, 1–4 the 16-byte registers, 8–23 the 4-byte ones
/// (8 is the first word of register 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftExpr {
    /// Loads packet metadata into `dreg`.
    Meta {
        /// What to load.
        key: NftMetaKey,
        /// The destination register.
        dreg: u32,
    },
    /// Compares `sreg` with `data`; the rule stops here when false.
    Cmp {
        /// The register compared.
        sreg: u32,
        /// The operator.
        op: NftCmpOp,
        /// The bytes compared with.
        data: Vec<u8>,
    },
    /// Loads `len` bytes at `offset` of a header into `dreg`.
    Payload {
        /// The header.
        base: NftPayloadBase,
        /// Offset in the header.
        offset: u32,
        /// Bytes.
        len: u32,
        /// The destination register.
        dreg: u32,
    },
    /// Looks `sreg` up in set `set`; with `dreg`, a map, loads the value.
    Lookup {
        /// The set or map's name.
        set: String,
        /// The key's register.
        sreg: u32,
        /// The value's register, for a map.
        dreg: Option<u32>,
        /// Matches when the key is absent (`!= @set`).
        invert: bool,
    },
    /// Loads `data` into `dreg` (register 0 and a verdict: the rule's
    /// verdict).
    Immediate {
        /// The destination register.
        dreg: u32,
        /// The value or verdict.
        data: NftData,
    },
    /// A random number `offset..offset + modulus` into `dreg`
    /// (`numgen random mod M offset O`).
    NumgenRandom {
        /// The destination register.
        dreg: u32,
        /// How many numbers.
        modulus: u32,
        /// The first number.
        offset: u32,
    },
    /// Destination NAT to the address in `reg_addr` and, when given, the
    /// port in `reg_proto`.
    Dnat {
        /// [`super::NFPROTO_IPV4`] or [`super::NFPROTO_IPV6`].
        family: u8,
        /// The address's register.
        reg_addr: u32,
        /// The port's register.
        reg_proto: Option<u32>,
        /// `NF_NAT_RANGE_*` flags sent along (0: none sent; the kernel
        /// derives them from the registers given, nft sends
        /// `NF_NAT_RANGE_PROTO_SPECIFIED` only for a port given inline).
        flags: u32,
    },
}

impl NftExpr {
    /// Appends the expression's name and data (inside the caller's list
    /// element).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let name = match self {
            NftExpr::Meta { .. } => "meta",
            NftExpr::Cmp { .. } => "cmp",
            NftExpr::Payload { .. } => "payload",
            NftExpr::Lookup { .. } => "lookup",
            NftExpr::Immediate { .. } => "immediate",
            NftExpr::NumgenRandom { .. } => "numgen",
            NftExpr::Dnat { .. } => "nat",
        };
        put_str(out, EXPR_NAME, name);
        nest(out, EXPR_DATA, |out| self.encode_data(out));
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            NftExpr::Meta { key, dreg } => {
                // NFTA_META_DREG 1, NFTA_META_KEY 2; NFT_META_NFPROTO 15,
                // NFT_META_L4PROTO 16.
                put_u32(out, 1, *dreg);
                put_u32(
                    out,
                    2,
                    match key {
                        NftMetaKey::NfProto => 15,
                        NftMetaKey::L4Proto => 16,
                    },
                );
            }
            NftExpr::Cmp { sreg, op, data } => {
                // NFTA_CMP_SREG 1, NFTA_CMP_OP 2, NFTA_CMP_DATA 3.
                put_u32(out, 1, *sreg);
                put_u32(
                    out,
                    2,
                    match op {
                        NftCmpOp::Eq => 0,
                        NftCmpOp::Neq => 1,
                    },
                );
                nest(out, 3, |d| put_data(d, &NftData::Value(data.clone())));
            }
            NftExpr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                // NFTA_PAYLOAD_DREG 1, BASE 2, OFFSET 3, LEN 4.
                put_u32(out, 1, *dreg);
                put_u32(
                    out,
                    2,
                    match base {
                        NftPayloadBase::Network => 1,
                        NftPayloadBase::Transport => 2,
                    },
                );
                put_u32(out, 3, *offset);
                put_u32(out, 4, *len);
            }
            NftExpr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                // NFTA_LOOKUP_SET 1, SREG 2, DREG 3, FLAGS 5
                // (NFT_LOOKUP_F_INV 1).
                put_str(out, 1, set);
                put_u32(out, 2, *sreg);
                if let Some(dreg) = dreg {
                    put_u32(out, 3, *dreg);
                }
                if *invert {
                    put_u32(out, 5, 1);
                }
            }
            NftExpr::Immediate { dreg, data } => {
                // NFTA_IMMEDIATE_DREG 1, NFTA_IMMEDIATE_DATA 2.
                put_u32(out, 1, *dreg);
                nest(out, 2, |d| put_data(d, data));
            }
            NftExpr::NumgenRandom {
                dreg,
                modulus,
                offset,
            } => {
                // NFTA_NG_DREG 1, MODULUS 2, TYPE 3 (NFT_NG_RANDOM 1),
                // OFFSET 4.
                put_u32(out, 1, *dreg);
                put_u32(out, 2, *modulus);
                put_u32(out, 3, 1);
                put_u32(out, 4, *offset);
            }
            NftExpr::Dnat {
                family,
                reg_addr,
                reg_proto,
                flags,
            } => {
                // NFTA_NAT_TYPE 1 (NFT_NAT_DNAT 1), FAMILY 2, REG_ADDR_MIN 3,
                // REG_PROTO_MIN 5. The kernel takes the maxima equal to the
                // minima and derives the range flags, as it does for nft.
                put_u32(out, 1, 1);
                put_u32(out, 2, u32::from(*family));
                put_u32(out, 3, *reg_addr);
                if let Some(reg) = reg_proto {
                    put_u32(out, 5, *reg);
                }
                // NFTA_NAT_FLAGS 7.
                if *flags != 0 {
                    put_u32(out, 7, *flags);
                }
            }
        }
    }
}

//! How nft spells an address family, for every family type of the
//! workspace (the model's and the policy evaluator's).

/// How nft spells an address family in names and rules. Implementors say
/// only whether they are IPv6; the spellings follow.
pub trait NftFamily: Copy {
    /// Whether this is IPv6 (else IPv4).
    fn is_v6(self) -> bool;

    /// The digit set, map and chain names carry (`4`, `6`).
    fn suffix(self) -> &'static str {
        if self.is_v6() { "6" } else { "4" }
    }

    /// The header keyword (`ip saddr`, `ip6 saddr`).
    fn keyword(self) -> &'static str {
        if self.is_v6() { "ip6" } else { "ip" }
    }

    /// The address type of sets and maps.
    fn addr_type(self) -> &'static str {
        if self.is_v6() {
            "ipv6_addr"
        } else {
            "ipv4_addr"
        }
    }

    /// The `meta nfproto` value.
    fn nfproto(self) -> &'static str {
        if self.is_v6() { "ipv6" } else { "ipv4" }
    }
}

impl NftFamily for weft_model::IpFamily {
    fn is_v6(self) -> bool {
        matches!(self, Self::V6)
    }
}

/// How nft spells a transport protocol, in rules (`meta l4proto tcp`) and as
/// an `inet_proto` element.
pub fn protocol_keyword(protocol: weft_model::Protocol) -> &'static str {
    match protocol {
        weft_model::Protocol::Tcp => "tcp",
        weft_model::Protocol::Udp => "udp",
        weft_model::Protocol::Sctp => "sctp",
    }
}

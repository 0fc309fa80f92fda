//! Neighbour (ARP / NDP) entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::mac::format_mac;
use crate::socket::{Handle, Request};

/// A neighbour entry: `ip` is at `mac` on link `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// ifindex of the link the neighbour is on.
    pub index: u32,
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: [u8; 6],
    /// NUD_PERMANENT: static, never probed or expired.
    pub permanent: bool,
}

impl Handle {
    /// Adds or replaces a neighbour entry (NLM_F_CREATE|NLM_F_REPLACE), so a
    /// repeated ADD is not an error. `permanent` entries are NUD_PERMANENT;
    /// others are NUD_REACHABLE and age like learned ones.
    pub fn add_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.request(add_neighbour(n))
    }

    /// Deletes the entry for `ip` on link `index`; is_not_found() (ENOENT)
    /// when there is none.
    pub fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        self.request(delete_neighbour(index, ip))
    }

    /// The entries on link `index` that have a 6-byte link-layer address,
    /// both families. Entries still being resolved (or failed) have none and
    /// are left out.
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        self.dump_neighbours(AddressFamily::Unspec, index, parse_neighbour, || {
            format!("dump neighbours of link {index}")
        })
    }

    /// Every IPv4 entry with a 6-byte link-layer address, on all links: one
    /// dump instead of one per link.
    pub fn neighbours_v4(&mut self) -> Result<Vec<Neighbour>> {
        self.all_neighbours(AddressFamily::Inet, "IPv4")
    }

    /// [`Handle::neighbours_v4`] for IPv6.
    pub fn neighbours_v6(&mut self) -> Result<Vec<Neighbour>> {
        self.all_neighbours(AddressFamily::Inet6, "IPv6")
    }

    fn all_neighbours(&mut self, family: AddressFamily, name: &str) -> Result<Vec<Neighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        self.dump(
            RouteNetlinkMessage::GetNeighbour(msg),
            || format!("dump {name} neighbours"),
            |m| match m {
                RouteNetlinkMessage::NewNeighbour(m) => parse_neighbour(&m),
                _ => None,
            },
        )
    }

    /// Dumps the `family` neighbour table (AF_BRIDGE: the FDB) entries of
    /// link `index`, through `parse`.
    pub(crate) fn dump_neighbours<T>(
        &mut self,
        family: AddressFamily,
        index: u32,
        parse: fn(&NeighbourMessage) -> Option<T>,
        op: impl Fn() -> String,
    ) -> Result<Vec<T>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        // With strict checking the kernel filters by NDA_IFINDEX itself
        // (the ifindex in the header must stay 0); without it everything
        // comes and the filter below applies.
        msg.attributes.push(NeighbourAttribute::IfIndex(index));
        self.dump(RouteNetlinkMessage::GetNeighbour(msg), op, |m| match m {
            RouteNetlinkMessage::NewNeighbour(m) if m.header.ifindex == index => parse(&m),
            _ => None,
        })
    }
}

/// The request of [`Handle::add_neighbour`] (and
/// [`crate::Batch::add_neighbour`]).
pub(crate) fn add_neighbour(n: &Neighbour) -> Request {
    Request::new(
        RouteNetlinkMessage::NewNeighbour(neighbour_request(n)),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!(
            "add neighbour {} lladdr {} dev {}",
            n.ip,
            format_mac(&n.mac),
            n.index
        ),
    )
}

/// The request of [`Handle::delete_neighbour`] (and
/// [`crate::Batch::delete_neighbour`]).
pub(crate) fn delete_neighbour(index: u32, ip: IpAddr) -> Request {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(ip);
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    Request::new(
        RouteNetlinkMessage::DelNeighbour(msg),
        0,
        format!("delete neighbour {ip} dev {index}"),
    )
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

pub(crate) fn neighbour_request(n: &Neighbour) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family(n.ip);
    msg.header.ifindex = n.index;
    msg.header.state = if n.permanent {
        NeighbourState::Permanent
    } else {
        NeighbourState::Reachable
    };
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            n.ip,
        )));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(n.mac.to_vec()));
    msg
}

/// An NDA_DST address. In AF_BRIDGE messages (the FDB) the library cannot
/// type it from the header's family: its length says which it is.
pub(crate) fn address(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&b[..]).ok()?,
            ))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&b[..]).ok()?,
            ))),
            _ => None,
        },
        _ => None,
    }
}

fn parse_neighbour(m: &NeighbourMessage) -> Option<Neighbour> {
    let mut ip = None;
    let mut mac = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::Destination(a) => ip = address(a),
            NeighbourAttribute::LinkLayerAddress(a) => mac = a.as_slice().try_into().ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        index: m.header.ifindex,
        ip: ip?,
        mac: mac?,
        permanent: m.header.state == NeighbourState::Permanent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn permanent_v4_golden_bytes() {
        let n = Neighbour {
            index: 4,
            ip: "169.254.1.1".parse().unwrap(),
            mac: [0xee, 0xee, 0xee, 0xee, 0xee, 0xee],
            permanent: true,
        };
        let msg = neighbour_request(&n);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // ndmsg: AF_INET, pad, ifindex 4, state NUD_PERMANENT (0x80),
            // flags 0, type 0
            2, 0, 0, 0, 4, 0, 0, 0, 0x80, 0, 0, 0,
            // NDA_DST
            8, 0, 1, 0, 169, 254, 1, 1,
            // NDA_LLADDR
            10, 0, 2, 0, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0, 0,
        ];
        assert_eq!(buf, want);
        assert_eq!(parse_neighbour(&msg), Some(n));
    }
}

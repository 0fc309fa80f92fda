//! Forwarding-database entries of a VXLAN device: which remote VTEP (its
//! underlay address) a MAC address is behind. weft programs them statically,
//! one per remote node, instead of letting the device learn them.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::mac::format_mac;
use crate::socket::{Handle, Request};

/// A static FDB entry on a VXLAN device (`bridge fdb append MAC dev INDEX
/// dst DST self permanent`): frames to `mac` are encapsulated to `dst`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    /// ifindex of the VXLAN device.
    pub index: u32,
    /// The remote VTEP's MAC address.
    pub mac: [u8; 6],
    /// The remote VTEP's underlay address; same family as the device's
    /// local address.
    pub dst: IpAddr,
}

impl Handle {
    /// Adds the entry, or replaces the destination of the one for the same
    /// MAC (NLM_F_CREATE|NLM_F_REPLACE), so a repeated ADD is not an error
    /// and a node whose underlay address changed is followed. Permanent
    /// (NUD_PERMANENT): never aged out.
    pub fn add_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.request(add_fdb(entry))
    }

    /// Deletes the entry (that MAC with that destination);
    /// is_not_found() (ENOENT) when there is none.
    pub fn delete_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.request(delete_fdb(entry))
    }

    /// The FDB entries of device `index` that have a remote destination.
    /// Entries without one (such as the all-zero default entry of a device
    /// created with a remote or group) are left out.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        self.dump_neighbours(AddressFamily::Bridge, index, parse_fdb, || {
            format!("dump fdb of link {index}")
        })
    }
}

/// The request of [`Handle::add_fdb`] (and [`crate::Batch::add_fdb`]).
pub(crate) fn add_fdb(entry: &FdbEntry) -> Request {
    Request::new(
        RouteNetlinkMessage::NewNeighbour(fdb_request(entry)),
        NLM_F_CREATE | NLM_F_REPLACE,
        format!("add fdb {}", describe(entry)),
    )
}

/// The request of [`Handle::delete_fdb`] (and [`crate::Batch::delete_fdb`]).
pub(crate) fn delete_fdb(entry: &FdbEntry) -> Request {
    Request::new(
        RouteNetlinkMessage::DelNeighbour(fdb_request(entry)),
        0,
        format!("delete fdb {}", describe(entry)),
    )
}

/// The RTM_NEWNEIGH/RTM_DELNEIGH body: AF_BRIDGE, NTF_SELF (the device's
/// own FDB, not a bridge master's), NUD_PERMANENT, NDA_LLADDR, NDA_DST.
/// The VNI and port are left to the device's own.
pub(crate) fn fdb_request(entry: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = entry.index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(
            entry.dst,
        )));
    msg
}

/// An FDB entry with a 6-byte MAC and an IP destination; `None` otherwise.
pub(crate) fn parse_fdb(m: &NeighbourMessage) -> Option<FdbEntry> {
    let mut mac = None;
    let mut dst = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(a) => mac = a.as_slice().try_into().ok(),
            NeighbourAttribute::Destination(a) => dst = crate::neigh::address(a),
            _ => {}
        }
    }
    Some(FdbEntry {
        index: m.header.ifindex,
        mac: mac?,
        dst: dst?,
    })
}

/// `bridge fdb`-style text for error messages.
fn describe(e: &FdbEntry) -> String {
    format!("{} dst {} dev {}", format_mac(&e.mac), e.dst, e.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn entry(dst: &str) -> FdbEntry {
        FdbEntry {
            index: 5,
            mac: [0x02, 0x77, 0, 0, 0, 0x02],
            dst: dst.parse().unwrap(),
        }
    }

    fn bytes(msg: &NeighbourMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    /// Parses as a reply from the kernel would be parsed.
    fn reparse(buf: &[u8]) -> NeighbourMessage {
        NeighbourMessage::parse(buf).unwrap()
    }

    #[test]
    fn golden_bytes() {
        // What `bridge fdb replace 02:77:00:00:00:02 dev <5> dst 192.168.77.2
        // self permanent` sends.
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // ndmsg: AF_BRIDGE (7), pad, ifindex 5, state NUD_PERMANENT
            // (0x80), flags NTF_SELF (2), type 0
            7, 0, 0, 0, 5, 0, 0, 0, 0x80, 0, 2, 0,
            // NDA_LLADDR
            10, 0, 2, 0, 0x02, 0x77, 0, 0, 0, 0x02, 0, 0,
            // NDA_DST
            8, 0, 1, 0, 192, 168, 77, 2,
        ];
        assert_eq!(bytes(&fdb_request(&entry("192.168.77.2"))), want);
    }

    #[test]
    fn both_families_parse_back_from_bridge_messages() {
        for dst in ["192.168.77.2", "fd00:77::2"] {
            let e = entry(dst);
            let m = reparse(&bytes(&fdb_request(&e)));
            // The library cannot type NDA_DST in an AF_BRIDGE message.
            assert!(m.attributes.iter().any(|a| matches!(
                a,
                NeighbourAttribute::Destination(NeighbourAddress::Other(_))
            )));
            assert_eq!(parse_fdb(&m), Some(e));
        }
    }

    #[test]
    fn entries_without_destination_are_skipped() {
        let mut m = fdb_request(&entry("192.168.77.2"));
        m.attributes
            .retain(|a| !matches!(a, NeighbourAttribute::Destination(_)));
        assert_eq!(parse_fdb(&reparse(&bytes(&m))), None);
    }

    #[test]
    fn add_replaces_and_delete_matches_the_destination() {
        let e = entry("192.168.77.2");
        let mut add = Vec::new();
        assert_eq!(
            add_fdb(&e).append_to(&mut add),
            "add fdb 02:77:00:00:00:02 dst 192.168.77.2 dev 5"
        );
        let flags = u16::from_ne_bytes([add[6], add[7]]);
        assert_eq!(
            flags & (NLM_F_CREATE | NLM_F_REPLACE),
            NLM_F_CREATE | NLM_F_REPLACE
        );
        let mut del = Vec::new();
        assert_eq!(
            delete_fdb(&e).append_to(&mut del),
            "delete fdb 02:77:00:00:00:02 dst 192.168.77.2 dev 5"
        );
        // RTM_DELNEIGH with the same body.
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), 29);
        assert_eq!(del[16..], add[16..]);
    }
}

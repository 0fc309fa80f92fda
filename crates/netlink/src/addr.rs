//! Interface addresses.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::{Handle, Request};

impl Handle {
    /// Adds `addr` (address and prefix length, host bits kept) to link
    /// `index` with universe scope. With `nodad`, an IPv6 address is usable
    /// at once (IFA_F_NODAD) instead of tentative for the duration of
    /// duplicate address detection; IPv4 has no DAD and ignores it.
    /// An address that is already there gives is_exists().
    pub fn add_address(&mut self, index: u32, addr: IpNet, nodad: bool) -> Result<()> {
        self.request(add_address(index, addr, nodad))
    }

    /// Removes `addr` from link `index`. An address that is not there gives
    /// EADDRNOTAVAIL, which counts as is_not_found().
    pub fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let msg = address_request(index, addr, false);
        self.ack(RouteNetlinkMessage::DelAddress(msg), 0, || {
            format!("delete address {addr} from link {index}")
        })
    }

    /// Every address on link `index`, both families, including the kernel's
    /// own (IPv6 link-local), in the kernel's order.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        let mut msg = AddressMessage::default();
        // With strict checking the kernel filters by ifindex itself.
        msg.header.index = index;
        self.dump(
            RouteNetlinkMessage::GetAddress(msg),
            || format!("dump addresses of link {index}"),
            |m| match m {
                RouteNetlinkMessage::NewAddress(m) if m.header.index == index => parse_address(&m),
                _ => None,
            },
        )
    }
}

/// The request of [`Handle::add_address`] (and [`crate::Batch::add_address`]).
pub(crate) fn add_address(index: u32, addr: IpNet, nodad: bool) -> Request {
    Request::new(
        RouteNetlinkMessage::NewAddress(address_request(index, addr, nodad)),
        NLM_F_CREATE | NLM_F_EXCL,
        format!("add address {addr} to link {index}"),
    )
}

/// The RTM_NEWADDR/RTM_DELADDR body. Like iproute2, IPv4 carries the address
/// as both IFA_LOCAL (the interface's address) and IFA_ADDRESS (the peer,
/// the same when not point-to-point); IPv6 needs only IFA_ADDRESS.
pub(crate) fn address_request(index: u32, addr: IpNet, nodad: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.scope = AddressScope::Universe;
    match addr.addr() {
        IpAddr::V4(_) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(addr.addr()));
        }
        IpAddr::V6(_) => {
            msg.header.family = AddressFamily::Inet6;
            if nodad {
                msg.header.flags = AddressHeaderFlags::Nodad;
            }
        }
    }
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    msg
}

/// The interface's own address: IFA_LOCAL when present (IPv4, where
/// IFA_ADDRESS is the peer), else IFA_ADDRESS.
fn parse_address(m: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attr in &m.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, m.header.prefix_len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn v6_nodad_golden_bytes() {
        let msg = address_request(9, "fd00::5/128".parse().unwrap(), true);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // ifaddrmsg: AF_INET6, /128, IFA_F_NODAD, scope universe, index 9
            10, 128, 2, 0, 9, 0, 0, 0,
            // IFA_ADDRESS fd00::5
            20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn v4_carries_local_and_address() {
        let msg = address_request(3, "10.1.2.3/32".parse().unwrap(), true);
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert!(msg.header.flags.is_empty(), "IPv4 has no DAD");
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            msg.attributes,
            vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)]
        );
    }
}

//! Links: veth creation with the peer born in its namespace, lookup, dump,
//! up, delete.

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use std::os::fd::{AsRawFd, RawFd};

use crate::error::{Error, Result};
use crate::ns::Netns;
use crate::socket::{Handle, Request};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

/// One end of a veth pair to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethEnd {
    /// Interface name, 1..=15 bytes.
    pub name: String,
    /// MAC address, set at creation so it never changes afterwards.
    pub mac: [u8; 6],
    /// MTU; 0 leaves the kernel's default.
    pub mtu: u32,
    /// `IFLA_IFALIAS`, e.g. to record which pod the host end belongs to.
    pub alias: Option<String>,
}

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// ifindex, unique within the namespace.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address when it is a 6-byte (Ethernet) address.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// `IFLA_IFALIAS`.
    pub alias: Option<String>,
    /// `IFLA_INFO_KIND`: "veth", "vxlan", …; `None` for devices without one
    /// (loopback, most physical NICs).
    pub kind: Option<String>,
    /// `IFLA_LINK_NETNSID`: set when the link's lower/peer device lives in
    /// another namespace (as seen from this one).
    pub link_netnsid: Option<i32>,
    /// `IFLA_LINK`: for a veth, the peer's ifindex (in the namespace named by
    /// `link_netnsid` when that is set).
    pub peer_index: Option<u32>,
}

impl Handle {
    /// Creates a veth pair: `host` in this handle's namespace, `peer`
    /// created directly inside `peer_ns` (`IFLA_NET_NS_FD` on the peer), so it
    /// is never moved and never visible here. Names, MACs and MTUs go in the
    /// one RTM_NEWLINK; both ends start down. EEXIST (is_exists) when the
    /// host name is taken here or the peer name in `peer_ns`.
    ///
    /// The kernel ignores IFLA_IFALIAS when creating a link, so an alias
    /// costs one more request per end that has one (for the peer, through a
    /// socket opened in `peer_ns`). An alias is therefore not atomic with the
    /// creation: after a crash in between, the pair exists without it.
    /// To save the host alias's round trip, leave `host.alias` `None` and
    /// put [`crate::Batch::set_alias`] first in the batch of host-side
    /// requests sent afterwards. (It is not sent together with the creation:
    /// when that fails with EEXIST the kernel would still run it, on a
    /// link that may not be ours.)
    pub fn create_veth(&mut self, host: &VethEnd, peer: &VethEnd, peer_ns: &Netns) -> Result<()> {
        self.create_veth_with(host, peer, peer_ns, false).map(drop)
    }

    /// [`Handle::create_veth`] that also returns the host end as the kernel
    /// created it (`NLM_F_ECHO`): its index, and in `peer_index` the peer's
    /// index inside `peer_ns` — what a caller would otherwise look up with
    /// two more requests. `None` when the kernel echoes nothing (kernels
    /// before 6.3 ignore `NLM_F_ECHO` on RTM_NEWLINK); callers then look
    /// the ends up by name. With `host_up`, as [`Handle::create_veth_host_up`].
    pub fn create_veth_echo(
        &mut self,
        host: &VethEnd,
        peer: &VethEnd,
        peer_ns: &Netns,
        host_up: bool,
    ) -> Result<Option<Link>> {
        self.create_veth_with(host, peer, peer_ns, host_up)
    }

    /// [`Handle::create_veth`] with the host end brought up by the creating
    /// request itself (IFF_UP in its ifinfomsg), saving a round trip. The
    /// peer cannot be: the kernel opens it before the two ends are joined,
    /// which fails with ENOTCONN, so the peer starts down.
    pub fn create_veth_host_up(
        &mut self,
        host: &VethEnd,
        peer: &VethEnd,
        peer_ns: &Netns,
    ) -> Result<()> {
        self.create_veth_with(host, peer, peer_ns, true).map(drop)
    }

    fn create_veth_with(
        &mut self,
        host: &VethEnd,
        peer: &VethEnd,
        peer_ns: &Netns,
        host_up: bool,
    ) -> Result<Option<Link>> {
        check_name(&host.name)?;
        check_name(&peer.name)?;
        let msg = veth_request(host, peer, peer_ns.fd().as_raw_fd(), host_up);
        let echoed = self.ack_collect(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            || {
                format!(
                    "create veth {} (peer {} in {})",
                    host.name,
                    peer.name,
                    peer_ns.path().display()
                )
            },
        )?;
        if let Some(alias) = &host.alias {
            self.set_alias_by_name(&host.name, alias)?;
        }
        if let Some(alias) = &peer.alias {
            Handle::in_netns(peer_ns)?.set_alias_by_name(&peer.name, alias)?;
        }
        Ok(echoed.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => {
                Some(parse_link(l)).filter(|l| l.name == host.name && l.peer_index.is_some())
            }
            _ => None,
        }))
    }

    /// Sets a link's alias (IFLA_IFALIAS); an empty alias removes it.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        self.request(set_alias(index, alias))
    }

    /// By name, to save looking up the index of a link just created.
    fn set_alias_by_name(&mut self, name: &str, alias: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("set alias of link {name}")
        })
    }

    /// Looks a link up by name; `None` when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let m = self.link_message(name, || format!("get link {name}"))?;
        Ok(m.as_ref().map(parse_link))
    }

    /// Looks a link up by ifindex; `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(skip_stats());
        let m = self.get_link(msg, || format!("get link {index}"))?;
        Ok(m.as_ref().map(parse_link))
    }

    /// The kernel's message for the link called `name`, for parsers that
    /// need more than [`Link`] (such as [`Handle::vxlan`]); `None` when
    /// there is none.
    pub(crate) fn link_message(
        &mut self,
        name: &str,
        op: impl Fn() -> String,
    ) -> Result<Option<LinkMessage>> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(skip_stats());
        self.get_link(msg, op)
    }

    fn get_link(
        &mut self,
        msg: LinkMessage,
        op: impl Fn() -> String,
    ) -> Result<Option<LinkMessage>> {
        match self.get(RouteNetlinkMessage::GetLink(msg), &op) {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(m)),
            Ok(other) => Err(Error::Protocol(format!(
                "{}: unexpected reply {other:?}",
                op()
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in this handle's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(skip_stats());
        self.dump(
            RouteNetlinkMessage::GetLink(msg),
            || "dump links".to_string(),
            |m| match m {
                RouteNetlinkMessage::NewLink(m) => Some(parse_link(&m)),
                _ => None,
            },
        )
    }

    /// Brings a link administratively up (IFF_UP).
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.request(set_up(index))
    }

    /// Deletes a link (for a veth, both ends). A link that is already gone
    /// gives an error whose [`Error::is_not_found`] is true.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.ack(RouteNetlinkMessage::DelLink(msg), 0, || {
            format!("delete link {index}")
        })
    }
}

/// The request of [`Handle::set_up`] (and [`crate::Batch::set_up`]).
pub(crate) fn set_up(index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    Request::new(
        RouteNetlinkMessage::SetLink(msg),
        0,
        format!("set link {index} up"),
    )
}

/// The request of [`crate::Batch::set_no_link_local`]: IPv6 address
/// generation mode "none", so the link gets no fe80:: address (nor its
/// duplicate address detection and MLD join) when it comes up. Must come
/// before the link goes up; the kernel refuses it at creation.
pub(crate) fn set_no_link_local(index: u32) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    Request::new(
        RouteNetlinkMessage::SetLink(msg),
        0,
        format!("set link {index} IPv6 address generation none"),
    )
}

/// The request of [`Handle::set_alias`] (and [`crate::Batch::set_alias`]).
pub(crate) fn set_alias(index: u32, alias: &str) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::IfAlias(alias.to_string()));
    Request::new(
        RouteNetlinkMessage::SetLink(msg),
        0,
        format!("set alias of link {index}"),
    )
}

/// The RTM_NEWLINK body for a veth pair; the peer is a nested ifinfomsg
/// carrying its own name, MAC, MTU and target namespace. Aliases are left
/// out: the kernel ignores them on creation.
pub(crate) fn veth_request(
    host: &VethEnd,
    peer: &VethEnd,
    peer_ns: RawFd,
    host_up: bool,
) -> LinkMessage {
    let mut peer_msg = end_message(peer, false);
    peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_ns));
    let mut msg = end_message(host, host_up);
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
    ]));
    msg
}

fn end_message(end: &VethEnd, up: bool) -> LinkMessage {
    let mut msg = LinkMessage::default();
    if up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    msg.attributes.push(LinkAttribute::IfName(end.name.clone()));
    msg.attributes
        .push(LinkAttribute::Address(end.mac.to_vec()));
    if end.mtu != 0 {
        msg.attributes.push(LinkAttribute::Mtu(end.mtu));
    }
    msg
}

/// Statistics are most of a link message's size and nothing here reads them.
fn skip_stats() -> LinkAttribute {
    LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > IFNAMSIZ_MAX || name.contains(['/', '\0']) {
        return Err(Error::Invalid(format!(
            "invalid interface name {name:?}: 1 to {IFNAMSIZ_MAX} bytes, no '/'"
        )));
    }
    Ok(())
}

pub(crate) fn parse_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        alias: None,
        kind: None,
        link_netnsid: None,
        peer_index: None,
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) => link.mac = a.as_slice().try_into().ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
            LinkAttribute::Link(i) => link.peer_index = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn end(name: &str, mac: u8, alias: Option<&str>) -> VethEnd {
        VethEnd {
            name: name.into(),
            mac: [0x02, 0, 0, 0, 0, mac],
            mtu: 1450,
            alias: alias.map(Into::into),
        }
    }

    #[test]
    fn veth_request_carries_both_ends() {
        let ns = std::fs::File::open("/dev/null").unwrap();
        let host = end("weft0123", 1, Some("pod/a"));
        let peer = end("eth0", 2, None);
        let msg = veth_request(&host, &peer, ns.as_raw_fd(), false);
        assert_eq!(
            &msg.attributes[..3],
            &[
                LinkAttribute::IfName("weft0123".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
                LinkAttribute::Mtu(1450),
            ]
        );
        let LinkAttribute::LinkInfo(info) = &msg.attributes[3] else {
            panic!("no IFLA_LINKINFO: {msg:?}");
        };
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = &info[1] else {
            panic!("no veth peer: {info:?}");
        };
        assert_eq!(
            p.attributes,
            vec![
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, 2]),
                LinkAttribute::Mtu(1450),
                LinkAttribute::NetNsFd(ns.as_raw_fd()),
            ]
        );
        assert!(msg.header.flags.is_empty());
    }

    #[test]
    fn veth_request_golden_bytes() {
        // Fixed fd so the bytes are stable; the layout is what `ip link add
        // h type veth peer name p netns <fd>` sends, minus MTU and alias.
        let host = VethEnd {
            name: "h".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 0,
            alias: None,
        };
        let peer = VethEnd {
            name: "p".into(),
            mac: [2, 0, 0, 0, 0, 2],
            mtu: 0,
            alias: None,
        };
        // fd 7 is only serialized, never used.
        let msg = veth_request(&host, &peer, 7, true);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // ifinfomsg: family 0, type 0, index 0, flags IFF_UP, change IFF_UP
            0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
            // IFLA_IFNAME "h\0"
            6, 0, 3, 0, b'h', 0, 0, 0,
            // IFLA_ADDRESS
            10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 0,
            // IFLA_LINKINFO (nested)
            68, 0, 18, 0,
            //   IFLA_INFO_KIND "veth\0"
            9, 0, 1, 0, b'v', b'e', b't', b'h', 0, 0, 0, 0,
            //   IFLA_INFO_DATA (nested)
            52, 0, 2, 0,
            //     VETH_INFO_PEER: ifinfomsg (down: see create_veth_host_up)
            //     + attributes
            48, 0, 1, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            6, 0, 3, 0, b'p', 0, 0, 0,
            10, 0, 1, 0, 2, 0, 0, 0, 0, 2, 0, 0,
            //     IFLA_NET_NS_FD 7
            8, 0, 28, 0, 7, 0, 0, 0,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn names_are_checked_before_sending() {
        assert!(check_name("eth0").is_ok());
        assert!(check_name("abcdefghijklmno").is_ok());
        assert!(matches!(
            check_name("abcdefghijklmnop"),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(check_name(""), Err(Error::Invalid(_))));
        assert!(matches!(check_name("a/b"), Err(Error::Invalid(_))));
    }
}

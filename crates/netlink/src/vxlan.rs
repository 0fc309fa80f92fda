//! VXLAN devices for the overlay: created with static forwarding only (no
//! multicast group, no learning), and read back so that a restarted agent
//! can tell whether the device it finds is the one it would create.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::error::{Error, Result};
use crate::link::{Link, check_name, parse_link};
use crate::socket::{Handle, Request};

/// The VXLAN device to create (`ip link add NAME type vxlan id VNI local
/// LOCAL dstport PORT [dev UNDERLAY] nolearning`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Interface name, 1..=15 bytes.
    pub name: String,
    /// VXLAN network identifier (24 bits: at most 16 777 215).
    pub vni: u32,
    /// Underlay source address of the encapsulated packets
    /// (IFLA_VXLAN_LOCAL, or IFLA_VXLAN_LOCAL6 for IPv6). Its family is the
    /// underlay's: FDB destinations must be of the same family.
    pub local: IpAddr,
    /// UDP destination port (IFLA_VXLAN_PORT), 4789 for IANA VXLAN, 8472 for
    /// the Linux legacy port that Flannel uses.
    pub port: u16,
    /// The underlay device (IFLA_VXLAN_LINK): pins encapsulated packets to
    /// it and lets the kernel cap the MTU by it. `None` leaves the route
    /// lookup to pick the device.
    pub underlay_index: Option<u32>,
    /// MTU; 0 leaves the kernel's default (with `underlay_index`, the
    /// underlay's MTU minus the encapsulation overhead). With
    /// `underlay_index`, an MTU above that is silently lowered to it by the
    /// kernel, so an adopting caller must ask for at most that much or its
    /// comparison with [`Link::mtu`] never matches.
    pub mtu: u32,
    /// MAC address (the VTEP MAC other nodes put in their FDB and neighbour
    /// entries); `None` lets the kernel pick a random one.
    pub mac: Option<[u8; 6]>,
    /// Learn remote VTEPs from received packets (IFLA_VXLAN_LEARNING).
    /// weft programs every entry statically and sets this to false.
    pub learning: bool,
}

/// The VXLAN attributes of an existing device that decide whether it can be
/// adopted; compare with [`VxlanSpec::info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanInfo {
    /// VXLAN network identifier (IFLA_VXLAN_ID).
    pub vni: u32,
    /// Underlay source address; `None` when the device has none.
    pub local: Option<IpAddr>,
    /// UDP destination port.
    pub port: u16,
    /// The underlay device's ifindex (IFLA_VXLAN_LINK); `None` when unset.
    pub underlay_index: Option<u32>,
    /// Whether the device learns remote VTEPs from received packets.
    pub learning: bool,
}

impl VxlanSpec {
    /// What [`Handle::vxlan`] reports for a device created from this spec.
    /// The MTU and MAC are in [`Link`] and compared there.
    pub fn info(&self) -> VxlanInfo {
        VxlanInfo {
            vni: self.vni,
            local: Some(self.local),
            port: self.port,
            underlay_index: self.underlay_index,
            learning: self.learning,
        }
    }
}

impl Handle {
    /// Creates a VXLAN device from `spec`, down (bring it up with
    /// [`Handle::set_up`] once found, e.g. with [`Handle::vxlan`]). No
    /// multicast group and no remote are set: remote VTEPs come only from
    /// FDB entries ([`Handle::add_fdb`]). EEXIST (is_exists) when a link of
    /// that name is there, whatever its kind.
    ///
    /// UDP checksums keep the kernel's defaults, which have changed between
    /// kernel versions (6.18 computes them for an IPv4 underlay; older
    /// kernels sent zero checksums); both ends accept either. IPv6 requires
    /// them and the kernel always computes them there.
    pub fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        check_name(&spec.name)?;
        self.request(create_vxlan(spec)?)
    }

    /// The VXLAN device called `name` and its VXLAN attributes; `None` when
    /// there is no link of that name. A link of another kind under that
    /// name is an [`Error::Invalid`] naming its kind: it is not weft's to
    /// delete.
    pub fn vxlan(&mut self, name: &str) -> Result<Option<(Link, VxlanInfo)>> {
        let op = || format!("get vxlan {name}");
        let Some(m) = self.link_message(name, op)? else {
            return Ok(None);
        };
        let link = parse_link(&m);
        match parse_vxlan(&m) {
            Some(info) => Ok(Some((link, info))),
            None => Err(Error::Invalid(format!(
                "{}: link {} is of kind {}, not vxlan",
                op(),
                link.index,
                link.kind.as_deref().unwrap_or("none"),
            ))),
        }
    }
}

/// The request of [`Handle::create_vxlan`]: NLM_F_CREATE|NLM_F_EXCL. Refuses
/// a VNI over 24 bits before anything is sent.
pub(crate) fn create_vxlan(spec: &VxlanSpec) -> Result<Request> {
    if spec.vni >= 1 << 24 {
        return Err(Error::Invalid(format!(
            "create vxlan {}: VNI {} does not fit in 24 bits",
            spec.name, spec.vni
        )));
    }
    Ok(Request::new(
        RouteNetlinkMessage::NewLink(vxlan_request(spec)),
        NLM_F_CREATE | NLM_F_EXCL,
        format!(
            "create vxlan {} id {} local {} dstport {}",
            spec.name, spec.vni, spec.local, spec.port
        ),
    ))
}

/// The RTM_NEWLINK body of a VXLAN device.
pub(crate) fn vxlan_request(spec: &VxlanSpec) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.clone()));
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if spec.mtu != 0 {
        msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
    }
    let mut data = vec![InfoVxlan::Id(spec.vni)];
    data.push(match spec.local {
        IpAddr::V4(a) => InfoVxlan::Local(a),
        IpAddr::V6(a) => InfoVxlan::Local6(a),
    });
    if let Some(index) = spec.underlay_index {
        data.push(InfoVxlan::Link(index));
    }
    data.push(InfoVxlan::Port(spec.port));
    data.push(InfoVxlan::Learning(spec.learning));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    msg
}

/// The VXLAN attributes of a link message; `None` when it is not a VXLAN
/// device (or carries no VNI, which every VXLAN device has).
pub(crate) fn parse_vxlan(m: &LinkMessage) -> Option<VxlanInfo> {
    let data = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        }),
        _ => None,
    })?;
    let mut vni = None;
    let mut info = VxlanInfo {
        vni: 0,
        local: None,
        port: 0,
        underlay_index: None,
        learning: false,
    };
    for attr in data {
        match attr {
            InfoVxlan::Id(id) => vni = Some(*id),
            InfoVxlan::Local(a) => info.local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => info.local = Some(IpAddr::V6(*a)),
            InfoVxlan::Port(p) => info.port = *p,
            // The kernel reports 0 when no underlay device is set.
            InfoVxlan::Link(i) => info.underlay_index = Some(*i).filter(|&i| i != 0),
            InfoVxlan::Learning(l) => info.learning = *l,
            _ => {}
        }
    }
    info.vni = vni?;
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn spec() -> VxlanSpec {
        VxlanSpec {
            name: "v".into(),
            vni: 1,
            local: "192.168.1.2".parse().unwrap(),
            port: 4789,
            underlay_index: Some(2),
            mtu: 1450,
            mac: Some([2, 0, 0, 0, 0, 1]),
            learning: false,
        }
    }

    fn bytes(msg: &LinkMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn golden_bytes() {
        // What `ip link add v address 02:00:00:00:00:01 mtu 1450 type vxlan
        // id 1 local 192.168.1.2 dev <2> dstport 4789 nolearning` sends.
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // ifinfomsg: down, nothing to change
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // IFLA_IFNAME "v\0"
            6, 0, 3, 0, b'v', 0, 0, 0,
            // IFLA_ADDRESS
            10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 0,
            // IFLA_MTU 1450
            8, 0, 4, 0, 0xaa, 0x05, 0, 0,
            // IFLA_LINKINFO (nested)
            60, 0, 18, 0,
            //   IFLA_INFO_KIND "vxlan\0"
            10, 0, 1, 0, b'v', b'x', b'l', b'a', b'n', 0, 0, 0,
            //   IFLA_INFO_DATA (nested)
            44, 0, 2, 0,
            //     IFLA_VXLAN_ID 1
            8, 0, 1, 0, 1, 0, 0, 0,
            //     IFLA_VXLAN_LOCAL 192.168.1.2
            8, 0, 4, 0, 192, 168, 1, 2,
            //     IFLA_VXLAN_LINK 2
            8, 0, 3, 0, 2, 0, 0, 0,
            //     IFLA_VXLAN_PORT 4789, network byte order
            6, 0, 15, 0, 0x12, 0xb5, 0, 0,
            //     IFLA_VXLAN_LEARNING 0
            5, 0, 7, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes(&vxlan_request(&spec())), want);
    }

    #[test]
    fn ipv6_underlay_uses_local6_and_optional_parts_are_left_out() {
        let s = VxlanSpec {
            local: "fd00::1".parse().unwrap(),
            underlay_index: None,
            mtu: 0,
            mac: None,
            ..spec()
        };
        let msg = vxlan_request(&s);
        assert_eq!(
            msg.attributes[..1],
            [LinkAttribute::IfName("v".into())],
            "no MAC, no MTU"
        );
        assert_eq!(
            msg.attributes[1],
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(1),
                    InfoVxlan::Local6("fd00::1".parse().unwrap()),
                    InfoVxlan::Port(4789),
                    InfoVxlan::Learning(false),
                ])),
            ])
        );
    }

    #[test]
    fn request_parses_back_to_the_spec() {
        for s in [
            spec(),
            VxlanSpec {
                local: "fd00::7".parse().unwrap(),
                underlay_index: None,
                learning: true,
                ..spec()
            },
        ] {
            // Through the bytes, as the kernel's reply would come.
            let buf = bytes(&vxlan_request(&s));
            let m = LinkMessage::parse(&buf[..]).unwrap();
            assert_eq!(parse_vxlan(&m), Some(s.info()));
            let link = parse_link(&m);
            assert_eq!(
                (link.mtu, link.mac, link.kind.as_deref()),
                (1450, s.mac, Some("vxlan"))
            );
        }
    }

    #[test]
    fn non_vxlan_links_have_no_vxlan_info() {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName("eth0".into()));
        assert_eq!(parse_vxlan(&m), None);
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        assert_eq!(parse_vxlan(&m), None);
    }

    #[test]
    fn vni_over_24_bits_is_refused_before_sending() {
        let s = VxlanSpec {
            vni: 1 << 24,
            ..spec()
        };
        let Err(e) = create_vxlan(&s) else {
            panic!("accepted VNI 2^24");
        };
        assert!(matches!(e, Error::Invalid(_)), "{e}");
        assert!(
            create_vxlan(&VxlanSpec {
                vni: (1 << 24) - 1,
                ..spec()
            })
            .is_ok()
        );
    }
}

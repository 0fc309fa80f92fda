//! Routes in a routing table (the main one unless told otherwise).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope as NlScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::socket::{Handle, Request};

/// `RTPROT_BOOT`: what `ip route add` uses; the default for [`Route::new`].
pub const RTPROT_BOOT: u8 = 3;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;

/// An address family.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Family {
    /// IPv4 (AF_INET).
    V4,
    /// IPv6 (AF_INET6).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn netlink(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }
}

/// A route's scope: how far away its destination is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum RouteScope {
    /// Anywhere (gatewayed routes, and every IPv6 route: IPv6 has no route
    /// scopes, so the kernel reports Universe whatever was set).
    Universe,
    /// Directly on the link (a device route with no gateway).
    Link,
    /// This host.
    Host,
}

/// A unicast route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix; `0.0.0.0/0` or `::/0` for a default route.
    pub dst: IpNet,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Scope (IPv4 only; see [`RouteScope::Universe`]).
    pub scope: RouteScope,
    /// RTNH_F_ONLINK: the gateway is on the link even though no address or
    /// route covers it (a link-local gateway such as 169.254.1.1).
    pub onlink: bool,
    /// `rtm_protocol`, which says who installed the route; [`RTPROT_BOOT`]
    /// by default, the agent uses its own value to find its routes.
    pub protocol: u8,
    /// Routing table; [`RT_TABLE_MAIN`] by default.
    pub table: u32,
    /// Path MTU (RTAX_MTU), if set.
    pub mtu: Option<u32>,
}

impl Default for Route {
    /// An IPv4 default route (`0.0.0.0/0`), universe scope, main table,
    /// protocol boot, no gateway or interface: the base for
    /// `Route { dst, oif, ..Route::default() }`.
    fn default() -> Route {
        Route {
            dst: IpNet::default(),
            gateway: None,
            oif: None,
            scope: RouteScope::Universe,
            onlink: false,
            protocol: RTPROT_BOOT,
            table: RT_TABLE_MAIN,
            mtu: None,
        }
    }
}

impl Route {
    /// A universe-scope route to `dst` in the main table, protocol boot, no
    /// gateway or interface yet.
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst,
            ..Route::default()
        }
    }

    /// A link-scope device route (`ip route add dst dev oif scope link`).
    pub fn device(dst: IpNet, oif: u32) -> Route {
        Route {
            oif: Some(oif),
            scope: RouteScope::Link,
            ..Route::new(dst)
        }
    }

    /// A route via `gateway` out of `oif` (`ip route add dst via gw dev oif`).
    pub fn via(dst: IpNet, gateway: IpAddr, oif: u32) -> Route {
        Route {
            gateway: Some(gateway),
            oif: Some(oif),
            ..Route::new(dst)
        }
    }

    /// The route's address family.
    pub fn family(&self) -> Family {
        Family::of(self.dst.addr())
    }
}

impl Handle {
    /// Adds a route (NLM_F_CREATE|NLM_F_EXCL): is_exists() when a route to
    /// the same destination (and, for IPv6, metric) is already there.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        self.request(new_route(route, false))
    }

    /// Adds a route or replaces the one to the same destination
    /// (NLM_F_CREATE|NLM_F_REPLACE).
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        self.request(new_route(route, true))
    }

    /// Deletes the route that matches `route`'s destination, table,
    /// protocol, scope, gateway and interface; is_not_found() (ESRCH) when
    /// there is none. The MTU is not matched.
    pub fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.request(delete_route(route))
    }

    /// The unicast routes of the main table for one family.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>> {
        self.routes_in_table(family, RT_TABLE_MAIN)
    }

    /// The unicast routes of `table` for one family. Routes that [`Route`]
    /// cannot describe are left out: multipath routes, non-unicast types
    /// (local, broadcast, blackhole, …) and scopes other than universe,
    /// link and host.
    pub fn routes_in_table(&mut self, family: Family, table: u32) -> Result<Vec<Route>> {
        self.dump_routes(family, table, None)
    }

    /// The unicast routes of the main table for one family that were
    /// installed with `rtm_protocol` `protocol`: how an agent finds the
    /// routes it tagged with its own protocol number among the plugin's
    /// per-pod routes, without decoding those.
    pub fn routes_with_protocol(&mut self, family: Family, protocol: u8) -> Result<Vec<Route>> {
        self.dump_routes(family, RT_TABLE_MAIN, Some(protocol))
    }

    fn dump_routes(
        &mut self,
        family: Family,
        table: u32,
        protocol: Option<u8>,
    ) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.netlink();
        // With strict checking the kernel filters by table and protocol
        // itself; without it everything comes and the filter below applies.
        msg.attributes.push(RouteAttribute::Table(table));
        if let Some(p) = protocol {
            msg.header.protocol = RouteProtocol::from(p);
        }
        self.dump(
            RouteNetlinkMessage::GetRoute(msg),
            || match protocol {
                Some(p) => format!("dump {family:?} routes of table {table} proto {p}"),
                None => format!("dump {family:?} routes of table {table}"),
            },
            |m| match m {
                RouteNetlinkMessage::NewRoute(m) => parse_route(&m).filter(|r| {
                    r.table == table
                        && r.family() == family
                        && protocol.is_none_or(|p| r.protocol == p)
                }),
                _ => None,
            },
        )
    }
}

/// The request of [`Handle::add_route`] (NLM_F_EXCL) or, with `replace`,
/// [`Handle::replace_route`] (NLM_F_REPLACE); the same for a
/// [`crate::Batch`].
pub(crate) fn new_route(route: &Route, replace: bool) -> Request {
    let (flag, verb) = if replace {
        (NLM_F_REPLACE, "replace")
    } else {
        (NLM_F_EXCL, "add")
    };
    Request::new(
        RouteNetlinkMessage::NewRoute(route_request(route, false)),
        NLM_F_CREATE | flag,
        format!("{verb} route {}", describe(route)),
    )
}

/// The request of [`Handle::delete_route`] (and
/// [`crate::Batch::delete_route`]).
pub(crate) fn delete_route(route: &Route) -> Request {
    Request::new(
        RouteNetlinkMessage::DelRoute(route_request(route, true)),
        0,
        format!("delete route {}", describe(route)),
    )
}

/// The RTM_NEWROUTE/RTM_DELROUTE body. The table goes both in the header
/// (when it fits in a byte) and in RTA_TABLE, as iproute2 does.
pub(crate) fn route_request(route: &Route, delete: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = route.family().netlink();
    h.destination_prefix_length = route.dst.prefix_len();
    h.table = u8::try_from(route.table).unwrap_or(0);
    h.protocol = RouteProtocol::from(route.protocol);
    h.scope = match route.scope {
        RouteScope::Universe => NlScope::Universe,
        RouteScope::Link => NlScope::Link,
        RouteScope::Host => NlScope::Host,
    };
    h.kind = RouteType::Unicast;
    if route.onlink {
        h.flags = RouteFlags::Onlink;
    }
    if route.dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route.dst.addr().into()));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    msg.attributes.push(RouteAttribute::Table(route.table));
    // A delete with metrics only matches a route with exactly those
    // metrics; the MTU is not part of a route's identity.
    if let (Some(mtu), false) = (route.mtu, delete) {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    msg
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
    let h = &m.header;
    if h.kind != RouteType::Unicast {
        return None;
    }
    let scope = match h.scope {
        NlScope::Universe => RouteScope::Universe,
        NlScope::Link => RouteScope::Link,
        NlScope::Host => RouteScope::Host,
        _ => return None,
    };
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut route = Route {
        dst: IpNet::new(unspecified, h.destination_prefix_length).ok()?,
        gateway: None,
        oif: None,
        scope,
        onlink: h.flags.contains(RouteFlags::Onlink),
        protocol: u8::from(h.protocol),
        table: u32::from(h.table),
        mtu: None,
    };
    for attr in &m.attributes {
        match attr {
            RouteAttribute::Destination(a) => {
                route.dst = IpNet::new(ip(a)?, h.destination_prefix_length).ok()?;
            }
            RouteAttribute::Gateway(a) => route.gateway = Some(ip(a)?),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Table(t) => route.table = *t,
            RouteAttribute::MultiPath(_) => return None,
            RouteAttribute::Metrics(ms) => {
                route.mtu = ms.iter().find_map(|m| match m {
                    RouteMetric::Mtu(v) => Some(*v),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Some(route)
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// `ip route`-style text for error messages.
fn describe(r: &Route) -> String {
    let mut s = r.dst.to_string();
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev {oif}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    if r.table != RT_TABLE_MAIN {
        s.push_str(&format!(" table {}", r.table));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn onlink_default_golden_bytes() {
        let mut r = Route::via(
            "0.0.0.0/0".parse().unwrap(),
            "169.254.1.1".parse().unwrap(),
            2,
        );
        r.onlink = true;
        let msg = route_request(&r, false);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // rtmsg: AF_INET, dst /0, src /0, tos 0, table main, proto boot,
            // scope universe, type unicast, flags RTNH_F_ONLINK
            2, 0, 0, 0, 254, 3, 0, 1, 4, 0, 0, 0,
            // RTA_GATEWAY 169.254.1.1
            8, 0, 5, 0, 169, 254, 1, 1,
            // RTA_OIF 2
            8, 0, 4, 0, 2, 0, 0, 0,
            // RTA_TABLE 254
            8, 0, 15, 0, 254, 0, 0, 0,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn request_round_trips_through_parse() {
        let mut r = Route::device("10.1.0.7/32".parse().unwrap(), 5);
        r.mtu = Some(1400);
        r.protocol = 0x57;
        assert_eq!(parse_route(&route_request(&r, false)), Some(r.clone()));
        // A delete does not match on metrics.
        let del = route_request(&r, true);
        assert!(
            !del.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Metrics(_)))
        );
    }

    #[test]
    fn default_is_a_main_table_boot_route() {
        let r = Route::default();
        assert_eq!(r.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert_eq!(
            (r.protocol, r.table, r.scope),
            (RTPROT_BOOT, RT_TABLE_MAIN, RouteScope::Universe)
        );
        assert_eq!(Route::new(r.dst), r);
    }

    #[test]
    fn big_table_ids_go_in_the_attribute_only() {
        let mut r = Route::new("fd00::/64".parse().unwrap());
        r.table = 1000;
        let msg = route_request(&r, false);
        assert_eq!(msg.header.table, 0);
        assert!(msg.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(parse_route(&msg).map(|p| p.table), Some(1000));
    }

    #[test]
    fn describes_like_ip_route() {
        let mut r = Route::via("::/0".parse().unwrap(), "fe80::1".parse().unwrap(), 3);
        r.onlink = true;
        assert_eq!(describe(&r), "::/0 via fe80::1 dev 3 onlink");
    }
}

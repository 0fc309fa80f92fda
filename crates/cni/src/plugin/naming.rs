//! Names, addresses and MACs of a routed attachment, derived so that every
//! invocation (ADD, CHECK, DEL, GC) finds the same objects without state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// Prefix of every host-side interface weft creates.
pub const HOST_IF_PREFIX: &str = "weft";

/// The pod's IPv4 default gateway: link-local, never routed, the same in
/// every pod; the host side answers for it through a static neighbour entry.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The pod's IPv6 default gateway (link-local).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The MAC of every host-side veth. Each veth is its own L2 segment, so one
/// fixed address is safe and keeps the pods' gateway neighbour entries
/// identical (Calico does the same).
pub const HOST_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0xee];

fn digest(container_id: &str, ifname: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(container_id.as_bytes());
    h.update([0]);
    h.update(ifname.as_bytes());
    h.finalize().into()
}

/// The host-side interface name: `weft` + 11 hex digits of a hash of the
/// container ID and interface name (15 bytes, the kernel's limit).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let d = digest(container_id, ifname);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HOST_IF_PREFIX}{}", &hex[..11])
}

/// The pod interface's MAC: locally administered, unicast, derived from the
/// attachment so a repeated ADD gives the same one.
pub fn pod_mac(container_id: &str, ifname: &str) -> [u8; 6] {
    let d = digest(container_id, ifname);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&d[16..22]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

/// The alias stored on the host-side veth, naming its owner so that GC can
/// find leftovers of this network: `weft:<network>:<containerID>:<ifname>`.
/// None of the three parts can contain ':'.
pub fn host_alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("weft:{network}:{container_id}:{ifname}")
}

/// Splits an alias made by [`host_alias`] into (network, container ID, ifname).
pub fn parse_host_alias(alias: &str) -> Option<(&str, &str, &str)> {
    let rest = alias.strip_prefix("weft:")?;
    let (network, rest) = rest.split_once(':')?;
    let (cid, ifname) = rest.split_once(':')?;
    Some((network, cid, ifname))
}

/// The gateway for an address's family.
pub fn gateway_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(GATEWAY_V4),
        IpAddr::V6(_) => IpAddr::V6(GATEWAY_V6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_15_bytes_and_stable() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("weft"));
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_ne!(a, host_ifname("0123456789abcdef", "eth1"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
    }

    #[test]
    fn pod_macs_are_local_unicast() {
        let m = pod_mac("c", "eth0");
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn alias_round_trips() {
        let a = host_alias("k8s-pod-network", "abc.def_1", "eth0");
        assert_eq!(
            parse_host_alias(&a),
            Some(("k8s-pod-network", "abc.def_1", "eth0"))
        );
        assert_eq!(parse_host_alias("something else"), None);
    }
}

//! The agent's side of leak-freedom: addresses reserved in IPAM whose pod is
//! gone from the model are released.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};
use weft_ipam::{Reservation, Store};

use crate::config::ClusterView;
use crate::error::Result;

/// Releases, in one commit, the reservations of `store` whose addresses
/// belong to no pod of node `node_name` in `view` and that are older than
/// `grace`, and returns them.
///
/// The grace period covers a pod being created: the plugin reserves its
/// address before the address reaches the model. A reservation is kept as
/// long as any of its addresses (one per family) is a pod's, since a
/// single-stack status may list only one. When `view` does not contain
/// `node_name` at all, nothing is released: such a view is not (yet) the
/// cluster this node belongs to, and trusting it would free every address.
pub fn sweep(
    store: &Store,
    view: &ClusterView,
    node_name: &str,
    grace: Duration,
    now: SystemTime,
) -> Result<Vec<Reservation>> {
    if !view.nodes.iter().any(|n| n.name == node_name) {
        warn!(
            node = node_name,
            revision = view.revision,
            "sweep skipped: this node is not in the view"
        );
        return Ok(Vec::new());
    }
    let in_use: HashSet<IpAddr> = view
        .pods
        .iter()
        .filter(|p| p.node_name.as_deref() == Some(node_name) && !p.host_network)
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let released = store.retain(|r| {
        // A clock that went backwards makes the age 0: kept.
        let young = now.saturating_sub(r.created) < grace.as_secs();
        young || r.ips.iter().any(|ip| in_use.contains(ip))
    })?;
    for r in &released {
        info!(container = %r.attachment.container_id, ifname = %r.attachment.ifname,
            ips = ?r.ips, "released addresses of a pod gone from the model");
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{node, pod};
    use weft_ipam::{Attachment, Pool};

    #[test]
    fn releases_only_old_reservations_of_gone_pods() {
        let dir = weft_testkit::TempDir::new("agent-sweep").unwrap();
        let store = Store::open(dir.path(), "weft").unwrap();
        let pool = Pool::new(vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd00:10:244:1::/64".parse().unwrap(),
        ])
        .unwrap();
        let alive = store
            .allocate(&Attachment::new("alive", "eth0"), &pool)
            .unwrap();
        let gone = store
            .allocate(&Attachment::new("gone", "eth0"), &pool)
            .unwrap();
        let v6only = store
            .allocate(&Attachment::new("v6only", "eth0"), &pool)
            .unwrap();
        let elsewhere = store
            .allocate(&Attachment::new("elsewhere", "eth0"), &pool)
            .unwrap();
        let ips = |a: &weft_ipam::Allocation| -> Vec<String> {
            a.ips.iter().map(ToString::to_string).collect()
        };
        let (alive_ips, v6_ip, elsewhere_ips) =
            (ips(&alive), ips(&v6only)[1].clone(), ips(&elsewhere));
        let view = ClusterView {
            revision: 3,
            nodes: vec![node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true)],
            pods: vec![
                pod(
                    "a",
                    "n1",
                    &alive_ips.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
                // Status lists only the IPv6 address: still in use.
                pod("b", "n1", &[&v6_ip]),
                // The same addresses on another node's pod do not count.
                pod(
                    "c",
                    "n2",
                    &elsewhere_ips.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
            ],
        };
        let grace = Duration::from_secs(60);
        // Within the grace period nothing goes.
        let now = SystemTime::now();
        assert!(sweep(&store, &view, "n1", grace, now).unwrap().is_empty());
        // A view without this node is not trusted.
        let later = now + Duration::from_secs(3600);
        let foreign = ClusterView {
            nodes: Vec::new(),
            ..view.clone()
        };
        assert!(
            sweep(&store, &foreign, "n1", grace, later)
                .unwrap()
                .is_empty()
        );

        let mut released: Vec<String> = sweep(&store, &view, "n1", grace, later)
            .unwrap()
            .into_iter()
            .map(|r| r.attachment.container_id)
            .collect();
        released.sort();
        assert_eq!(released, vec!["elsewhere", "gone"]);
        assert_eq!(
            store.get(&Attachment::new("gone", "eth0")).unwrap(),
            None,
            "{:?}",
            gone.ips
        );
        assert_eq!(store.list().unwrap().len(), 2);
    }
}

//! Keeps this node's BPF fast path (`weft_bpf`) in step with the node:
//! `from_pod` on every pod veth, `to_pod` on the underlay interface and the
//! VXLAN device, the local pod map from the plugin's permanent neighbour
//! entries (pod address → veth and MAC) restricted to the pods the policy
//! pass found open, and the remote CIDR map from the desired routes.
//!
//! The programs and maps are this process's: a restarted agent loads new
//! ones and replaces the filters on its first pass (the old programs keep
//! forwarding until then, with the maps they had). Flows the old maps knew
//! then take the stack, where conntrack picks them up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{Context, Result};
use tracing::{info, warn};
use weft_agent::{Desired, RouteDev};
use weft_bpf::{FastPath, LocalPod, Remote, VxlanEncap};
use weft_netlink::Handle;

/// Host-side veth names the plugin gives pods.
const POD_VETH_PREFIX: &str = "weft";

/// What one fast path pass did, for the pass summary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FastPathReport {
    /// Open local pods in the map.
    pub open_pods: usize,
    /// Remote pod CIDRs in the map.
    pub remote_cidrs: usize,
    /// Filters attached this pass.
    pub attached: usize,
}

/// What the program needs to encapsulate for the peer whose overlay gateway
/// is `gateway` itself: over an IPv4 underlay, the peer's VTEP MAC (its
/// neighbour entry) and underlay address (its FDB entry). `None` (IPv6
/// underlay, or an entry missing) leaves encapsulation to the VXLAN device.
fn vxlan_encap(want: &Desired, gateway: IpAddr) -> Option<VxlanEncap> {
    let spec = want.vxlan.as_ref()?;
    let IpAddr::V4(local) = spec.local else {
        return None;
    };
    let peer_mac = want.neighbours.iter().find(|n| n.ip == gateway)?.mac;
    let IpAddr::V4(peer) = want.fdb.iter().find(|f| f.mac == peer_mac)?.dst else {
        return None;
    };
    Some(VxlanEncap {
        underlay_ifindex: want.underlay_index,
        local,
        peer,
        local_mac: spec.mac?,
        peer_mac,
        vni: spec.vni,
        port: spec.port,
    })
}

/// The fast path and the links its programs are attached to.
pub struct FastPathState {
    fp: FastPath,
    handle: Handle,
    attached: BTreeSet<u32>,
}

impl FastPathState {
    /// Loads the programs (in the calling thread's namespace) over the
    /// maps of a fast path already running here (a restart: its flows stay
    /// fast), or over new maps.
    pub fn new() -> Result<FastPathState> {
        let mut handle = Handle::new().context("open netlink")?;
        let mut fp = None;
        for link in handle.links().context("list links")? {
            let Some((id, name)) = handle
                .bpf_ingress_program(link.index)
                .with_context(|| format!("list filters of {}", link.name))?
            else {
                continue;
            };
            if !name.starts_with("weft_") {
                continue;
            }
            // Opening another process's program by ID needs CAP_SYS_ADMIN;
            // without it the new maps start empty and the flows the old ones
            // knew take the stack.
            match FastPath::adopt(id) {
                Ok(Some(adopted)) => {
                    info!(
                        link = link.name,
                        program = id,
                        "took over the running fast path's maps"
                    );
                    fp = Some(adopted);
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "cannot take over the running fast path's maps; starting with empty ones");
                    break;
                }
            }
        }
        let fp = match fp {
            Some(fp) => fp,
            None => FastPath::new().context("load the BPF fast path")?,
        };
        Ok(FastPathState {
            fp,
            handle,
            attached: BTreeSet::new(),
        })
    }

    /// With the fast path off: removes weft's programs from every link, so
    /// that none keeps running with maps nobody updates any more (a pod a
    /// policy comes to select must not stay fast). Returns how many.
    pub fn detach_all() -> Result<usize> {
        let mut handle = Handle::new().context("open netlink")?;
        let mut removed = 0;
        for link in handle.links().context("list links")? {
            let ours = handle
                .bpf_ingress_program(link.index)
                .with_context(|| format!("list filters of {}", link.name))?
                .is_some_and(|(_, name)| name.starts_with("weft_"));
            if ours {
                handle
                    .detach_bpf_ingress(link.index)
                    .with_context(|| format!("detach the fast path from {}", link.name))?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(links = removed, "fast path off: removed its programs");
        }
        Ok(removed)
    }

    /// One pass: maps to the node's state, programs on every link that
    /// needs one.
    pub fn sync(&mut self, want: &Desired, open: &BTreeSet<IpAddr>) -> Result<FastPathReport> {
        let links = self.handle.links().context("list links")?;
        let present: BTreeSet<u32> = links.iter().map(|l| l.index).collect();
        self.attached.retain(|i| present.contains(i));

        // Pod veths by ifindex, with their MAC (the pod's gateway MAC).
        let pod_links: BTreeMap<u32, [u8; 6]> = links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("veth") && l.name.starts_with(POD_VETH_PREFIX))
            .map(|l| (l.index, l.mac.unwrap_or_default()))
            .collect();
        let mut local = BTreeMap::new();
        let mut neighbours = self.handle.neighbours_v4().context("list neighbours")?;
        neighbours.extend(self.handle.neighbours_v6().context("list neighbours")?);
        for n in neighbours {
            let Some(host_mac) = pod_links.get(&n.index) else {
                continue;
            };
            if n.permanent && open.contains(&n.ip) {
                local.insert(
                    n.ip,
                    LocalPod {
                        host_ifindex: n.index,
                        pod_mac: n.mac,
                        host_mac: *host_mac,
                        open: true,
                    },
                );
            }
        }
        let vxlan_index = links
            .iter()
            .find(|l| l.name == want.vxlan_name)
            .map(|l| l.index);
        let mut remote = BTreeMap::new();
        for route in &want.routes {
            let how = match route.dev {
                RouteDev::Underlay => Some(Remote::Route {
                    ifindex: want.underlay_index,
                }),
                RouteDev::Vxlan => vxlan_encap(want, route.gateway)
                    .map(Remote::Vxlan)
                    .or(vxlan_index.map(|ifindex| Remote::Route { ifindex })),
            };
            if let Some(how) = how {
                remote.insert(route.dst, how);
            }
        }
        self.fp
            .sync_local(&local)
            .context("update the local pod map")?;
        self.fp
            .sync_remote(&remote)
            .context("update the remote CIDR map")?;

        let mut attached = 0;
        let uplinks = [Some(want.underlay_index), vxlan_index];
        let wanted = pod_links
            .keys()
            .map(|i| (*i, true))
            .chain(uplinks.into_iter().flatten().map(|i| (i, false)));
        for (index, from_pod) in wanted {
            if self.attached.contains(&index) {
                continue;
            }
            let (prog, name) = if from_pod {
                (self.fp.from_pod(), "weft_from_pod")
            } else {
                (self.fp.to_pod(), "weft_to_pod")
            };
            self.handle
                .ensure_clsact(index)
                .and_then(|()| self.handle.attach_bpf_ingress(index, prog.raw_fd(), name))
                .with_context(|| format!("attach {name} to link {index}"))?;
            self.attached.insert(index);
            attached += 1;
        }
        let report = FastPathReport {
            open_pods: local.len(),
            remote_cidrs: remote.len(),
            attached,
        };
        if attached > 0 {
            info!(?report, "fast path attached");
        }
        Ok(report)
    }
}

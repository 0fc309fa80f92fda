//! An in-memory [`Kernel`] that records every change: for unit tests of the
//! reconciler here and of its callers (`weftd`), without root.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use weft_netlink::{
    CtEntry, Family, FdbEntry, Neighbour, NftBatch, RT_TABLE_MAIN, Route, VxlanSpec, format_mac,
};

use crate::error::Result;
use crate::kernel::{Kernel, LinkState};
use crate::nft::{HASH_PREFIX, hash_from_listing};
use crate::service::UdpFlush;
use crate::stamped::hash_from_stamp;

/// EEXIST, as the kernel reports a duplicate.
const EEXIST: i32 = 17;
/// ENOENT, as the kernel reports a missing object.
const ENOENT: i32 = 2;

/// Kernel state kept in memory. Fields are public so tests can set up a
/// "kernel as found" and inspect the result; [`FakeKernel::changes`] lists
/// every mutating call in order.
#[derive(Clone, Debug, Default)]
pub struct FakeKernel {
    /// Links.
    pub links: Vec<LinkState>,
    /// Addresses per ifindex.
    pub addresses: BTreeMap<u32, Vec<IpNet>>,
    /// Routes of the main table, any protocol.
    pub routes: Vec<Route>,
    /// Neighbour entries.
    pub neighbours: Vec<Neighbour>,
    /// FDB entries.
    pub fdb: Vec<FdbEntry>,
    /// Sysctls by key; a missing key reads as "0".
    pub sysctls: BTreeMap<String, String>,
    /// The last script applied to nft.
    pub nft_script: Option<String>,
    /// Every script applied to the policy table, in order.
    pub policy_scripts: Vec<String>,
    /// The stamp of the policy table: the hash in the last applied policy
    /// script; set it to `None` to play a table removed behind the agent.
    pub policy_hash: Option<String>,
    /// Makes the next policy transaction fail (the kernel refusing it).
    pub fail_next_policy: bool,
    /// Every script applied to the proxy table, in order.
    pub proxy_scripts: Vec<String>,
    /// The stamp of the proxy table, as [`Self::policy_hash`].
    pub proxy_hash: Option<String>,
    /// Every netlink transaction committed on the proxy table, in order.
    pub proxy_batches: Vec<NftBatch>,
    /// Makes the next netlink transaction on the proxy table fail.
    pub fail_next_proxy_batch: bool,
    /// Every conntrack deletion, in order.
    pub conntrack_deletes: Vec<UdpFlush>,
    /// Makes the next conntrack deletion fail.
    pub fail_next_conntrack: bool,
    /// The conntrack table's UDP entries, as dumps list them; removals
    /// take entries out.
    pub conntrack: Vec<CtEntry>,
    /// Every conntrack entry removed one by one, in order.
    pub conntrack_removed: Vec<CtEntry>,
    /// Conntrack dumps run.
    pub conntrack_dumps: usize,
    /// Every mutating call, e.g. `replace route 10.244.2.0/24`.
    pub changes: Vec<String>,
    /// The highest ifindex handed out: like the kernel, a deleted link's
    /// index is not reused at once.
    last_index: u32,
}

fn not_found(op: String) -> crate::Error {
    weft_netlink::Error::kernel(op, ENOENT).into()
}

impl FakeKernel {
    /// A kernel with only an underlay link (`index`, `name`, `mtu`) holding
    /// `addrs`.
    pub fn with_underlay(index: u32, name: &str, mtu: u32, addrs: &[IpNet]) -> FakeKernel {
        let mut k = FakeKernel::default();
        k.links.push(LinkState {
            index,
            name: name.to_string(),
            mtu,
            up: true,
            mac: Some([0x02, 0, 0, 0, 0, index as u8]),
            kind: Some("veth".into()),
            vxlan: None,
        });
        k.addresses.insert(index, addrs.to_vec());
        k
    }

    fn record(&mut self, change: String) {
        self.changes.push(change);
    }

    fn link_mut(&mut self, index: u32) -> Result<&mut LinkState> {
        self.links
            .iter_mut()
            .find(|l| l.index == index)
            .ok_or_else(|| not_found(format!("find link {index}")))
    }
}

impl Kernel for FakeKernel {
    fn links(&mut self) -> Result<Vec<LinkState>> {
        Ok(self.links.clone())
    }

    fn link(&mut self, name: &str) -> Result<Option<LinkState>> {
        Ok(self.links.iter().find(|l| l.name == name).cloned())
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        let op = format!("create vxlan {}", spec.name);
        if self.links.iter().any(|l| l.name == spec.name) {
            return Err(weft_netlink::Error::kernel(op, EEXIST).into());
        }
        let highest = self.links.iter().map(|l| l.index).max().unwrap_or(1);
        self.last_index = self.last_index.max(highest) + 1;
        let index = self.last_index;
        self.links.push(LinkState {
            index,
            name: spec.name.clone(),
            mtu: if spec.mtu == 0 { 1450 } else { spec.mtu },
            up: false,
            mac: spec.mac,
            kind: Some("vxlan".into()),
            vxlan: Some(spec.info()),
        });
        self.record(op);
        Ok(())
    }

    fn delete_link(&mut self, index: u32) -> Result<()> {
        let before = self.links.len();
        self.links.retain(|l| l.index != index);
        if self.links.len() == before {
            return Err(not_found(format!("delete link {index}")));
        }
        // The kernel takes everything on the link with it.
        self.addresses.remove(&index);
        self.routes.retain(|r| r.oif != Some(index));
        self.neighbours.retain(|n| n.index != index);
        self.fdb.retain(|e| e.index != index);
        self.record(format!("delete link {index}"));
        Ok(())
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.link_mut(index)?.mtu = mtu;
        self.record(format!("set mtu {mtu} on {index}"));
        Ok(())
    }

    fn set_up(&mut self, index: u32) -> Result<()> {
        self.link_mut(index)?.up = true;
        self.record(format!("set up {index}"));
        Ok(())
    }

    fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        Ok(self.addresses.get(&index).cloned().unwrap_or_default())
    }

    fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        self.addresses.entry(index).or_default().push(addr);
        self.record(format!("add address {addr} on {index}"));
        Ok(())
    }

    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        let list = self.addresses.entry(index).or_default();
        let before = list.len();
        list.retain(|a| *a != addr);
        if list.len() == before {
            return Err(not_found(format!("delete address {addr}")));
        }
        self.record(format!("delete address {addr} on {index}"));
        Ok(())
    }

    fn routes(&mut self, family: Family, protocol: u8) -> Result<Vec<Route>> {
        Ok(self
            .routes
            .iter()
            .filter(|r| r.family() == family && r.protocol == protocol && r.table == RT_TABLE_MAIN)
            .cloned()
            .collect())
    }

    fn replace_route(&mut self, route: &Route) -> Result<()> {
        // NLM_F_REPLACE replaces the route to the same destination.
        match self
            .routes
            .iter_mut()
            .find(|r| r.dst == route.dst && r.table == route.table)
        {
            Some(old) => *old = route.clone(),
            None => self.routes.push(route.clone()),
        }
        self.record(format!(
            "replace route {} via {:?}",
            route.dst, route.gateway
        ));
        Ok(())
    }

    fn delete_route(&mut self, route: &Route) -> Result<()> {
        let before = self.routes.len();
        self.routes
            .retain(|r| !(r.dst == route.dst && r.gateway == route.gateway && r.oif == route.oif));
        if self.routes.len() == before {
            return Err(not_found(format!("delete route {}", route.dst)));
        }
        self.record(format!("delete route {}", route.dst));
        Ok(())
    }

    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        Ok(self
            .neighbours
            .iter()
            .filter(|n| n.index == index)
            .cloned()
            .collect())
    }

    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        self.neighbours
            .retain(|o| !(o.index == n.index && o.ip == n.ip));
        self.neighbours.push(n.clone());
        self.record(format!(
            "add neighbour {} lladdr {}",
            n.ip,
            format_mac(&n.mac)
        ));
        Ok(())
    }

    fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let before = self.neighbours.len();
        self.neighbours
            .retain(|o| !(o.index == index && o.ip == ip));
        if self.neighbours.len() == before {
            return Err(not_found(format!("delete neighbour {ip}")));
        }
        self.record(format!("delete neighbour {ip}"));
        Ok(())
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        Ok(self
            .fdb
            .iter()
            .filter(|e| e.index == index)
            .cloned()
            .collect())
    }

    fn replace_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.fdb
            .retain(|o| !(o.index == entry.index && o.mac == entry.mac));
        self.fdb.push(entry.clone());
        self.record(format!(
            "replace fdb {} dst {}",
            format_mac(&entry.mac),
            entry.dst
        ));
        Ok(())
    }

    fn delete_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        let before = self.fdb.len();
        self.fdb.retain(|o| o != entry);
        if self.fdb.len() == before {
            return Err(not_found(format!("delete fdb {}", format_mac(&entry.mac))));
        }
        self.record(format!("delete fdb {}", format_mac(&entry.mac)));
        Ok(())
    }

    fn sysctl(&mut self, key: &str) -> Result<String> {
        Ok(self.sysctls.get(key).cloned().unwrap_or_else(|| "0".into()))
    }

    fn set_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        self.sysctls.insert(key.to_string(), value.to_string());
        self.record(format!("sysctl {key}={value}"));
        Ok(())
    }

    fn nft_hash(&mut self) -> Result<Option<String>> {
        Ok(self.nft_script.as_deref().and_then(hash_from_listing))
    }

    fn nft_apply(&mut self, script: &str) -> Result<()> {
        self.nft_script = Some(script.to_string());
        self.record("nft -f".into());
        Ok(())
    }

    fn policy_hash(&mut self) -> Result<Option<String>> {
        Ok(self.policy_hash.clone())
    }

    fn policy_apply(&mut self, script: &str) -> Result<()> {
        if std::mem::take(&mut self.fail_next_policy) {
            return Err(crate::Error::Command {
                op: "apply nftables table inet weft-policy".into(),
                detail: "refused by the fake kernel".into(),
            });
        }
        self.policy_hash = hash_from_stamp(script);
        self.policy_scripts.push(script.to_string());
        self.record("nft policy -f".into());
        Ok(())
    }

    fn proxy_hash(&mut self) -> Result<Option<String>> {
        Ok(self.proxy_hash.clone())
    }

    fn proxy_apply(&mut self, script: &str) -> Result<()> {
        self.proxy_hash = hash_from_stamp(script);
        self.proxy_scripts.push(script.to_string());
        self.record("nft proxy -f".into());
        Ok(())
    }

    fn proxy_commit(&mut self, batch: &NftBatch) -> Result<()> {
        if std::mem::take(&mut self.fail_next_proxy_batch) {
            return Err(weft_netlink::Error::Invalid(
                "nftables batch refused by the fake kernel".into(),
            )
            .into());
        }
        // The stamp travels as an element comment: read it from the bytes,
        // where it is the text after the prefix up to its NUL.
        let bytes = batch.encode(0);
        let prefix = HASH_PREFIX.as_bytes();
        if let Some(at) = bytes.windows(prefix.len()).rposition(|w| w == prefix) {
            let rest = &bytes[at + prefix.len()..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            self.proxy_hash = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
        self.proxy_batches.push(batch.clone());
        self.record("nft proxy batch".into());
        Ok(())
    }

    fn conntrack_delete(&mut self, flush: &UdpFlush) -> Result<()> {
        if std::mem::take(&mut self.fail_next_conntrack) {
            return Err(crate::Error::Command {
                op: "delete conntrack entries".into(),
                detail: "refused by the fake kernel".into(),
            });
        }
        self.conntrack_deletes.push(*flush);
        self.record(format!("conntrack -D {flush:?}"));
        Ok(())
    }

    fn conntrack_udp(&mut self, v6: bool) -> Result<Vec<CtEntry>> {
        self.conntrack_dumps += 1;
        Ok(self
            .conntrack
            .iter()
            .filter(|e| e.orig.dst.is_ipv6() == v6)
            .copied()
            .collect())
    }

    fn conntrack_remove(&mut self, entry: &CtEntry) -> Result<()> {
        self.conntrack.retain(|e| e != entry);
        self.conntrack_removed.push(*entry);
        self.record(format!("conntrack delete {entry:?}"));
        Ok(())
    }
}

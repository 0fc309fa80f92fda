//! The narrow seam between the reconciler and the kernel: what it observes
//! and the changes it makes, one method each. [`crate::NetlinkKernel`] is
//! the real implementation; [`crate::fake::FakeKernel`] keeps the state in
//! memory and records every change for unit tests.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_netlink::{CtEntry, Family, FdbEntry, Neighbour, NftBatch, Route, VxlanInfo, VxlanSpec};

use crate::error::Result;
use crate::service::UdpFlush;

/// A link as the reconciler needs to see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// ifindex.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Its MAC, when it has a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// `IFLA_INFO_KIND` ("vxlan", "veth", …).
    pub kind: Option<String>,
    /// The VXLAN attributes, for a VXLAN device.
    pub vxlan: Option<VxlanInfo>,
}

/// Everything the reconciler reads from and writes to the kernel of the
/// namespace it manages. Deletions of things already gone may fail with a
/// not-found error ([`crate::Error::is_not_found`]); the reconciler treats
/// that as done.
pub trait Kernel {
    /// Every link.
    fn links(&mut self) -> Result<Vec<LinkState>>;
    /// The link called `name`, if any.
    fn link(&mut self, name: &str) -> Result<Option<LinkState>>;
    /// Creates the VXLAN device, down.
    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()>;
    /// Deletes a link.
    fn delete_link(&mut self, index: u32) -> Result<()>;
    /// Sets a link's MTU.
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()>;
    /// Brings a link up.
    fn set_up(&mut self, index: u32) -> Result<()>;
    /// The addresses on a link, with prefix lengths.
    fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>>;
    /// Adds an address to a link.
    fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()>;
    /// Removes an address from a link.
    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()>;
    /// The unicast routes of the main table of one family that carry
    /// `protocol`.
    fn routes(&mut self, family: Family, protocol: u8) -> Result<Vec<Route>>;
    /// Adds a route or replaces the one to the same destination.
    fn replace_route(&mut self, route: &Route) -> Result<()>;
    /// Deletes exactly this route.
    fn delete_route(&mut self, route: &Route) -> Result<()>;
    /// The neighbour entries on a link.
    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>>;
    /// Adds or replaces a neighbour entry.
    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()>;
    /// Deletes a neighbour entry.
    fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()>;
    /// The unicast FDB entries of a VXLAN device that have a destination.
    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>>;
    /// Adds or replaces the FDB entry for `entry.mac`.
    fn replace_fdb(&mut self, entry: &FdbEntry) -> Result<()>;
    /// Deletes an FDB entry.
    fn delete_fdb(&mut self, entry: &FdbEntry) -> Result<()>;
    /// Reads a `net.*` sysctl.
    fn sysctl(&mut self, key: &str) -> Result<String>;
    /// Writes a `net.*` sysctl.
    fn set_sysctl(&mut self, key: &str, value: &str) -> Result<()>;
    /// The hash in table `inet weft`'s comment; `None` when the table or
    /// the comment is missing.
    fn nft_hash(&mut self) -> Result<Option<String>>;
    /// Runs one `nft -f` transaction.
    fn nft_apply(&mut self, script: &str) -> Result<()>;
    /// The hash stamped into the policy table `inet weft-policy` by
    /// [`crate::policy::PolicyState`]; `None` when the table or the stamp
    /// is missing. Must stay cheap on a large table: it lists one small set.
    fn policy_hash(&mut self) -> Result<Option<String>>;
    /// Runs one `nft -f` transaction on the policy table.
    fn policy_apply(&mut self, script: &str) -> Result<()>;
    /// The hash stamped into the proxy table `inet weft-proxy` by
    /// [`crate::service::ServiceState`]; `None` when the table or the stamp
    /// is missing. Lists one small set, like [`Kernel::policy_hash`].
    fn proxy_hash(&mut self) -> Result<Option<String>>;
    /// Runs one `nft -f` transaction on the proxy table.
    fn proxy_apply(&mut self, script: &str) -> Result<()>;
    /// Commits one netlink transaction on the proxy table: the fast path
    /// for element and rule changes ([`weft_nft::delta_batch`]), with no
    /// read-back of the table. All of it or nothing applies.
    fn proxy_commit(&mut self, batch: &NftBatch) -> Result<()>;
    /// Deletes the UDP conntrack entries that `flush` describes (none
    /// matching is success): stale flows to an endpoint that left a Service.
    fn conntrack_delete(&mut self, flush: &UdpFlush) -> Result<()>;
    /// The UDP conntrack entries of one family (`v6`), as one ctnetlink
    /// dump the kernel filters by protocol: the stale-UDP sweep of a
    /// restarted agent reads them once.
    fn conntrack_udp(&mut self, v6: bool) -> Result<Vec<CtEntry>>;
    /// Deletes one conntrack entry (by original tuple and id); one gone
    /// already is success.
    fn conntrack_remove(&mut self, entry: &CtEntry) -> Result<()>;
}

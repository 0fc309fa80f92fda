//! [`Kernel`] over the calling thread's network namespace: netlink through
//! [`weft_netlink::Handle`], sysctls under /proc/sys, the `nft` command, and
//! nftables transactions over NETLINK_NETFILTER ([`NftSocket`]) for the
//! proxy table's small changes.
//!
//! Everything acts on the namespace the handle was opened in (netlink) or
//! the calling thread's (sysctls, child processes, which inherit the
//! thread's namespace): `weftd` opens this in the node's namespace and
//! reconciles from that thread.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use weft_netlink::{
    ConntrackSocket, CtEntry, Family, FdbEntry, Handle, Link, Neighbour, NftBatch, NftSocket,
    Route, VxlanSpec,
};
use weft_policy::nft::TABLE as POLICY_TABLE;
use weft_proxy::TABLE as PROXY_TABLE;

use crate::error::{Error, Result};
use crate::kernel::{Kernel, LinkState};
use crate::nft;
use crate::service::{UdpFlush, conntrack_args};
use crate::stamped::{STATE_SET, hash_from_stamp};

/// The real kernel of the calling thread's network namespace.
#[derive(Debug)]
pub struct NetlinkKernel {
    handle: Handle,
}

impl NetlinkKernel {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<NetlinkKernel> {
        Ok(NetlinkKernel {
            handle: Handle::new()?,
        })
    }

    /// Wraps a handle already opened in the right namespace.
    pub fn from_handle(handle: Handle) -> NetlinkKernel {
        NetlinkKernel { handle }
    }

    fn state(&mut self, link: Link) -> Result<LinkState> {
        let vxlan = match link.kind.as_deref() {
            Some("vxlan") => self.handle.vxlan(&link.name)?.map(|(_, info)| info),
            _ => None,
        };
        Ok(LinkState {
            index: link.index,
            name: link.name,
            mtu: link.mtu,
            up: link.up,
            mac: link.mac,
            kind: link.kind,
            vxlan,
        })
    }
}

impl Kernel for NetlinkKernel {
    fn links(&mut self) -> Result<Vec<LinkState>> {
        // VXLAN attributes are only read for the device weft looks up by
        // name; a full listing is for finding the underlay.
        Ok(self
            .handle
            .links()?
            .into_iter()
            .map(|l| LinkState {
                index: l.index,
                name: l.name,
                mtu: l.mtu,
                up: l.up,
                mac: l.mac,
                kind: l.kind,
                vxlan: None,
            })
            .collect())
    }

    fn link(&mut self, name: &str) -> Result<Option<LinkState>> {
        match self.handle.link(name)? {
            Some(link) => self.state(link).map(Some),
            None => Ok(None),
        }
    }

    fn create_vxlan(&mut self, spec: &VxlanSpec) -> Result<()> {
        Ok(self.handle.create_vxlan(spec)?)
    }

    fn delete_link(&mut self, index: u32) -> Result<()> {
        Ok(self.handle.delete_link(index)?)
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        // weft_netlink has no MTU setter yet; iproute2 does the same
        // RTM_NEWLINK. The child inherits this thread's namespace.
        let op = format!("set MTU {mtu} on link {index}");
        let link = self
            .handle
            .link_by_index(index)?
            .ok_or_else(|| Error::Netlink(weft_netlink::Error::kernel(op.clone(), ENODEV)))?;
        let mtu = mtu.to_string();
        run(
            &op,
            "ip",
            &["link", "set", "dev", &link.name, "mtu", &mtu],
            None,
        )
        .map(drop)
    }

    fn set_up(&mut self, index: u32) -> Result<()> {
        Ok(self.handle.set_up(index)?)
    }

    fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>> {
        Ok(self.handle.addresses(index)?)
    }

    fn add_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        // nodad: the overlay gateway address must be usable at once.
        Ok(self.handle.add_address(index, addr, true)?)
    }

    fn delete_address(&mut self, index: u32, addr: IpNet) -> Result<()> {
        Ok(self.handle.delete_address(index, addr)?)
    }

    fn routes(&mut self, family: Family, protocol: u8) -> Result<Vec<Route>> {
        Ok(self.handle.routes_with_protocol(family, protocol)?)
    }

    fn replace_route(&mut self, route: &Route) -> Result<()> {
        Ok(self.handle.replace_route(route)?)
    }

    fn delete_route(&mut self, route: &Route) -> Result<()> {
        Ok(self.handle.delete_route(route)?)
    }

    fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>> {
        Ok(self.handle.neighbours(index)?)
    }

    fn add_neighbour(&mut self, n: &Neighbour) -> Result<()> {
        Ok(self.handle.add_neighbour(n)?)
    }

    fn delete_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        Ok(self.handle.delete_neighbour(index, ip)?)
    }

    fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        Ok(self.handle.fdb(index)?)
    }

    fn replace_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        Ok(self.handle.add_fdb(entry)?)
    }

    fn delete_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        Ok(self.handle.delete_fdb(entry)?)
    }

    fn sysctl(&mut self, key: &str) -> Result<String> {
        Ok(weft_netlink::sysctl_get(key)?)
    }

    fn set_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        Ok(weft_netlink::sysctl_set(key, value)?)
    }

    fn nft_hash(&mut self) -> Result<Option<String>> {
        let op = format!("read nftables table {}", nft::TABLE);
        let listing = nft_listing(&op, &["-t", "list", "table", "inet", "weft"])?;
        Ok(listing.as_deref().and_then(nft::hash_from_listing))
    }

    fn nft_apply(&mut self, script: &str) -> Result<()> {
        let op = format!("apply nftables table {}", nft::TABLE);
        run(&op, "nft", &["-f", "-"], Some(script)).map(drop)
    }

    fn policy_hash(&mut self) -> Result<Option<String>> {
        stamp_of(POLICY_TABLE)
    }

    fn policy_apply(&mut self, script: &str) -> Result<()> {
        let op = format!("apply nftables table {POLICY_TABLE}");
        run(&op, "nft", &["-f", "-"], Some(script)).map(drop)
    }

    fn proxy_hash(&mut self) -> Result<Option<String>> {
        stamp_of(PROXY_TABLE)
    }

    fn proxy_apply(&mut self, script: &str) -> Result<()> {
        let op = format!("apply nftables table {PROXY_TABLE}");
        run(&op, "nft", &["-f", "-"], Some(script)).map(drop)
    }

    fn proxy_commit(&mut self, batch: &NftBatch) -> Result<()> {
        // A socket per transaction: opening one costs microseconds, and the
        // calling thread's namespace is the one to change (see the module
        // doc), as for the `nft` child processes.
        Ok(NftSocket::new()?.commit(batch)?)
    }

    fn conntrack_delete(&mut self, flush: &UdpFlush) -> Result<()> {
        let args = conntrack_args(flush);
        let op = format!("delete conntrack entries ({})", args.join(" "));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match run(&op, "conntrack", &args, None) {
            Ok(_) => Ok(()),
            // conntrack exits 1 when nothing matched: nothing was stale.
            Err(Error::Command { detail, .. }) if detail.contains(CONNTRACK_NOTHING_DELETED) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn conntrack_udp(&mut self, v6: bool) -> Result<Vec<CtEntry>> {
        // A socket per call, in the calling thread's namespace, as for
        // `proxy_commit`.
        Ok(ConntrackSocket::new()?.dump(v6, IPPROTO_UDP)?)
    }

    fn conntrack_remove(&mut self, entry: &CtEntry) -> Result<()> {
        ConntrackSocket::new()?.delete(entry)?;
        Ok(())
    }
}

/// UDP's protocol number.
const IPPROTO_UDP: u8 = 17;

/// What `conntrack -D` prints when no entry matched.
const CONNTRACK_NOTHING_DELETED: &str = "0 flow entries have been deleted";

/// The hash in the stamp set of `table` (`inet weft-policy`, …).
fn stamp_of(table: &str) -> Result<Option<String>> {
    let op = format!("read the stamp of nftables table {table}");
    let (family, name) = table.split_once(' ').unwrap_or(("inet", table));
    let listing = nft_listing(&op, &["list", "set", family, name, STATE_SET])?;
    Ok(listing.as_deref().and_then(hash_from_stamp))
}

/// ENODEV: the link to change is gone.
const ENODEV: i32 = 19;

fn command_error(op: &str, detail: String) -> Error {
    Error::Command {
        op: op.to_string(),
        detail,
    }
}

/// `nft args` (a listing) in the calling thread's namespace: its stdout, or
/// `None` when nft says the table (or set) is not there (yet).
fn nft_listing(op: &str, args: &[&str]) -> Result<Option<String>> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .map_err(|e| command_error(op, format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(command_error(op, stderr.trim().to_string()));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `program args` (with `stdin` fed in, if any) in the calling
/// thread's namespace and returns its stdout; a non-zero exit is an error
/// carrying stderr.
fn run(op: &str, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| command_error(op, format!("cannot run {program}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| command_error(op, format!("write to {program}: {e}")))?;
        // Dropping the pipe closes it: nft reads to end of file.
    }
    let out = child
        .wait_with_output()
        .map_err(|e| command_error(op, format!("wait for {program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(command_error(
            op,
            format!("{program} {}: {}", args.join(" "), stderr.trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

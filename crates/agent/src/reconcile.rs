//! Apply: observe what the kernel has, diff it against [`Desired`], change
//! only the difference. Only weft's objects are ever removed: routes with
//! weft's protocol number, and entries on weft's own VXLAN device.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::{info, instrument};
use weft_netlink::{Family, FdbEntry, Neighbour, RT_TABLE_MAIN, Route, RouteScope};

use crate::desired::{Desired, RouteDev};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::nft;

/// How many changes a reconcile made, by kind. All zero means the kernel
/// already was as desired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// VXLAN device created, recreated, deleted, re-MTU'd or brought up.
    pub links: usize,
    /// Addresses added to or removed from the VXLAN device.
    pub addresses: usize,
    /// Routes added, replaced or deleted.
    pub routes: usize,
    /// Neighbour entries added, replaced or deleted.
    pub neighbours: usize,
    /// FDB entries added, replaced or deleted.
    pub fdb: usize,
    /// Sysctls written.
    pub sysctls: usize,
    /// nftables transactions (0 or 1).
    pub nft: usize,
}

impl Report {
    /// The total number of changes.
    pub fn changes(&self) -> usize {
        self.links
            + self.addresses
            + self.routes
            + self.neighbours
            + self.fdb
            + self.sysctls
            + self.nft
    }
}

/// Brings the kernel to `desired`, changing only what differs, and reports
/// what it changed. Idempotent: run again with the same `desired`, it reports
/// zero changes. Stops at the first failure (the next reconcile resumes from
/// whatever state that left).
#[instrument(skip_all)]
pub fn reconcile(kernel: &mut impl Kernel, desired: &Desired) -> Result<Report> {
    let mut report = Report::default();
    sysctls(kernel, desired, &mut report)?;
    let vxlan = vxlan_device(kernel, desired, &mut report)?;
    if let Some(index) = vxlan {
        addresses(kernel, index, &desired.vxlan_addrs, &mut report)?;
        fdb(kernel, index, desired, &mut report)?;
        neighbours(kernel, index, desired, &mut report)?;
    }
    routes(kernel, vxlan, desired, &mut report)?;
    masquerade(kernel, desired, &mut report)?;
    if report.changes() > 0 {
        info!(?report, "reconciled");
    }
    Ok(report)
}

/// Treats "already gone" as done.
fn gone_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

fn sysctls(kernel: &mut impl Kernel, desired: &Desired, report: &mut Report) -> Result<()> {
    for (key, value) in &desired.sysctls {
        if kernel.sysctl(key)?.trim() != value {
            kernel.set_sysctl(key, value)?;
            report.sysctls += 1;
        }
    }
    Ok(())
}

/// Makes the VXLAN device match (or go, when none is desired); returns its
/// ifindex. A device with the right parameters is adopted as it is.
fn vxlan_device(
    kernel: &mut impl Kernel,
    desired: &Desired,
    report: &mut Report,
) -> Result<Option<u32>> {
    let Some(want) = desired.vxlan.as_ref() else {
        // host-gw keeps no VXLAN device; one under weft's name is weft's.
        if let Some(old) = kernel.link(&desired.vxlan_name)? {
            if old.kind.as_deref() == Some("vxlan") {
                gone_ok(kernel.delete_link(old.index))?;
                report.links += 1;
            }
        }
        return Ok(None);
    };
    let mut have = kernel.link(&want.name)?;
    if let Some(link) = &have {
        if link.kind.as_deref() != Some("vxlan") {
            return Err(Error::Conflict {
                op: format!("reconcile VXLAN device {}", want.name),
                detail: format!("link {} exists and is a {:?} device", link.name, link.kind),
            });
        }
        // The MAC is part of the identity: peers address this VTEP by it.
        let same = link.vxlan.as_ref() == Some(&want.info()) && link.mac == want.mac;
        if !same {
            info!(dev = %want.name, have = ?link.vxlan, "VXLAN parameters changed: recreating");
            gone_ok(kernel.delete_link(link.index))?;
            report.links += 1;
            have = None;
        }
    }
    let link = match have {
        Some(link) => link,
        None => {
            kernel.create_vxlan(want)?;
            report.links += 1;
            kernel.link(&want.name)?.ok_or_else(|| Error::Conflict {
                op: format!("create VXLAN device {}", want.name),
                detail: "the device is gone right after its creation".into(),
            })?
        }
    };
    if link.mtu != want.mtu {
        kernel.set_mtu(link.index, want.mtu)?;
        report.links += 1;
    }
    if !link.up {
        kernel.set_up(link.index)?;
        report.links += 1;
    }
    Ok(Some(link.index))
}

fn addresses(
    kernel: &mut impl Kernel,
    index: u32,
    want: &[IpNet],
    report: &mut Report,
) -> Result<()> {
    // The kernel's own IPv6 link-local address is not weft's to remove.
    let have: Vec<IpNet> = kernel
        .addresses(index)?
        .into_iter()
        .filter(|a| !crate::local::is_link_local(a))
        .collect();
    for addr in want.iter().filter(|a| !have.contains(a)) {
        kernel.add_address(index, *addr)?;
        report.addresses += 1;
    }
    for addr in have.iter().filter(|a| !want.contains(a)) {
        gone_ok(kernel.delete_address(index, *addr))?;
        report.addresses += 1;
    }
    Ok(())
}

fn fdb(kernel: &mut impl Kernel, index: u32, desired: &Desired, report: &mut Report) -> Result<()> {
    let have: BTreeMap<[u8; 6], FdbEntry> =
        kernel.fdb(index)?.into_iter().map(|e| (e.mac, e)).collect();
    for want in &desired.fdb {
        let entry = FdbEntry {
            index,
            mac: want.mac,
            dst: want.dst,
        };
        if have.get(&want.mac) != Some(&entry) {
            kernel.replace_fdb(&entry)?;
            report.fdb += 1;
        }
    }
    for (mac, old) in &have {
        if !desired.fdb.iter().any(|w| w.mac == *mac) {
            gone_ok(kernel.delete_fdb(old))?;
            report.fdb += 1;
        }
    }
    Ok(())
}

fn neighbours(
    kernel: &mut impl Kernel,
    index: u32,
    desired: &Desired,
    report: &mut Report,
) -> Result<()> {
    // Only permanent entries are weft's; anything else on the device was
    // resolved by the kernel and ages out by itself.
    let have: BTreeMap<IpAddr, Neighbour> = kernel
        .neighbours(index)?
        .into_iter()
        .filter(|n| n.permanent)
        .map(|n| (n.ip, n))
        .collect();
    for want in &desired.neighbours {
        let n = Neighbour {
            index,
            ip: want.ip,
            mac: want.mac,
            permanent: true,
        };
        if have.get(&want.ip) != Some(&n) {
            kernel.add_neighbour(&n)?;
            report.neighbours += 1;
        }
    }
    for ip in have.keys() {
        if !desired.neighbours.iter().any(|w| w.ip == *ip) {
            gone_ok(kernel.delete_neighbour(index, *ip))?;
            report.neighbours += 1;
        }
    }
    Ok(())
}

/// The kernel route for a desired one; `None` when it goes through the VXLAN
/// device and there is none.
fn kernel_route(desired: &Desired, vxlan: Option<u32>, r: &crate::DesiredRoute) -> Option<Route> {
    let oif = match r.dev {
        RouteDev::Vxlan => vxlan?,
        RouteDev::Underlay => desired.underlay_index,
    };
    Some(Route {
        dst: r.dst,
        gateway: Some(r.gateway),
        oif: Some(oif),
        scope: RouteScope::Universe,
        onlink: r.onlink,
        protocol: desired.route_protocol,
        table: RT_TABLE_MAIN,
        mtu: None,
    })
}

/// Whether an observed route is the desired one. The MTU metric is not
/// weft's and IPv6 reports onlink inconsistently across kernels on routes
/// whose gateway is reachable anyway, so only what routing depends on is
/// compared.
fn same_route(have: &Route, want: &Route) -> bool {
    have.gateway == want.gateway && have.oif == want.oif && have.onlink == want.onlink
}

fn routes(
    kernel: &mut impl Kernel,
    vxlan: Option<u32>,
    desired: &Desired,
    report: &mut Report,
) -> Result<()> {
    let want: BTreeMap<IpNet, Route> = desired
        .routes
        .iter()
        .filter_map(|r| kernel_route(desired, vxlan, r))
        .map(|r| (r.dst, r))
        .collect();
    for family in [Family::V4, Family::V6] {
        let have: Vec<Route> = kernel.routes(family, desired.route_protocol)?;
        for route in want.values().filter(|r| r.family() == family) {
            if !have
                .iter()
                .any(|h| h.dst == route.dst && same_route(h, route))
            {
                kernel.replace_route(route)?;
                report.routes += 1;
            }
        }
        for old in have.iter().filter(|h| !want.contains_key(&h.dst)) {
            gone_ok(kernel.delete_route(old))?;
            report.routes += 1;
        }
        // Two of ours to one destination (e.g. IPv6 routes of different
        // metrics): keep the one that matches, drop the others.
        for old in have.iter().filter(|h| {
            want.get(&h.dst).is_some_and(|w| {
                !same_route(h, w) && have.iter().any(|o| o.dst == h.dst && same_route(o, w))
            })
        }) {
            gone_ok(kernel.delete_route(old))?;
            report.routes += 1;
        }
    }
    Ok(())
}

fn masquerade(kernel: &mut impl Kernel, desired: &Desired, report: &mut Report) -> Result<()> {
    let ruleset = nft::render(&desired.masquerade);
    if kernel.nft_hash()?.as_deref() != Some(ruleset.hash.as_str()) {
        kernel.nft_apply(&ruleset.script)?;
        report.nft += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

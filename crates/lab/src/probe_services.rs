//! `lab probe` with Services and non-pod clients: `--to svc/NS/NAME` probes
//! the Service's cluster IP of each family on `--port`, `--to
//! nodeport/NS/NAME` its NodePort (of the Service port `--port`) on every
//! node's address; `--from ext` probes from the external client and
//! `--from node/NAME` from a node itself. Records are the same JSON as
//! pod-to-pod probes, `to` naming the Service (and the node for NodePorts).

use std::net::IpAddr;

use weft_probe::{ProbeOpts, ProbeRecord, Target};

use crate::error::{LabError, Result};
use crate::netns;
use crate::probe::{PARALLELISM, ProbeQuery};
use crate::services;
use crate::state::{LabState, family_of};
use crate::store::Store;

/// Whether `q` names a Service target or a non-pod client, which
/// [`probe`] handles (plain pod-to-pod queries stay with
/// [`crate::probe::probe`]).
pub fn is_extended(q: &ProbeQuery) -> bool {
    q.to.iter()
        .any(|t| t.starts_with("svc/") || t.starts_with("nodeport/"))
        || q.from.iter().any(|f| f == "ext" || f.starts_with("node/"))
}

/// Probes clients × targets (pods, Services, NodePorts), per family.
pub fn probe(state: &LabState, store: &Store, q: &ProbeQuery) -> Result<Vec<ProbeRecord>> {
    let clients = clients(state, &q.from)?;
    let families = if q.families.is_empty() {
        state.families.clone()
    } else {
        q.families.clone()
    };
    let mut targets: Vec<(String, IpAddr, u16)> = Vec::new();
    let to: Vec<String> = if q.to.is_empty() {
        state.pods.iter().map(|p| p.key()).collect()
    } else {
        q.to.clone()
    };
    for key in &to {
        if let Some(svc) = key.strip_prefix("svc/") {
            let status = services::service(store, svc)?;
            for ip in status.cluster_ips {
                targets.push((key.clone(), ip, q.port));
            }
        } else if let Some(svc) = key.strip_prefix("nodeport/") {
            let status = services::service(store, svc)?;
            let wanted = format!("{}/{}:", weft_probe::protocol_name(q.protocol), q.port);
            let node_port = status
                .ports
                .iter()
                .find_map(|p| p.strip_prefix(&wanted)?.parse::<u16>().ok())
                .ok_or_else(|| {
                    LabError::Invalid(format!("Service {svc} has no NodePort for {wanted}"))
                })?;
            for node in &state.nodes {
                for a in &node.addresses {
                    targets.push((format!("{key}@{}", node.name), a.addr(), node_port));
                }
            }
        } else {
            let pod = state.pod(key)?;
            for ip in &pod.ips {
                targets.push((key.clone(), *ip, q.port));
            }
        }
    }
    targets.retain(|(_, ip, _)| families.contains(&family_of(*ip)));
    let mut cells = Vec::new();
    for family in &families {
        for (label, ns) in &clients {
            for (to, ip, port) in targets.iter().filter(|t| family_of(t.1) == *family) {
                cells.push((
                    label.clone(),
                    to.clone(),
                    Target {
                        netns: Some(netns::path(ns)),
                        address: *ip,
                        port: *port,
                        protocol: q.protocol,
                    },
                ));
            }
        }
    }
    let list: Vec<Target> = cells.iter().map(|c| c.2.clone()).collect();
    let results = weft_probe::probe_many(&list, &ProbeOpts { timeout: q.timeout }, PARALLELISM);
    Ok(cells
        .iter()
        .zip(&results)
        .map(|((from, to, target), result)| ProbeRecord::new(from, to, target, result))
        .collect())
}

/// The clients `keys` name, as (label, namespace): pods, `ext`, `node/NAME`;
/// every pod when empty.
fn clients(state: &LabState, keys: &[String]) -> Result<Vec<(String, String)>> {
    if keys.is_empty() {
        return Ok(state
            .pods
            .iter()
            .map(|p| (p.key(), p.netns.clone()))
            .collect());
    }
    keys.iter()
        .map(|k| {
            if k == "ext" {
                let ext = state
                    .external
                    .as_ref()
                    .ok_or_else(|| LabError::Invalid("this lab has no external client".into()))?;
                Ok((k.clone(), ext.netns.clone()))
            } else if let Some(name) = k.strip_prefix("node/") {
                let node = state
                    .nodes
                    .iter()
                    .find(|n| n.name == name)
                    .ok_or_else(|| LabError::Invalid(format!("no node {name}")))?;
                Ok((k.clone(), node.netns.clone()))
            } else {
                Ok((k.clone(), state.pod(k)?.netns.clone()))
            }
        })
        .collect()
}

//! The Services benchmark's synthesized cluster: `N` ClusterIP Services with
//! `M` ready endpoints each. Service 0 is the one the latency phases
//! connect to; its endpoints are the addresses of the benchmark's server
//! pod ([`SERVER_IPS`]), so every endpoint the proxy may pick answers. The
//! other Services' endpoints are addresses outside the node (never dialled:
//! they only size the table).

use anyhow::{Context, Result};
use serde_json::json;
use weft_model::{Endpoint, EndpointSlice, Service};
use weft_proxy::ProxyNode;

/// The measured Service's ClusterIP (Service 0).
pub const CLUSTER_IP: &str = "10.96.0.1";
/// The Services' port.
pub const SERVICE_PORT: u16 = 80;
/// The endpoints' port (the server pod's echo server).
pub const TARGET_PORT: u16 = 8080;
/// The client pod's address.
pub const CLIENT_IP: &str = "10.244.1.20";
/// The server pod's addresses: the measured Service's endpoints (as many as
/// a Service has, up to ten).
pub const SERVER_IPS: [&str; 10] = [
    "10.244.1.11",
    "10.244.1.12",
    "10.244.1.13",
    "10.244.1.14",
    "10.244.1.15",
    "10.244.1.16",
    "10.244.1.17",
    "10.244.1.18",
    "10.244.1.19",
    "10.244.1.21",
];
/// The node's name and address (NodePorts; none are synthesized).
const NODE: &str = "node-a";

/// A synthesized cluster.
#[derive(Debug, Clone)]
pub struct Synthesized {
    /// The Services.
    pub services: Vec<Service>,
    /// One slice per Service.
    pub slices: Vec<EndpointSlice>,
}

/// The node the table is compiled for: the pods' /24, the cluster's /16.
pub fn node() -> ProxyNode {
    ProxyNode {
        name: NODE.into(),
        node_ips: vec!["192.168.50.2".parse().expect("literal address")],
        pod_cidrs: vec!["10.244.1.0/24".parse().expect("literal CIDR")],
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("literal CIDR")],
    }
}

/// The ClusterIP of Service `i`: 250 per /24 of 10.96.0.0/12, from .1.
pub fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 1)
}

/// Endpoint `n` of the Services other than the measured one: 10.128.0.0 on,
/// outside the node's and the cluster's pod CIDRs.
pub fn remote_endpoint(n: usize) -> String {
    format!("10.{}.{}.{}", 128 + n / 65_536, n / 256 % 256, n % 256)
}

/// `services` Services (at most 4,000 × 250, the ClusterIPs' /12) with
/// `endpoints` endpoints each (at most [`SERVER_IPS`]'s length, so that the
/// measured Service's endpoints all answer).
pub fn cluster(services: usize, endpoints: usize) -> Result<Synthesized> {
    anyhow::ensure!(
        (1..=4_000 * 250).contains(&services) && (1..=SERVER_IPS.len()).contains(&endpoints),
        "synthesize {services} Services × {endpoints} endpoints: want 1..=1000000 × 1..=10"
    );
    let mut out = Synthesized {
        services: Vec::with_capacity(services),
        slices: Vec::with_capacity(services),
    };
    for i in 0..services {
        let name = format!("svc-{i}");
        out.services.push(
            Service::from_value(&json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {"clusterIP": cluster_ip(i),
                         "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT}]}
            }))
            .with_context(|| format!("synthesize Service {name}"))?,
        );
        let eps: Vec<_> = (0..endpoints)
            .map(|j| {
                let ip = if i == 0 {
                    SERVER_IPS[j].to_string()
                } else {
                    remote_endpoint(i * endpoints + j)
                };
                json!({"addresses": [ip], "nodeName": NODE, "conditions": {"ready": true}})
            })
            .collect();
        out.slices.push(
            EndpointSlice::from_value(&json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": "bench",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": TARGET_PORT}]
            }))
            .with_context(|| format!("synthesize EndpointSlice {name}"))?,
        );
    }
    Ok(out)
}

impl Synthesized {
    /// Removes the last endpoint of the middle Service (not the measured
    /// one) and returns it, for [`Synthesized::add_endpoint`].
    pub fn remove_endpoint(&mut self) -> Result<Endpoint> {
        let i = self.slices.len() / 2;
        self.slices[i]
            .endpoints
            .pop()
            .with_context(|| format!("Service {i} has no endpoint to remove"))
    }

    /// Adds `endpoint` to the middle Service.
    pub fn add_endpoint(&mut self, endpoint: Endpoint) {
        let i = self.slices.len() / 2;
        self.slices[i].endpoints.push(endpoint);
    }
}

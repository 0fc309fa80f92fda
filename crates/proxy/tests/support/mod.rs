//! Fixtures shared by the proxy's tests: Services and EndpointSlices built
//! from Kubernetes JSON (through the model's own conversion), and a node.

#![allow(dead_code)] // each test binary uses its own subset

use serde_json::{Value, json};
use weft_model::{EndpointSlice, Service};
use weft_proxy::ProxyNode;
use weft_testkit::NetNs;

/// A Service in namespace `ns` from its `spec` (and optional `status`).
pub fn service(name: &str, spec: Value) -> Service {
    service_with_status(name, spec, json!({}))
}

/// A Service with a `status` (load-balancer ingress).
pub fn service_with_status(name: &str, spec: Value, status: Value) -> Service {
    Service::from_value(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec, "status": status
    }))
    .unwrap()
}

/// A slice of Service `service` in namespace `ns`.
pub fn slice(
    name: &str,
    service: &str,
    family: &str,
    endpoints: Value,
    ports: Value,
) -> EndpointSlice {
    EndpointSlice::from_value(&json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": family, "endpoints": endpoints, "ports": ports
    }))
    .unwrap()
}

/// A ready endpoint on `node`.
pub fn ready(ip: &str, node: &str) -> Value {
    json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true}})
}

/// The node the tests compile for.
pub fn node() -> ProxyNode {
    ProxyNode {
        name: "node-a".into(),
        node_ips: vec!["192.168.50.2".parse().unwrap(), "fd50::2".parse().unwrap()],
        pod_cidrs: vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd00:244:1::/64".parse().unwrap(),
        ],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/32".parse().unwrap(),
        ],
    }
}

/// Every feature once: ClusterIP with a named target port over two slices,
/// not-ready and terminating endpoints, dual-stack NodePort with
/// `externalTrafficPolicy: Local`, LoadBalancer and external IPs,
/// `ClientIP` affinity, a Service without endpoints, `internalTrafficPolicy:
/// Local`, a headless Service.
pub fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    let services = vec![
        service(
            "web",
            json!({
                "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": "web"}]
            }),
        ),
        service_with_status(
            "edge",
            json!({
                "type": "LoadBalancer",
                "clusterIPs": ["10.96.0.20", "fd00:96::20"], "ipFamilies": ["IPv4", "IPv6"],
                "externalIPs": ["192.0.2.20"], "externalTrafficPolicy": "Local",
                "ports": [{"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443}]
            }),
            json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.20"}]}}),
        ),
        service(
            "sticky",
            json!({
                "clusterIP": "10.96.0.30", "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                "ports": [{"port": 53, "protocol": "UDP"}]
            }),
        ),
        service(
            "empty",
            json!({
                "type": "NodePort", "clusterIP": "10.96.0.40",
                "ports": [{"port": 80, "nodePort": 30080}]
            }),
        ),
        service(
            "near",
            json!({
                "clusterIP": "10.96.0.50", "internalTrafficPolicy": "Local",
                "ports": [{"port": 80}]
            }),
        ),
        service("dns", json!({"clusterIP": "None", "ports": [{"port": 53}]})),
    ];
    let http = json!([{"name": "http", "port": 8080}]);
    let slices = vec![
        slice(
            "web-a",
            "web",
            "IPv4",
            json!([
                ready("10.244.1.5", "node-a"),
                {"addresses": ["10.244.2.5"], "nodeName": "node-b", "conditions": {"ready": false}},
                {"addresses": ["10.244.2.6"], "nodeName": "node-b",
                 "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]),
            http,
        ),
        // Another pod version names a different number for "http".
        slice(
            "web-b",
            "web",
            "IPv4",
            json!([ready("10.244.2.7", "node-b")]),
            json!([{"name": "http", "port": 9090}]),
        ),
        slice(
            "edge-4",
            "edge",
            "IPv4",
            json!([ready("10.244.2.8", "node-b")]),
            json!([{"name": "https", "port": 8443}]),
        ),
        slice(
            "edge-6",
            "edge",
            "IPv6",
            json!([ready("fd00:244:1::8", "node-a")]),
            json!([{"name": "https", "port": 8443}]),
        ),
        slice(
            "sticky",
            "sticky",
            "IPv4",
            json!([ready("10.244.1.9", "node-a"), ready("10.244.2.9", "node-b")]),
            json!([{"port": 5353, "protocol": "UDP"}]),
        ),
        slice(
            "near",
            "near",
            "IPv4",
            json!([ready("10.244.2.10", "node-b")]),
            json!([{"port": 80}]),
        ),
        slice(
            "dns",
            "dns",
            "IPv4",
            json!([ready("10.244.2.11", "node-b")]),
            json!([{"port": 53}]),
        ),
    ];
    (services, slices)
}

/// Runs `nft` with `args` inside `ns`, `stdin` on its standard input;
/// panics with nft's complaint when it fails. Returns its output.
pub fn nft(ns: &NetNs, args: &[&str], stdin: &str) -> String {
    ns.exec_stdin("nft", args, stdin)
        .unwrap_or_else(|e| panic!("{e:#}\n{stdin}"))
}

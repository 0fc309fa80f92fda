//! The synthesized cluster of the proxy's scale examples.

use anyhow::Result;
use serde_json::json;
use weft_model::{EndpointSlice, Service};

/// `services` ClusterIP Services with `endpoints` ready endpoints each.
pub fn cluster(services: usize, endpoints: usize) -> Result<(Vec<Service>, Vec<EndpointSlice>)> {
    let mut svcs = Vec::with_capacity(services);
    let mut slices = Vec::with_capacity(services);
    for i in 0..services {
        let name = format!("svc-{i}");
        svcs.push(Service::from_value(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))?);
        let eps: Vec<_> = (0..endpoints)
            .map(|j| {
                let n = i * endpoints + j;
                json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65_536, n / 256 % 256, n % 256)],
                       "conditions": {"ready": true}})
            })
            .collect();
        slices.push(EndpointSlice::from_value(&json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": 8080}]
        }))?);
    }
    Ok((svcs, slices))
}

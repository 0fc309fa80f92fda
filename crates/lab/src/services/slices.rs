//! The EndpointSlice controller, for the lab: from each Service with a
//! selector and the Pods it selects, the slices kube-controller-manager
//! would write. Pure: [`desired_slices`] is unit-tested without root.
//!
//! One slice per family and per set of resolved ports (pods whose named
//! target port resolves to different numbers cannot share a slice; in the
//! lab that is the rare case, so the first set keeps the plain name).
//! Endpoints are the selected pods of the Service's namespace that have an
//! address of the family and have not finished; `ready` and `serving` come
//! from the Pod's Ready condition.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use weft_model::service::SERVICE_NAME_LABEL;
use weft_model::{IpFamily, Pod, PodPhase, Service, TargetPort};

/// The label that marks slices the lab's controller owns (kube's label,
/// with the lab as the manager): only these are ever rewritten or deleted.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The lab controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "weft-lab";

/// The slices that should exist, as API objects. `selectors` holds each
/// Service's `spec.selector` by `namespace/name`; a Service without one
/// (or with an empty one) is left to whoever writes its slices, as upstream.
pub fn desired_slices(
    services: &[Service],
    selectors: &BTreeMap<String, BTreeMap<String, String>>,
    pods: &[Pod],
) -> Vec<Value> {
    let mut out = Vec::new();
    for svc in services.iter().filter(|s| s.is_proxied()) {
        let Some(selector) = selectors.get(&svc.key()).filter(|s| !s.is_empty()) else {
            continue;
        };
        let selected: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.namespace == svc.namespace && !p.host_network)
            .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            .filter(|p| selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .collect();
        for family in &svc.ip_families {
            // Endpoints grouped by their resolved ports, in pod order (the
            // snapshot's, sorted), so names are stable.
            let mut groups: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
            for pod in &selected {
                let Some(ip) = pod.ips.iter().find(|ip| IpFamily::of(**ip) == *family) else {
                    continue;
                };
                let endpoint = json!({
                    "addresses": [ip.to_string()],
                    "conditions": {"ready": pod.ready, "serving": pod.ready, "terminating": false},
                    "nodeName": pod.node_name,
                    "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name},
                });
                let ports = ports_for(svc, Some(pod));
                match groups.iter_mut().find(|(p, _)| *p == ports) {
                    Some((_, endpoints)) => endpoints.push(endpoint),
                    None => groups.push((ports, vec![endpoint])),
                }
            }
            if groups.is_empty() {
                groups.push((ports_for(svc, None), Vec::new()));
            }
            let base = format!("{}-{}", svc.name, family_suffix(*family));
            for (i, (ports, endpoints)) in groups.into_iter().enumerate() {
                let name = if i == 0 {
                    base.clone()
                } else {
                    format!("{base}-{}", i + 1)
                };
                out.push(json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": name,
                        "namespace": svc.namespace,
                        "labels": {SERVICE_NAME_LABEL: svc.name, MANAGED_BY_LABEL: MANAGED_BY},
                    },
                    "addressType": if *family == IpFamily::V4 { "IPv4" } else { "IPv6" },
                    "endpoints": endpoints,
                    "ports": ports,
                }));
            }
        }
    }
    out
}

/// The slice ports of `svc` for `pod`: named after the Service ports, the
/// number resolved through the pod's container ports for a named target
/// (a port that does not resolve is left out for that pod, as upstream).
/// Without a pod, only numeric targets.
fn ports_for(svc: &Service, pod: Option<&Pod>) -> Vec<Value> {
    svc.ports
        .iter()
        .filter_map(|port| {
            let number = match &port.target_port {
                TargetPort::Number(n) => *n,
                TargetPort::Named(name) => {
                    pod?.ports
                        .iter()
                        .find(|c| c.name.as_deref() == Some(name) && c.protocol == port.protocol)?
                        .port
                }
            };
            Some(json!({
                "name": port.name.clone().unwrap_or_default(),
                "protocol": weft_probe::protocol_name(port.protocol),
                "port": number,
            }))
        })
        .collect()
}

fn family_suffix(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "ipv4",
        IpFamily::V6 => "ipv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects;
    use weft_model::{EndpointSlice, Protocol};

    fn service(spec: Value) -> Service {
        Service::from_value(&json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "x"}, "spec": spec}))
        .unwrap()
    }

    fn pod(name: &str, labels: &str, ips: &[&str], ready: bool) -> Pod {
        let mut raw = objects::pod(
            "x",
            name,
            "node1",
            &objects::parse_labels(labels).unwrap(),
            &[(Protocol::Tcp, 8080)],
        );
        let ips: Vec<_> = ips.iter().map(|i| i.parse().unwrap()).collect();
        objects::set_pod_running(&mut raw, &ips, None);
        if !ready {
            raw["status"]["conditions"][3]["status"] = json!("False");
        }
        let text = raw.to_string();
        match weft_model::parse_manifests(&text).unwrap().remove(0) {
            weft_model::Object::Pod(p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn selectors(sel: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        BTreeMap::from([("x/web".into(), objects::parse_labels(sel).unwrap())])
    }

    #[test]
    fn slices_per_family_from_selected_pods_with_named_ports_resolved() {
        let svc = service(json!({
            "clusterIPs": ["10.96.0.1", "fd00:10:96::1"], "ipFamilies": ["IPv4", "IPv6"],
            "ipFamilyPolicy": "PreferDualStack",
            "ports": [{"name": "http", "port": 80, "targetPort": "serve-8080-tcp"}]}));
        let pods = [
            pod("a", "app=web", &["10.244.1.2", "fd00:10:244:1::2"], true),
            pod("b", "app=web", &["10.244.2.2"], false),
            pod("c", "app=db", &["10.244.2.3"], true),
        ];
        let slices = desired_slices(&[svc], &selectors("app=web"), &pods);
        assert_eq!(slices.len(), 2);
        let v4 = EndpointSlice::from_value(&slices[0]).unwrap();
        assert_eq!(v4.name, "web-ipv4");
        assert_eq!(v4.service.as_deref(), Some("web"));
        assert_eq!(v4.endpoints.len(), 2);
        assert!(v4.endpoints[0].conditions.ready);
        assert!(!v4.endpoints[1].conditions.ready);
        assert_eq!(v4.endpoints[0].node_name.as_deref(), Some("node1"));
        assert_eq!(v4.ports[0].port, Some(8080));
        assert_eq!(v4.ports[0].name.as_deref(), Some("http"));
        let v6 = EndpointSlice::from_value(&slices[1]).unwrap();
        assert_eq!(v6.name, "web-ipv6");
        assert_eq!(v6.endpoints.len(), 1);
        assert_eq!(
            slices[0]["metadata"]["labels"][MANAGED_BY_LABEL],
            MANAGED_BY
        );
    }

    #[test]
    fn no_selector_no_slices_and_no_pods_an_empty_slice() {
        let svc = service(json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}));
        assert!(desired_slices(std::slice::from_ref(&svc), &BTreeMap::new(), &[]).is_empty());
        let slices = desired_slices(&[svc], &selectors("app=web"), &[]);
        assert_eq!(slices.len(), 1);
        let empty = EndpointSlice::from_value(&slices[0]).unwrap();
        assert!(empty.endpoints.is_empty());
        assert_eq!(empty.ports[0].port, Some(80));
    }
}

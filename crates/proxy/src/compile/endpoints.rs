//! Which endpoints a Service port sends traffic to, per address family.
//!
//! The rules are kube-proxy's (`pkg/proxy/topology.go`,
//! `CategorizeEndpoints`): ready endpoints only; when none is ready,
//! endpoints that are serving while terminating, so that a rolling update
//! of the last pods does not drop connections; the port number comes from
//! the slice's port whose name and protocol match the Service port (the
//! EndpointSlice controller has already resolved a named `targetPort` to
//! each pod's number, which may differ between slices).

use std::collections::BTreeMap;
use std::net::IpAddr;

use weft_model::{EndpointSlice, IpFamily, Service, ServicePort};

/// One endpoint of a Service port: where connections are DNATed to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Target {
    /// The endpoint's (first) address.
    pub ip: IpAddr,
    /// The port on the endpoint.
    pub port: u16,
    /// The endpoint runs on the node being compiled for.
    pub local: bool,
}

/// The usable endpoints of `port` of `service` in `family`, sorted and
/// without duplicates (an address may appear in two slices while the
/// controller moves it).
pub(crate) fn targets(
    service: &Service,
    port: &ServicePort,
    family: IpFamily,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<Target> {
    // Address → (target, ready, serving-while-terminating); a ready copy
    // wins over a non-ready one.
    let mut found: BTreeMap<IpAddr, (Target, bool, bool)> = BTreeMap::new();
    for slice in slices.iter().filter(|s| {
        s.namespace == service.namespace
            && s.service.as_deref() == Some(service.name.as_str())
            && s.family() == Some(family)
    }) {
        let Some(number) = slice
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
            .and_then(|p| p.port)
        else {
            continue; // this slice does not carry the port
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint.addresses.first().copied() else {
                continue;
            };
            let c = endpoint.conditions;
            let entry = (
                Target {
                    ip,
                    port: number,
                    local: endpoint.node_name.as_deref() == Some(node_name),
                },
                c.ready,
                c.serving && c.terminating,
            );
            match found.get(&ip) {
                Some((_, true, _)) => {}
                _ => {
                    found.insert(ip, entry);
                }
            }
        }
    }
    let ready: Vec<Target> = found
        .values()
        .filter(|(_, ready, _)| *ready)
        .map(|(t, _, _)| t.clone())
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    found
        .into_values()
        .filter(|(_, _, terminating)| *terminating)
        .map(|(t, _, _)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use weft_model::{
        AddressType, Endpoint, EndpointConditions, EndpointPort, Protocol, TargetPort,
    };

    use super::*;

    fn service() -> Service {
        Service {
            namespace: "ns".into(),
            name: "web".into(),
            service_type: Default::default(),
            cluster_ips: vec!["10.96.0.1".parse().unwrap()],
            ip_families: vec![IpFamily::V4],
            external_ips: vec![],
            load_balancer_ips: vec![],
            ports: vec![port()],
            session_affinity: Default::default(),
            external_traffic_policy: Default::default(),
            internal_traffic_policy: Default::default(),
            headless: false,
            external_name: None,
        }
    }

    fn port() -> ServicePort {
        ServicePort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Named("web".into()),
            node_port: None,
        }
    }

    fn endpoint(ip: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint {
            addresses: vec![ip.parse().unwrap()],
            conditions: EndpointConditions {
                ready,
                serving,
                terminating,
            },
            node_name: Some(if ip.ends_with('1') { "me" } else { "other" }.into()),
            zone: None,
        }
    }

    fn slice(name: &str, port: u16, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            namespace: "ns".into(),
            name: name.into(),
            service: Some("web".into()),
            address_type: AddressType::Ipv4,
            endpoints,
            ports: vec![EndpointPort {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                port: Some(port),
            }],
        }
    }

    fn ips(targets: &[Target]) -> Vec<String> {
        targets
            .iter()
            .map(|t| format!("{}:{}{}", t.ip, t.port, if t.local { " local" } else { "" }))
            .collect()
    }

    #[test]
    fn ready_only_and_ports_per_slice() {
        let a = slice(
            "a",
            8080,
            vec![
                endpoint("10.0.0.1", true, true, false),
                endpoint("10.0.0.2", false, true, true),
            ],
        );
        let b = slice("b", 9090, vec![endpoint("10.0.0.3", true, true, false)]);
        let got = targets(&service(), &port(), IpFamily::V4, &[&a, &b], "me");
        assert_eq!(ips(&got), ["10.0.0.1:8080 local", "10.0.0.3:9090"]);
    }

    #[test]
    fn terminating_serving_only_without_ready() {
        let a = slice(
            "a",
            8080,
            vec![
                endpoint("10.0.0.1", false, false, true),
                endpoint("10.0.0.2", false, true, true),
                endpoint("10.0.0.3", false, false, false),
            ],
        );
        let got = targets(&service(), &port(), IpFamily::V4, &[&a], "me");
        assert_eq!(ips(&got), ["10.0.0.2:8080"]);
    }

    #[test]
    fn other_services_families_and_ports_are_ignored() {
        let mut other = slice("o", 1, vec![endpoint("10.0.0.5", true, true, false)]);
        other.service = Some("db".into());
        let mut wrong_port = slice("p", 1, vec![endpoint("10.0.0.6", true, true, false)]);
        wrong_port.ports[0].name = Some("metrics".into());
        let mut all_ports = slice("q", 1, vec![endpoint("10.0.0.7", true, true, false)]);
        all_ports.ports[0].port = None;
        let v4 = slice("r", 1, vec![endpoint("10.0.0.8", true, true, false)]);
        let got = targets(
            &service(),
            &port(),
            IpFamily::V6,
            &[&other, &wrong_port, &all_ports, &v4],
            "me",
        );
        assert!(got.is_empty());
        let got = targets(
            &service(),
            &port(),
            IpFamily::V4,
            &[&other, &wrong_port, &all_ports],
            "me",
        );
        assert!(got.is_empty());
    }

    #[test]
    fn duplicate_address_prefers_the_ready_copy() {
        let a = slice("a", 80, vec![endpoint("10.0.0.2", false, false, false)]);
        let b = slice("b", 80, vec![endpoint("10.0.0.2", true, true, false)]);
        let got = targets(&service(), &port(), IpFamily::V4, &[&a, &b], "me");
        assert_eq!(ips(&got), ["10.0.0.2:80"]);
        let got = targets(&service(), &port(), IpFamily::V4, &[&b, &a], "me");
        assert_eq!(ips(&got), ["10.0.0.2:80"]);
    }
}

//! Services and EndpointSlices from realistic API objects, and malformed
//! ones (each rejected on its own, naming the field).

use serde_json::json;

use super::*;
use crate::service::{AddressType, ServiceType};

fn service(value: serde_json::Value) -> Result<Service, Error> {
    Service::from_value(&value)
}

fn slice(value: serde_json::Value) -> Result<EndpointSlice, Error> {
    EndpointSlice::from_value(&value)
}

fn field_of(err: Error) -> String {
    match err {
        Error::Field { field, .. } => field,
        other => panic!("expected a field error, got {other}"),
    }
}

fn dual_stack_node_port() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00:96::10"],
            "ipFamilies": ["IPv4", "IPv6"],
            "externalIPs": ["192.0.2.10"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}
            ],
            "sessionAffinity": "ClientIP",
            "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Local"
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"hostname": "lb.example"}]}}
    })
}

#[test]
fn service_with_every_field() {
    let s = service(dual_stack_node_port()).unwrap();
    assert_eq!(s.key(), "shop/web");
    assert_eq!(s.service_type, ServiceType::LoadBalancer);
    assert_eq!(
        s.cluster_ips,
        vec![
            "10.96.0.10".parse::<IpAddr>().unwrap(),
            "fd00:96::10".parse().unwrap()
        ]
    );
    assert_eq!(s.ip_families, vec![IpFamily::V4, IpFamily::V6]);
    assert_eq!(
        s.external_ips,
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        s.load_balancer_ips,
        vec!["198.51.100.7".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        s.ports[0],
        ServicePort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Named("web".into()),
            node_port: Some(30080),
        }
    );
    assert_eq!(s.ports[1].protocol, Protocol::Udp);
    assert_eq!(s.ports[1].target_port, TargetPort::Number(5353));
    assert_eq!(
        s.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 10_800
        }
    );
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
    assert!(s.is_proxied() && s.has_node_ports());
}

#[test]
fn defaults_of_a_minimal_service() {
    let s = service(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "10.96.0.5", "ports": [{"port": 5432}],
                 "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}}}
    }))
    .unwrap();
    assert_eq!(s.namespace, "default");
    assert_eq!(s.service_type, ServiceType::ClusterIp);
    assert_eq!(s.ip_families, vec![IpFamily::V4]);
    assert_eq!(s.ports[0].target_port, TargetPort::Number(5432));
    assert_eq!(
        s.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 30
        }
    );
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
}

#[test]
fn headless_and_external_name_are_not_proxied() {
    let headless = service(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
        "spec": {"clusterIP": "None", "ipFamilies": ["IPv6"]}
    }))
    .unwrap();
    assert!(headless.headless && !headless.is_proxied());
    assert!(headless.cluster_ips.is_empty());
    assert_eq!(headless.ip_families, vec![IpFamily::V6]);
    let alias = service(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }))
    .unwrap();
    assert_eq!(alias.external_name.as_deref(), Some("db.example.com"));
    assert!(!alias.is_proxied());
}

#[test]
fn invalid_services_name_the_field() {
    let cases = [
        (
            json!({"type": "Weird", "ports": [{"port": 1}]}),
            "spec.type",
        ),
        (
            json!({"clusterIP": "10.0.0.300", "ports": [{"port": 1}]}),
            "spec.clusterIP",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.2"], "ports": [{"port": 1}]}),
            "spec.clusterIP",
        ),
        (
            json!({"clusterIPs": ["10.0.0.1", "10.0.0.2"], "ports": [{"port": 1}]}),
            "spec.clusterIPs",
        ),
        (
            json!({"clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv6"], "ports": [{"port": 1}]}),
            "spec.ipFamilies[0]",
        ),
        (json!({"clusterIP": "10.0.0.1"}), "spec.ports"),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 0}]}),
            "spec.ports[0].port",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1, "protocol": "ICMP"}]}),
            "spec.ports[0].protocol",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1, "targetPort": "Bad_Name"}]}),
            "spec.ports[0].targetPort",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1}, {"port": 2, "name": "b"}]}),
            "spec.ports[0].name",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1, "name": "a"}, {"port": 2, "name": "a"}]}),
            "spec.ports[1].name",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1, "nodePort": 30000}]}),
            "spec.ports[0].nodePort",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1}], "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1}], "externalTrafficPolicy": "Nearby"}),
            "spec.externalTrafficPolicy",
        ),
        (
            json!({"clusterIP": "10.0.0.1", "ports": [{"port": 1}], "externalIPs": ["x"]}),
            "spec.externalIPs[0]",
        ),
    ];
    for (spec, field) in cases {
        let err = service(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": "n"},
            "spec": spec
        }))
        .unwrap_err();
        assert!(err.to_string().contains("Service n/bad"), "{err}");
        assert_eq!(field_of(err), field);
    }
}

#[test]
fn endpoint_slice_with_conditions_and_defaults() {
    let s = slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": "n1", "zone": "z1"},
            {"addresses": ["10.244.2.5"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": ["10.244.2.6"], "conditions": {"ready": false}}
        ],
        "ports": [{"name": "http", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 53}]
    }))
    .unwrap();
    assert_eq!(s.service.as_deref(), Some("web"));
    assert_eq!(s.address_type, AddressType::Ipv4);
    assert_eq!(s.family(), Some(IpFamily::V4));
    let c: Vec<_> = s.endpoints.iter().map(|e| e.conditions).collect();
    assert_eq!(
        c[0],
        EndpointConditions {
            ready: true,
            serving: true,
            terminating: false
        }
    );
    assert_eq!(
        c[1],
        EndpointConditions {
            ready: false,
            serving: true,
            terminating: true
        }
    );
    assert_eq!(
        c[2],
        EndpointConditions {
            ready: false,
            serving: false,
            terminating: false
        }
    );
    assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
    assert_eq!(s.endpoints[0].zone.as_deref(), Some("z1"));
    assert_eq!(
        s.ports[1],
        EndpointPort {
            name: Some("dns".into()),
            protocol: Protocol::Udp,
            port: Some(53)
        }
    );
}

#[test]
fn invalid_slices_name_the_field() {
    let cases = [
        (json!({"addressType": "IPv5"}), "addressType"),
        (
            json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]}),
            "endpoints[0].addresses",
        ),
        (
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}),
            "endpoints[0].addresses",
        ),
        (
            json!({"addressType": "IPv6", "endpoints": [{"addresses": ["nope"]}]}),
            "endpoints[0].addresses[0]",
        ),
        (
            json!({"addressType": "IPv4", "ports": [{"port": 70000}]}),
            "ports[0].port",
        ),
        (
            json!({"addressType": "IPv4", "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
            "ports[1].name",
        ),
    ];
    for (body, field) in cases {
        let mut doc = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "bad"}
        });
        doc.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let err = slice(doc).unwrap_err();
        assert_eq!(field_of(err), field);
    }
}

#[test]
fn fqdn_slices_carry_no_addresses() {
    let s = slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "f"}, "addressType": "FQDN",
        "endpoints": [{"addresses": ["db.example.com"]}]
    }))
    .unwrap();
    assert_eq!(s.family(), None);
    assert!(s.endpoints[0].addresses.is_empty());
}

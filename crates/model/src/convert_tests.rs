//! Conversions from realistic API-server objects, and malformed ones.

use serde_json::json;

use super::*;

fn node(value: serde_json::Value) -> core::Node {
    serde_json::from_value(value).unwrap()
}

fn pod(value: serde_json::Value) -> core::Pod {
    serde_json::from_value(value).unwrap()
}

fn kind_node() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "worker-1",
            "labels": {"kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux"},
            "annotations": {"weft.dev/vtep-mac": "02:00:00:00:00:01"}
        },
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
        "status": {"addresses": [
            {"type": "Hostname", "address": "worker-1"},
            {"type": "ExternalIP", "address": "203.0.113.7"},
            {"type": "InternalIP", "address": "172.18.0.3"},
            {"type": "InternalIP", "address": "fc00:f853:ccd:e793::3"}
        ]}
    })
}

#[test]
fn node_from_api_object() {
    let n = Node::try_from(&node(kind_node())).unwrap();
    assert_eq!(n.name, "worker-1");
    assert_eq!(n.labels["kubernetes.io/os"], "linux");
    assert_eq!(n.annotations["weft.dev/vtep-mac"], "02:00:00:00:00:01");
    assert_eq!(
        n.pod_cidrs,
        vec![
            "10.244.1.0/24".parse::<IpNet>().unwrap(),
            "fd00:10:244:1::/64".parse().unwrap()
        ]
    );
    let addrs: Vec<IpAddr> = ["172.18.0.3", "fc00:f853:ccd:e793::3", "203.0.113.7"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(n.addresses, addrs, "InternalIP first, host names dropped");
}

#[test]
fn node_legacy_pod_cidr_and_bare_node() {
    let n = Node::try_from(&node(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n"}, "spec": {"podCIDR": "10.244.2.0/24"}
    })))
    .unwrap();
    assert_eq!(n.pod_cidrs, vec!["10.244.2.0/24".parse::<IpNet>().unwrap()]);
    let bare = Node::try_from(&node(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}}),
    ))
    .unwrap();
    assert!(bare.pod_cidrs.is_empty() && bare.addresses.is_empty() && bare.labels.is_empty());
}

#[test]
fn node_malformed_fields_are_named() {
    let mut v = kind_node();
    v["spec"]["podCIDRs"][1] = json!("fd00::/129");
    let err = Node::try_from(&node(v)).unwrap_err().to_string();
    assert!(
        err.contains("Node worker-1") && err.contains("spec.podCIDRs[1]"),
        "{err}"
    );

    let mut v = kind_node();
    v["spec"]["podCIDRs"][0] = json!("10.244.1.5/24");
    let err = Node::try_from(&node(v)).unwrap_err().to_string();
    assert!(
        err.contains("spec.podCIDRs[0]") && err.contains("host bits"),
        "{err}"
    );

    let mut v = kind_node();
    v["status"]["addresses"][2]["address"] = json!("172.18.0.300");
    let err = Node::try_from(&node(v)).unwrap_err().to_string();
    assert!(err.contains("status.addresses[2].address"), "{err}");

    let err = Node::try_from(&node(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {}}),
    ))
    .unwrap_err();
    assert!(matches!(err, Error::MissingName { kind: "Node" }), "{err}");
}

#[test]
fn namespace_from_api_object() {
    let ns: core::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "prod", "labels": {"kubernetes.io/metadata.name": "prod", "team": "a"}}
    }))
    .unwrap();
    let ns = Namespace::try_from(&ns).unwrap();
    assert_eq!(ns.name, "prod");
    assert_eq!(ns.labels.len(), 2);
}

fn running_pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d4b9", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {
            "nodeName": "worker-1",
            "initContainers": [{"name": "proxy", "image": "p", "restartPolicy": "Always",
                "ports": [{"containerPort": 15001, "name": "proxy"}]}],
            "containers": [
                {"name": "web", "image": "nginx", "ports": [
                    {"containerPort": 80, "name": "http"},
                    {"containerPort": 53, "protocol": "UDP"}
                ]},
                {"name": "metrics", "image": "m", "ports": [
                    {"containerPort": 9090, "name": "metrics", "protocol": "SCTP"}
                ]}
            ]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}],
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"}
            ]
        }
    })
}

#[test]
fn pod_from_api_object() {
    let p = Pod::try_from(&pod(running_pod())).unwrap();
    assert_eq!(p.key(), "prod/web-7d4b9");
    assert_eq!(p.node_name.as_deref(), Some("worker-1"));
    assert_eq!(
        p.ips,
        vec![
            "10.244.1.5".parse::<IpAddr>().unwrap(),
            "fd00:10:244:1::5".parse().unwrap()
        ]
    );
    let port = |name: Option<&str>, port, protocol| ContainerPort {
        name: name.map(str::to_owned),
        port,
        protocol,
    };
    assert_eq!(
        p.ports,
        vec![
            port(Some("http"), 80, Protocol::Tcp),
            port(None, 53, Protocol::Udp),
            port(Some("metrics"), 9090, Protocol::Sctp),
            port(Some("proxy"), 15001, Protocol::Tcp),
        ]
    );
    assert!(!p.host_network);
    assert_eq!(p.phase, PodPhase::Running);
    assert!(p.ready);
}

#[test]
fn pod_fallbacks_and_defaults() {
    let mut v = running_pod();
    v["status"].as_object_mut().unwrap().remove("podIPs");
    v["status"]["conditions"][1]["status"] = json!("False");
    v["metadata"].as_object_mut().unwrap().remove("namespace");
    v["spec"]["hostNetwork"] = json!(true);
    let p = Pod::try_from(&pod(v)).unwrap();
    assert_eq!(
        p.ips,
        vec!["10.244.1.5".parse::<IpAddr>().unwrap()],
        "falls back to podIP"
    );
    assert!(!p.ready);
    assert!(p.host_network);
    assert_eq!(p.namespace, "default");

    let pending = Pod::try_from(&pod(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"},
        "spec": {"containers": [{"name": "c"}]}
    })))
    .unwrap();
    assert!(pending.ips.is_empty() && pending.node_name.is_none() && !pending.ready);
    assert_eq!(pending.phase, PodPhase::Unknown);
}

#[test]
fn pod_malformed_fields_are_named() {
    let mut v = running_pod();
    v["status"]["podIPs"][1]["ip"] = json!("not-an-ip");
    let err = Pod::try_from(&pod(v)).unwrap_err().to_string();
    assert!(
        err.contains("Pod prod/web-7d4b9") && err.contains("status.podIPs[1].ip"),
        "{err}"
    );

    let mut v = running_pod();
    v["spec"]["containers"][0]["ports"][1]["containerPort"] = json!(70000);
    let err = Pod::try_from(&pod(v)).unwrap_err().to_string();
    assert!(
        err.contains("spec.containers[web].ports[1].containerPort"),
        "{err}"
    );

    let mut v = running_pod();
    v["spec"]["containers"][1]["ports"][0]["protocol"] = json!("ICMP");
    let err = Pod::try_from(&pod(v)).unwrap_err().to_string();
    assert!(
        err.contains("spec.containers[metrics].ports[0].protocol") && err.contains("ICMP"),
        "{err}"
    );
}

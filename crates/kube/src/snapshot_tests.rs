//! Store contents to a snapshot: order, rejection, digest.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::digest::ObjectVersion;

fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<K> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn objects() -> Objects {
    Objects {
        nodes: vec![
            obj(
                json!({"metadata": {"name": "n2", "resourceVersion": "12"}, "spec": {"podCIDRs": ["10.244.2.0/24"]}}),
            ),
            obj(
                json!({"metadata": {"name": "n1", "resourceVersion": "11"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}}),
            ),
        ],
        namespaces: vec![obj(
            json!({"metadata": {"name": "default", "resourceVersion": "1"}}),
        )],
        pods: vec![
            obj(
                json!({"metadata": {"name": "b", "namespace": "default", "resourceVersion": "21"},
                       "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
                       "status": {"podIPs": [{"ip": "10.244.1.3"}]}}),
            ),
            obj(
                json!({"metadata": {"name": "a", "namespace": "default", "resourceVersion": "22"},
                       "spec": {"containers": [{"name": "c"}]},
                       "status": {"podIPs": [{"ip": "not-an-ip"}]}}),
            ),
        ],
        policies: vec![
            obj(
                json!({"metadata": {"name": "bad", "namespace": "default", "resourceVersion": "31"},
                       "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}}),
            ),
            obj(
                json!({"metadata": {"name": "good", "namespace": "default", "resourceVersion": "32"},
                       "spec": {"podSelector": {}}}),
            ),
        ],
        services: vec![obj(
            json!({"metadata": {"name": "nop", "namespace": "default", "resourceVersion": "41"},
                                  "spec": {"clusterIP": "10.96.0.5"}}),
        )],
        slices: vec![obj(
            json!({"metadata": {"name": "s", "namespace": "default", "resourceVersion": "51"},
                                "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.3"]}]}),
        )],
    }
}

#[test]
fn snapshot_sorts_converts_and_rejects_like_the_file_source() {
    let snap = objects().snapshot(7);
    let s = &snap.snapshot;
    assert_eq!(s.revision, 7);
    let nodes: Vec<_> = s.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, ["n1", "n2"]);
    assert_eq!(s.namespaces.len(), 1);
    assert_eq!(s.pods.len(), 1);
    assert_eq!(s.pods[0].name, "b");
    assert_eq!(s.policies.len(), 1);
    assert_eq!(s.policies[0].name, "good");
    assert!(s.services.is_empty());
    assert_eq!(s.slices.len(), 1);
    let rejected: Vec<_> = s.rejected.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        rejected,
        [
            "Pod/default/a",
            "NetworkPolicy/default/bad",
            "Service/default/nop"
        ]
    );
    assert!(
        s.rejected[0].1.contains("status.podIPs[0].ip"),
        "{:?}",
        s.rejected[0]
    );
    assert!(
        s.rejected[2].1.contains("spec.ports"),
        "{:?}",
        s.rejected[2]
    );
}

#[test]
fn digest_covers_every_stored_object_rejected_ones_too() {
    let snap = objects().snapshot(1);
    let want = digest([
        ObjectVersion {
            kind: "Node",
            namespace: None,
            name: "n1",
            resource_version: "11",
        },
        ObjectVersion {
            kind: "Node",
            namespace: None,
            name: "n2",
            resource_version: "12",
        },
        ObjectVersion {
            kind: "Namespace",
            namespace: None,
            name: "default",
            resource_version: "1",
        },
        ObjectVersion {
            kind: "Pod",
            namespace: Some("default"),
            name: "a",
            resource_version: "22",
        },
        ObjectVersion {
            kind: "Pod",
            namespace: Some("default"),
            name: "b",
            resource_version: "21",
        },
        ObjectVersion {
            kind: "NetworkPolicy",
            namespace: Some("default"),
            name: "bad",
            resource_version: "31",
        },
        ObjectVersion {
            kind: "NetworkPolicy",
            namespace: Some("default"),
            name: "good",
            resource_version: "32",
        },
        ObjectVersion {
            kind: "Service",
            namespace: Some("default"),
            name: "nop",
            resource_version: "41",
        },
        ObjectVersion {
            kind: "EndpointSlice",
            namespace: Some("default"),
            name: "s",
            resource_version: "51",
        },
    ]);
    assert_eq!(snap.digest, want);
    // Another resourceVersion of one object changes it.
    let mut other = objects();
    other.namespaces = vec![obj(
        json!({"metadata": {"name": "default", "resourceVersion": "2"}}),
    )];
    assert_ne!(other.snapshot(1).digest, want);
}

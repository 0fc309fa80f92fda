//! Stored objects to a snapshot: order, rejection, digest.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde_json::json;

use super::*;
use crate::store::{Stored, key_of};

fn put<K, M>(store: &mut KindStore<M>, v: serde_json::Value)
where
    K: serde::de::DeserializeOwned + kube::ResourceExt,
    for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
{
    let object: K = serde_json::from_value(v).unwrap();
    store.apply(key_of(&object), Stored::convert(object));
}

/// Stored in an order other than the snapshot's, to prove it sorts.
fn stores() -> Stores {
    let mut s = Stores::default();
    put::<core::Node, _>(
        &mut s.nodes,
        json!({"metadata": {"name": "n2", "resourceVersion": "12"}, "spec": {"podCIDRs": ["10.244.2.0/24"]}}),
    );
    put::<core::Node, _>(
        &mut s.nodes,
        json!({"metadata": {"name": "n1", "resourceVersion": "11"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}}),
    );
    put::<core::Namespace, _>(
        &mut s.namespaces,
        json!({"metadata": {"name": "default", "resourceVersion": "1"}}),
    );
    put::<core::Pod, _>(
        &mut s.pods,
        json!({"metadata": {"name": "b", "namespace": "default", "resourceVersion": "21"},
               "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
               "status": {"podIPs": [{"ip": "10.244.1.3"}]}}),
    );
    put::<core::Pod, _>(
        &mut s.pods,
        json!({"metadata": {"name": "a", "namespace": "default", "resourceVersion": "22"},
               "spec": {"containers": [{"name": "c"}]},
               "status": {"podIPs": [{"ip": "not-an-ip"}]}}),
    );
    put::<networking::NetworkPolicy, _>(
        &mut s.policies,
        json!({"metadata": {"name": "bad", "namespace": "default", "resourceVersion": "31"},
               "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}}),
    );
    put::<networking::NetworkPolicy, _>(
        &mut s.policies,
        json!({"metadata": {"name": "good", "namespace": "default", "resourceVersion": "32"},
               "spec": {"podSelector": {}}}),
    );
    put::<core::Service, _>(
        &mut s.services,
        json!({"metadata": {"name": "nop", "namespace": "default", "resourceVersion": "41"},
               "spec": {"clusterIP": "10.96.0.5"}}),
    );
    put::<discovery::EndpointSlice, _>(
        &mut s.slices,
        json!({"metadata": {"name": "s", "namespace": "default", "resourceVersion": "51"},
               "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.3"]}]}),
    );
    s
}

#[test]
fn snapshot_sorts_converts_and_rejects_like_the_file_source() {
    let snap = stores().share(7).snapshot();
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
    let snap = stores().share(1).snapshot();
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
    let mut other = stores();
    put::<core::Namespace, _>(
        &mut other.namespaces,
        json!({"metadata": {"name": "default", "resourceVersion": "2"}}),
    );
    assert_ne!(other.share(1).snapshot().digest, want);
}

#[test]
fn a_shared_snapshot_is_unaffected_by_later_events() {
    let mut s = stores();
    let shared = s.share(3);
    // Deleted and replaced after the lock was released, before the copy.
    s.nodes.delete(&(None, "n1".to_owned()));
    put::<core::Node, _>(
        &mut s.nodes,
        json!({"metadata": {"name": "n2", "resourceVersion": "13"}, "spec": {"podCIDRs": ["10.244.9.0/24"]}}),
    );
    let snap = shared.snapshot().snapshot;
    let nodes: Vec<_> = snap
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.pod_cidrs[0].to_string()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("n1", "10.244.1.0/24".into()),
            ("n2", "10.244.2.0/24".into())
        ]
    );
    // The store holds its own copy still.
    assert_eq!(s.share(4).snapshot().snapshot.nodes.len(), 1);
}

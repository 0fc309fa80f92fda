use serde_json::json;

use super::*;

#[test]
fn yaml_lists_and_empty_documents_flatten() {
    let text = "---\n\
                apiVersion: v1\nkind: List\nitems:\n\
                - {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n\
                - {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n\
                ---\n\
                ---\n\
                apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n";
    let docs = flatten(parse_text(text).unwrap());
    let names: Vec<_> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn json_arrays_parse() {
    let docs = parse_text(r#" [{"kind":"A"},{"kind":"B"}]"#).unwrap();
    assert_eq!(docs.len(), 2);
    assert!(matches!(parse_text("{nope"), Err(Error::Parse(_))));
    assert!(matches!(parse_text("a: [1"), Err(Error::Parse(_))));
}

#[test]
fn namespaces_default_for_namespaced_kinds_and_vanish_for_cluster_kinds() {
    let pod = prepare(
        0,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    )
    .unwrap();
    assert_eq!(pod.value["metadata"]["namespace"], "default");
    assert_eq!(pod.key.namespace.as_deref(), Some("default"));

    let node = json!({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": "n1", "namespace": "x", "resourceVersion": "9"}});
    let node = prepare(0, node).unwrap();
    assert_eq!(node.value["metadata"], json!({"name": "n1"}));
    assert_eq!(node.key.namespace, None);
}

#[test]
fn invalid_documents_say_why() {
    let cases = [
        (json!("text"), "not a mapping"),
        (
            json!({"kind": "Pod", "metadata": {"name": "p"}}),
            "apiVersion",
        ),
        (
            json!({"apiVersion": "v1", "metadata": {"name": "p"}}),
            "kind",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod"}),
            "without metadata",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}}),
            "metadata.name",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}}),
            "DNS-1123",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a.b"}}),
            "namespace",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}),
            "label",
        ),
        (
            json!({"apiVersion": "v1", "kind": "../x", "metadata": {"name": "p"}}),
            "kind",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                "spec": {"podCIDRs": ["10.0.0.1/24"]}}),
            "host bits",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": "nope"}}),
            "decode",
        ),
    ];
    for (doc, want) in cases {
        let err = prepare(3, doc.clone()).unwrap_err().to_string();
        assert!(err.starts_with("document 3: "), "{doc}: {err}");
        assert!(err.contains(want), "{doc}: {err} lacks {want:?}");
    }
}

#[test]
fn other_groups_kinds_are_not_modelled() {
    let doc = json!({"apiVersion": "example.com/v1", "kind": "Node", "metadata": {"name": "n"},
                     "spec": {"podCIDRs": "whatever"}});
    assert!(prepare(0, doc).is_ok());
    let doc = json!({"apiVersion": "example.com/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "n"}, "spec": {"podSelector": "whatever"}});
    assert!(prepare(0, doc).is_ok());
}

#[test]
fn network_policies_are_validated_with_the_field_named() {
    let policy = |spec: serde_json::Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "p", "namespace": "x"}, "spec": spec})
    };
    assert!(prepare(0, policy(json!({"podSelector": {}}))).is_ok());
    let cases = [
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
            "spec.podSelector",
        ),
        (
            json!({"podSelector": {}, "egress": [{"ports": [{"protocol": "ICMP"}]}]}),
            "spec.egress[0].ports[0].protocol",
        ),
        (
            json!({"podSelector": {}, "policyTypes": ["Sideways"]}),
            "policyTypes",
        ),
        (json!({"podSelector": 7}), "decode"),
    ];
    for (spec, want) in cases {
        let err = prepare(2, policy(spec.clone())).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2: NetworkPolicy/x/p"),
            "{spec}: {err}"
        );
        assert!(err.contains(want), "{spec}: {err} lacks {want:?}");
    }
}

#[test]
fn status_is_kept_only_when_the_replacement_has_none() {
    let old = json!({"status": {"podIP": "10.0.0.5"}});
    let mut bare = json!({"spec": {}});
    keep_status(&mut bare, &old);
    assert_eq!(bare["status"]["podIP"], "10.0.0.5");
    let mut own = json!({"status": {"podIP": "10.0.0.6"}});
    keep_status(&mut own, &old);
    assert_eq!(own["status"]["podIP"], "10.0.0.6");
}

#[test]
fn content_comparison_ignores_resource_version() {
    let mut a = json!({"metadata": {"name": "x"}});
    let b = a.clone();
    stamp(&mut a, 7);
    assert_eq!(a["metadata"]["resourceVersion"], "7");
    assert!(same_content(&a, &b));
}

#[test]
fn services_and_slices_are_validated_with_the_field_named() {
    let svc = |spec: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop"}, "spec": spec})
    };
    // No clusterIP yet: the allocator (the lab, the API server) fills it.
    assert!(prepare(0, svc(json!({"ports": [{"port": 80}]}))).is_ok());
    let err = prepare(
        1,
        svc(json!({"clusterIP": "nope", "ports": [{"port": 80}]})),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("document 1: Service/shop/web"), "{err}");
    assert!(err.contains("clusterIP"), "{err}");

    let slice = |endpoints: serde_json::Value| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-4", "namespace": "shop",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "endpoints": endpoints, "ports": [{"port": 8080}]})
    };
    assert!(prepare(0, slice(json!([{"addresses": ["10.244.1.5"]}]))).is_ok());
    let err = prepare(0, slice(json!([{"addresses": ["fd00::5"]}])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("EndpointSlice/shop/web-4"), "{err}");
    // Another group's EndpointSlice is not Kubernetes'.
    let doc = json!({"apiVersion": "example.com/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "n", "namespace": "x"}, "endpoints": 7});
    assert!(prepare(0, doc).is_ok());
}

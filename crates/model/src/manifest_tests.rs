//! Manifest parsing: multi-document YAML, JSON, Lists, and bad input.

use super::*;
use crate::objects::{PodPhase, Protocol};

const CLUSTER_YAML: &str = include_str!("../tests/fixtures/cluster.yaml");
const LIST_JSON: &str = include_str!("../tests/fixtures/list.json");

#[test]
fn multi_document_yaml() {
    let objects = parse_manifests(CLUSTER_YAML).unwrap();
    assert_eq!(objects.len(), 4, "trailing empty document skipped");
    let Object::Node(node) = &objects[0] else {
        panic!("{:?}", objects[0])
    };
    assert_eq!(node.name, "node-a");
    assert_eq!(node.pod_cidrs, vec!["10.244.0.0/24".parse().unwrap()]);
    assert_eq!(
        node.addresses,
        vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let Object::Namespace(ns) = &objects[1] else {
        panic!("{:?}", objects[1])
    };
    assert_eq!(&ns.labels["team"], "payments");
    let Object::Pod(pod) = &objects[2] else {
        panic!("{:?}", objects[2])
    };
    assert_eq!(pod.key(), "shop/api");
    assert_eq!(pod.ports[0].name.as_deref(), Some("http"));
    assert_eq!(pod.ports[0].port, 8080);
    assert_eq!(pod.ports[0].protocol, Protocol::Tcp);
    let Object::Other {
        api_version,
        kind,
        name,
        raw,
    } = &objects[3]
    else {
        panic!("{:?}", objects[3])
    };
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("networking.k8s.io/v1", "NetworkPolicy")
    );
    assert_eq!(name.as_deref(), Some("allow-frontend"));
    assert_eq!(
        raw.pointer("/spec/podSelector/matchLabels/app").unwrap(),
        "api"
    );
}

#[test]
fn json_list() {
    let objects = parse_manifests(LIST_JSON).unwrap();
    assert_eq!(objects.len(), 3);
    assert!(matches!(&objects[0], Object::Namespace(ns) if ns.name == "default"));
    let Object::Pod(pod) = &objects[1] else {
        panic!("{:?}", objects[1])
    };
    assert_eq!(pod.phase, PodPhase::Pending);
    assert!(matches!(&objects[2], Object::Other { kind, .. } if kind == "Service"));
}

#[test]
fn json_and_yaml_agree() {
    // The same List as YAML gives the same objects.
    let value: serde_json::Value = serde_json::from_str(LIST_JSON).unwrap();
    let yaml = serde_yaml_ng::to_string(&value).unwrap();
    assert_eq!(
        parse_manifests(&yaml).unwrap(),
        parse_manifests(LIST_JSON).unwrap()
    );
}

#[test]
fn single_json_object_and_array() {
    let one = r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}"#;
    assert_eq!(parse_manifests(one).unwrap().len(), 1);
    let many = format!("[{one}, {one}]");
    assert_eq!(parse_manifests(&many).unwrap().len(), 2);
}

#[test]
fn empty_input_gives_nothing() {
    assert!(parse_manifests("").unwrap().is_empty());
    assert!(
        parse_manifests("---\n# only a comment\n---\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn errors_name_the_document() {
    let bad_yaml = "apiVersion: v1\nkind: Namespace\n---\nkey: [unclosed\n";
    let err = parse_manifests(bad_yaml).unwrap_err();
    assert!(matches!(err, Error::Yaml { index: 1, .. }), "{err}");

    let no_kind = "apiVersion: v1\nmetadata: {name: x}\n";
    assert!(
        parse_manifests(no_kind)
            .unwrap_err()
            .to_string()
            .contains("kind")
    );

    let scalar = "just a string\n";
    assert!(matches!(
        parse_manifests(scalar),
        Err(Error::Document { index: 0, .. })
    ));

    let bad_cidr = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
        apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDRs: [bogus]}\n";
    let err = parse_manifests(bad_cidr).unwrap_err().to_string();
    assert!(
        err.contains("document 1") && err.contains("Node n") && err.contains("spec.podCIDRs[0]"),
        "{err}"
    );

    // A label that YAML reads as a boolean is not a string: Kubernetes rejects it too.
    let bool_label = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {on: true}}\n";
    let err = parse_manifests(bool_label).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { kind, name, .. } if kind == "Pod" && name == "p"),
        "{err}"
    );

    assert!(matches!(parse_manifests("{not json"), Err(Error::Json(_))));
    let list_without_items = r#"{"apiVersion": "v1", "kind": "List"}"#;
    assert!(matches!(
        parse_manifests(list_without_items),
        Err(Error::Document { .. })
    ));
}

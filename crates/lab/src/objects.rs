//! The Kubernetes objects the lab writes, as the JSON an API server would
//! hold, and the small parsers for the CLI's `k=v` and `tcp/80` arguments.
//! Pure functions: everything here is unit-tested without root.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};
use weft_model::Protocol;
use weft_probe::protocol_name;

use crate::error::{LabError, Result};

/// The label every namespace carries (the API server sets it; the lab plays
/// the API server).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The container port's name the lab gives `protocol/port`:
/// `serve-80-tcp`, as the netpol model's policies refer to them.
pub fn port_name(protocol: Protocol, port: u16) -> String {
    format!(
        "serve-{port}-{}",
        protocol_name(protocol).to_ascii_lowercase()
    )
}

/// One label change: set a value, or remove the key (`k-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelEdit {
    /// `k=v`.
    Set(String, String),
    /// `k-`.
    Remove(String),
}

impl LabelEdit {
    /// Parses `k=v` or `k-`, validating key and value as Kubernetes does.
    pub fn parse(text: &str) -> Result<LabelEdit> {
        let invalid =
            |e: weft_model::SelectorError| LabError::Invalid(format!("label {text:?}: {e}"));
        if let Some((k, v)) = text.split_once('=') {
            weft_model::selector::validate_label_key(k).map_err(invalid)?;
            weft_model::selector::validate_label_value(k, v).map_err(invalid)?;
            return Ok(LabelEdit::Set(k.to_string(), v.to_string()));
        }
        if let Some(k) = text.strip_suffix('-') {
            weft_model::selector::validate_label_key(k).map_err(invalid)?;
            return Ok(LabelEdit::Remove(k.to_string()));
        }
        Err(LabError::Invalid(format!(
            "label {text:?}: expected key=value or key-"
        )))
    }
}

/// Parses `k=v,k2=v2` into a map (no removals).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match LabelEdit::parse(part)? {
            LabelEdit::Set(k, v) => {
                out.insert(k, v);
            }
            LabelEdit::Remove(_) => {
                return Err(LabError::Invalid(format!(
                    "label {part:?}: a removal makes no sense here"
                )));
            }
        }
    }
    Ok(out)
}

/// Applies label edits to an object's `metadata.labels` (kubectl label
/// semantics, with overwrite allowed). Returns whether anything changed.
pub fn edit_labels(object: &mut Value, edits: &[LabelEdit]) -> Result<bool> {
    let meta = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| LabError::Invalid("object has no metadata".into()))?;
    let labels = meta
        .entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| LabError::Invalid("metadata.labels is not a map".into()))?;
    let mut changed = false;
    for edit in edits {
        match edit {
            LabelEdit::Set(k, v) => {
                changed |= labels.insert(k.clone(), json!(v)) != Some(json!(v));
            }
            LabelEdit::Remove(k) => changed |= labels.remove(k).is_some(),
        }
    }
    Ok(changed)
}

/// A Node as kube-controller-manager and the kubelet leave it: pod CIDRs
/// in the spec, InternalIPs in the status.
pub fn node(name: &str, pod_cidrs: &[IpNet], internal_ips: &[IpAddr]) -> Value {
    let cidrs: Vec<String> = pod_cidrs.iter().map(ToString::to_string).collect();
    let addresses: Vec<Value> = internal_ips
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .chain(std::iter::once(
            json!({"type": "Hostname", "address": name}),
        ))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs},
        "status": {"addresses": addresses},
    })
}

/// A Namespace with `labels` plus `kubernetes.io/metadata.name`.
pub fn namespace(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut labels = labels.clone();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}

/// A Pod bound to `node`, Pending (the lab's kubelet has not started it).
pub fn pod(
    namespace: &str,
    name: &str,
    node: &str,
    labels: &BTreeMap<String, String>,
    ports: &[(Protocol, u16)],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(protocol, port)| {
            json!({
                "name": port_name(*protocol, *port),
                "containerPort": port,
                "protocol": protocol_name(*protocol),
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "server", "image": "weft/lab-server", "ports": ports}],
        },
        "status": {"phase": "Pending"},
    })
}

/// Marks a Pod Running and Ready with the addresses CNI gave it, as the
/// kubelet does: phase, addresses and conditions are set, whatever else
/// the status holds (the API server's `qosClass`, immutable) is kept.
pub fn set_pod_running(pod: &mut Value, ips: &[IpAddr], host_ip: Option<IpAddr>) {
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    status["phase"] = json!("Running");
    status["podIPs"] = json!(pod_ips);
    status["conditions"] = json!([
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
        {"type": "Ready", "status": "True"},
    ]);
    // What a kubelet reports per container once it runs: `kubectl get pods`
    // counts READY from these, and the endpoint controllers read only the
    // Ready condition above.
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "ready": true,
                        "started": true,
                        "restartCount": 0,
                        "state": {"running": {}},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    pod["status"]["containerStatuses"] = json!(statuses);
    let status = &mut pod["status"];
    if let Some(ip) = ips.first() {
        status["podIP"] = json!(ip.to_string());
    }
    if let Some(ip) = host_ip {
        status["hostIP"] = json!(ip.to_string());
        status["hostIPs"] = json!([{"ip": ip.to_string()}]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{Object, parse_manifests};

    #[test]
    fn port_names_match_the_netpol_model() {
        assert_eq!(port_name(Protocol::Tcp, 80), "serve-80-tcp");
        assert_eq!(port_name(Protocol::Udp, 81), "serve-81-udp");
    }

    #[test]
    fn label_edits_follow_kubectl() {
        assert_eq!(
            LabelEdit::parse("a=b").unwrap(),
            LabelEdit::Set("a".into(), "b".into())
        );
        assert_eq!(
            LabelEdit::parse("a-").unwrap(),
            LabelEdit::Remove("a".into())
        );
        assert!(LabelEdit::parse("a").is_err());
        assert!(LabelEdit::parse("-=x").is_err());
        let mut ns = namespace("x", &parse_labels("ns=x").unwrap());
        let edits = [
            LabelEdit::parse("ns-").unwrap(),
            LabelEdit::parse("team=blue").unwrap(),
        ];
        assert!(edit_labels(&mut ns, &edits).unwrap());
        assert!(
            !edit_labels(&mut ns, &edits[1..]).unwrap(),
            "same value again"
        );
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "x", "team": "blue"})
        );
    }

    #[test]
    fn objects_read_back_through_the_model() {
        let node = node(
            "node1",
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd00:10:244:1::/64".parse().unwrap(),
            ],
            &["172.30.0.11".parse().unwrap()],
        );
        let mut pod = pod(
            "x",
            "a",
            "node1",
            &parse_labels("pod=a").unwrap(),
            &[(Protocol::Tcp, 80), (Protocol::Udp, 80)],
        );
        set_pod_running(&mut pod, &["10.244.1.2".parse().unwrap()], None);
        let ns = namespace("x", &BTreeMap::new());
        let text = serde_json::to_string(&json!([node, pod, ns])).unwrap();
        let objects = parse_manifests(&text).unwrap();
        let Object::Node(n) = &objects[0] else {
            panic!("{objects:?}")
        };
        assert_eq!(n.pod_cidrs.len(), 2);
        assert_eq!(n.addresses, vec!["172.30.0.11".parse::<IpAddr>().unwrap()]);
        let Object::Pod(p) = &objects[1] else {
            panic!("{objects:?}")
        };
        assert_eq!(p.node_name.as_deref(), Some("node1"));
        assert!(p.ready);
        assert_eq!(p.ips.len(), 1);
        assert_eq!(p.ports[1].name.as_deref(), Some("serve-80-udp"));
        let Object::Namespace(ns) = &objects[2] else {
            panic!("{objects:?}")
        };
        assert_eq!(&ns.labels[NAMESPACE_NAME_LABEL], "x");
    }
}

//! Trimming keeps exactly what the model reads: a full object as the API
//! server returns it converts to the same model object before and after.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use serde_json::json;

use super::*;

fn managed_fields() -> serde_json::Value {
    json!([{
        "apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet",
        "operation": "Update", "time": "2025-01-01T00:00:00Z",
        "fieldsV1": {"f:status": {"f:conditions": {}}}
    }])
}

fn full_pod() -> core::Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "shop", "uid": "u-1", "resourceVersion": "4711",
            "generateName": "web-", "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": true}", "other": "x"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u-0"}],
            "finalizers": ["example.com/f"],
            "managedFields": managed_fields()
        },
        "spec": {
            "nodeName": "n1", "hostNetwork": false, "serviceAccountName": "default",
            "volumes": [{"name": "data", "emptyDir": {}}],
            "initContainers": [{"name": "init", "image": "busybox", "ports": [{"name": "boot", "containerPort": 9000, "protocol": "UDP"}]}],
            "containers": [{
                "name": "app", "image": "nginx:1.27", "command": ["nginx"], "args": ["-g", "daemon off;"],
                "env": [{"name": "A", "value": "b"}],
                "resources": {"limits": {"cpu": "1"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP", "hostPort": 80},
                    {"containerPort": 8443}
                ]
            }],
            "tolerations": [{"key": "k", "operator": "Exists"}]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:244:1::5"}],
            "qosClass": "Burstable", "startTime": "2025-01-01T00:00:01Z",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2025-01-01T00:00:01Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:02Z", "message": "ok"}
            ],
            "containerStatuses": [{"name": "app", "image": "nginx:1.27", "imageID": "sha256:x", "ready": true, "restartCount": 0}]
        }
    }))
    .unwrap()
}

fn full_node() -> core::Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "n1", "uid": "u-n1", "resourceVersion": "99",
            "labels": {"kubernetes.io/hostname": "n1"},
            "annotations": {"weft.dev/vtep-mac": "02:00:00:00:00:01", "weft.dev/vtep-ip": "172.30.0.11",
                            "node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": managed_fields()
        },
        "spec": {
            "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"],
            "providerID": "lab://n1", "taints": [{"key": "k", "effect": "NoSchedule"}]
        },
        "status": {
            "addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "ExternalIP", "address": "192.0.2.1"},
                {"type": "InternalIP", "address": "172.30.0.11"}
            ],
            "capacity": {"cpu": "2", "memory": "4Gi"},
            "allocatable": {"cpu": "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "images": [{"names": ["registry/a:1", "registry/a@sha256:x"], "sizeBytes": 123456}],
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "c", "kernelVersion": "k",
                         "kubeProxyVersion": "", "kubeletVersion": "v1.37.2", "machineID": "m", "operatingSystem": "linux",
                         "osImage": "o", "systemUUID": "s"}
        }
    }))
    .unwrap()
}

#[test]
fn pod_trim_keeps_what_the_model_reads() {
    let full = full_pod();
    let mut trimmed = full.clone();
    pod(&mut trimmed);
    let want = weft_model::Pod::try_from(&full).unwrap();
    assert_eq!(weft_model::Pod::try_from(&trimmed).unwrap(), want);
    assert_eq!(want.ports.len(), 3, "init and main container ports survive");

    let meta = &trimmed.metadata;
    assert_eq!(meta.resource_version.as_deref(), Some("4711"));
    assert_eq!(meta.uid.as_deref(), Some("u-1"));
    assert!(meta.managed_fields.is_none());
    assert!(
        meta.annotations.is_none(),
        "the Pod model reads no annotations"
    );
    assert!(meta.owner_references.is_none() && meta.finalizers.is_none());
    let spec = trimmed.spec.as_ref().unwrap();
    assert!(spec.volumes.is_none() && spec.tolerations.is_none());
    let app = &spec.containers[0];
    assert!(app.image.is_none() && app.env.is_none() && app.command.is_none());
    assert_eq!(app.ports.as_ref().unwrap()[0].host_port, None);
    let status = trimmed.status.as_ref().unwrap();
    assert!(status.container_statuses.is_none() && status.host_ip.is_none());
    let conditions = status.conditions.as_ref().unwrap();
    assert_eq!(conditions.len(), 1);
    assert!(conditions[0].last_transition_time.is_none() && conditions[0].message.is_none());
}

#[test]
fn trimmed_pod_is_much_smaller() {
    let full = full_pod();
    let mut trimmed = full.clone();
    pod(&mut trimmed);
    let size = |p: &core::Pod| serde_json::to_vec(p).unwrap().len();
    assert!(
        size(&trimmed) * 2 < size(&full),
        "{} vs {}",
        size(&trimmed),
        size(&full)
    );
}

#[test]
fn node_trim_keeps_what_the_model_reads() {
    let full = full_node();
    let mut trimmed = full.clone();
    node(&mut trimmed);
    let want = weft_model::Node::try_from(&full).unwrap();
    assert_eq!(weft_model::Node::try_from(&trimmed).unwrap(), want);
    assert_eq!(want.annotations.len(), 3);
    assert!(trimmed.metadata.managed_fields.is_none());
    assert_eq!(trimmed.metadata.resource_version.as_deref(), Some("99"));
    let status = trimmed.status.as_ref().unwrap();
    assert!(status.images.is_none() && status.node_info.is_none() && status.conditions.is_none());
    assert!(trimmed.spec.as_ref().unwrap().taints.is_none());
}

#[test]
fn node_trim_drops_the_last_applied_copy() {
    let mut n = full_node();
    n.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(LAST_APPLIED.into(), "{}".into());
    node(&mut n);
    let annotations = n.metadata.annotations.unwrap();
    assert!(!annotations.contains_key(LAST_APPLIED));
    assert_eq!(annotations["weft.dev/vtep-mac"], "02:00:00:00:00:01");
}

#[test]
fn policy_service_slice_namespace_trims_keep_the_model() {
    let policy: networking::NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "shop", "resourceVersion": "5", "managedFields": managed_fields(),
                     "annotations": {"a": "b"}},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}
    }))
    .unwrap();
    let mut t = policy.clone();
    network_policy(&mut t);
    assert_eq!(
        weft_model::NetworkPolicy::try_from(&t).unwrap(),
        weft_model::NetworkPolicy::try_from(&policy).unwrap()
    );
    assert!(t.metadata.managed_fields.is_none());

    let svc: core::Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "6", "managedFields": managed_fields()},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
                 "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]},
                   "conditions": [{"type": "x", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "r", "message": "m"}]}
    }))
    .unwrap();
    let mut t = svc.clone();
    service(&mut t);
    assert_eq!(
        weft_model::Service::try_from(&t).unwrap(),
        weft_model::Service::try_from(&svc).unwrap()
    );
    assert!(t.spec.as_ref().unwrap().selector.is_none());

    let slice: discovery::EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "7",
                     "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "c"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "u"}],
                     "managedFields": managed_fields()},
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                       "nodeName": "n1", "zone": "z1", "hostname": "web-0",
                       "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "shop", "uid": "u-1"},
                       "hints": {"forZones": [{"name": "z1"}]}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap();
    let mut t = slice.clone();
    endpoint_slice(&mut t);
    assert_eq!(
        weft_model::EndpointSlice::try_from(&t).unwrap(),
        weft_model::EndpointSlice::try_from(&slice).unwrap()
    );
    let ep = &t.endpoints.as_ref().unwrap()[0];
    assert!(ep.target_ref.is_none() && ep.hints.is_none() && ep.hostname.is_none());

    let ns: core::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "resourceVersion": "8", "labels": {"team": "a"}, "managedFields": managed_fields()},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    }))
    .unwrap();
    let mut t = ns.clone();
    namespace(&mut t);
    assert_eq!(
        weft_model::Namespace::try_from(&t).unwrap(),
        weft_model::Namespace::try_from(&ns).unwrap()
    );
    assert!(t.spec.is_none() && t.status.is_none());
}

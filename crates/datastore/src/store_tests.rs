use std::fs;
use std::sync::Arc;
use std::thread;

use serde_json::{Value, json};
use weft_testkit::TempDir;

use super::*;

fn store() -> (TempDir, Datastore) {
    let dir = TempDir::new("datastore").unwrap();
    let ds = Datastore::open(dir.path()).unwrap();
    (dir, ds)
}

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    })
}

const MANIFEST: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDRs: [10.244.1.0/24]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}}
";

#[test]
fn apply_get_list_delete() {
    let (dir, ds) = store();
    assert_eq!(ds.revision().unwrap(), 0);
    assert_eq!(ds.apply_text(MANIFEST).unwrap(), 1);

    let web = ds.get("Pod", Some("shop"), "web").unwrap().unwrap();
    assert_eq!(web["metadata"]["resourceVersion"], "1");
    assert_eq!(web["spec"]["nodeName"], "n1");
    assert!(dir.path().join("objects/pods/shop/web.json").is_file());
    assert!(dir.path().join("objects/nodes/_cluster/n1.json").is_file());
    assert!(
        dir.path()
            .join("objects/networkpolicies/shop/deny.json")
            .is_file()
    );
    assert_eq!(ds.get("pod", Some("default"), "web").unwrap(), None);

    ds.apply(vec![pod("api", json!({}))]).unwrap();
    let names: Vec<_> = ds
        .list("Pod")
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]))
        .collect();
    assert_eq!(names, [r#""default"/"api""#, r#""shop"/"web""#]);

    assert_eq!(ds.delete("Pod", Some("shop"), "web").unwrap(), Some(3));
    assert_eq!(ds.delete("Pod", Some("shop"), "web").unwrap(), None);
    assert_eq!(ds.get("Pod", Some("shop"), "web").unwrap(), None);
    assert_eq!(ds.revision().unwrap(), 3);

    let gone = ds
        .delete_docs(crate::documents::parse_text(MANIFEST).unwrap())
        .unwrap();
    assert_eq!(
        gone,
        Some(4),
        "one transaction for the three remaining objects"
    );
    assert_eq!(ds.list("Node").unwrap(), Vec::<Value>::new());
    assert_eq!(ds.delete_docs(vec![pod("nope", json!({}))]).unwrap(), None);
}

#[test]
fn each_transaction_bumps_the_revision_once() {
    let (_dir, ds) = store();
    let docs: Vec<_> = (0..5).map(|i| pod(&format!("p{i}"), json!({}))).collect();
    assert_eq!(ds.apply(docs).unwrap(), 1);
    for p in ds.list("Pod").unwrap() {
        assert_eq!(p["metadata"]["resourceVersion"], "1");
    }
    assert_eq!(ds.apply(vec![pod("p0", json!({"v": "2"}))]).unwrap(), 2);
    let p1 = ds.get("Pod", None, "p1").unwrap().unwrap();
    assert_eq!(
        p1["metadata"]["resourceVersion"], "1",
        "untouched objects keep theirs"
    );
}

#[test]
fn unchanged_content_commits_nothing() {
    let (_dir, ds) = store();
    assert_eq!(ds.apply(vec![pod("p", json!({}))]).unwrap(), 1);
    assert_eq!(ds.apply(vec![pod("p", json!({}))]).unwrap(), 1);
    assert_eq!(ds.apply(vec![]).unwrap(), 1);
    assert_eq!(ds.update("Pod", None, "p", |_| {}).unwrap(), Some(1));
}

#[test]
fn an_invalid_document_rejects_the_whole_call() {
    let (dir, ds) = store();
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad!"}});
    let err = ds.apply(vec![pod("ok", json!({})), bad]).unwrap_err();
    assert!(matches!(err, Error::Invalid { index: 1, .. }), "{err}");
    assert_eq!(ds.revision().unwrap(), 0);
    assert_eq!(ds.get("Pod", None, "ok").unwrap(), None);
    assert!(!dir.path().join("revision").exists());

    let err =
        ds.apply_text("apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDRs: [bad]}\n");
    assert!(err.unwrap_err().to_string().contains("spec.podCIDRs[0]"));
    assert!(ds.delete_docs(vec![json!({"kind": "Pod"})]).is_err());
}

#[test]
fn an_invalid_network_policy_is_refused_at_apply_naming_the_field() {
    let (dir, ds) = store();
    let text = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ok, namespace: x}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 70000}]}]
";
    let err = ds.apply_text(text).unwrap_err().to_string();
    assert!(err.starts_with("document 1: "), "{err}");
    assert!(err.contains("x/bad"), "{err}");
    assert!(err.contains("spec.ingress[0].ports[0].port"), "{err}");
    assert_eq!(ds.revision().unwrap(), 0);
    assert!(!dir.path().join("objects").join("networkpolicies").exists());
}

#[test]
fn replacing_keeps_reported_status() {
    let (_dir, ds) = store();
    ds.apply(vec![pod("p", json!({}))]).unwrap();
    ds.update("Pod", None, "p", |p| {
        p["status"] = json!({"podIP": "10.244.1.5", "phase": "Running"});
    })
    .unwrap();
    ds.apply(vec![pod("p", json!({"app": "x"}))]).unwrap();
    let p = ds.get("Pod", None, "p").unwrap().unwrap();
    assert_eq!(p["status"]["podIP"], "10.244.1.5");
    assert_eq!(p["metadata"]["labels"]["app"], "x");
}

#[test]
fn update_modifies_in_place_and_guards_identity() {
    let (_dir, ds) = store();
    ds.apply_text(MANIFEST).unwrap();
    let rev = ds
        .update("Node", None, "n1", |n| {
            n["metadata"]["annotations"] = json!({"weft.io/vtep-mac": "02:00:00:00:00:01"});
        })
        .unwrap();
    assert_eq!(rev, Some(2));
    let n1 = ds.get("Node", None, "n1").unwrap().unwrap();
    assert_eq!(
        n1["metadata"]["annotations"]["weft.io/vtep-mac"],
        "02:00:00:00:00:01"
    );
    assert_eq!(n1["metadata"]["resourceVersion"], "2");

    assert_eq!(
        ds.update("Node", None, "n9", |_| panic!("not called"))
            .unwrap(),
        None
    );
    let err = ds
        .update("Pod", Some("shop"), "web", |p| {
            p["metadata"]["name"] = json!("other")
        })
        .unwrap_err();
    assert!(err.to_string().contains("renamed"), "{err}");
    let err = ds
        .update("Pod", Some("shop"), "web", |p| {
            p["status"] = json!({"podIP": "x"})
        })
        .unwrap_err();
    assert!(matches!(err, Error::Update { .. }), "{err}");
    assert_eq!(ds.revision().unwrap(), 2);
}

#[test]
fn concurrent_writers_never_lose_an_update() {
    const THREADS: usize = 8;
    const UPDATES: usize = 20;
    let (dir, ds) = store();
    ds.apply(vec![pod("counter", json!({"count": "0"}))])
        .unwrap();
    let root = Arc::new(dir.path().to_owned());
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let root = Arc::clone(&root);
            thread::spawn(move || {
                // Each thread its own handle, as separate processes would.
                let ds = Datastore::open(&*root).unwrap();
                for _ in 0..UPDATES {
                    ds.update("Pod", None, "counter", |p| {
                        let label = &mut p["metadata"]["labels"]["count"];
                        let n: usize = label.as_str().unwrap().parse().unwrap();
                        *label = json!((n + 1).to_string());
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let p = ds.get("Pod", None, "counter").unwrap().unwrap();
    let total = THREADS * UPDATES;
    assert_eq!(p["metadata"]["labels"]["count"], total.to_string());
    assert_eq!(ds.revision().unwrap(), 1 + total as u64);
}

#[test]
fn status_writes_do_not_bump_the_revision() {
    let (_dir, ds) = store();
    ds.apply_text(MANIFEST).unwrap();
    ds.write_status("n1", &json!({"applied": 1})).unwrap();
    ds.write_status("n2", &json!({"applied": 0})).unwrap();
    ds.write_status("n1", &json!({"applied": 2})).unwrap();
    assert_eq!(ds.revision().unwrap(), 1);
    assert_eq!(ds.read_status("n1").unwrap(), Some(json!({"applied": 2})));
    assert_eq!(ds.read_status("n3").unwrap(), None);
    let all = ds.statuses().unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(ds.write_status("../x", &json!({})).is_err());
}

#[test]
fn crash_leftover_temporary_files_are_ignored_and_cleaned() {
    let (dir, ds) = store();
    ds.apply_text(MANIFEST).unwrap();
    let pods = dir.path().join("objects/pods/shop");
    let leftover = pods.join(".web.json.tmp-999999-0");
    fs::write(&leftover, "{\"truncated").unwrap();
    let status_leftover = dir.path().join("status/.n1.json.tmp-999999-3");
    fs::write(&status_leftover, "").unwrap();
    let rev_leftover = dir.path().join(".revision.tmp-999999-1");
    fs::write(&rev_leftover, "").unwrap();

    assert_eq!(ds.list("Pod").unwrap().len(), 1);
    let snap = ds.snapshot().unwrap();
    assert_eq!(snap.pods.len(), 1);
    assert!(snap.rejected.is_empty(), "{:?}", snap.rejected);
    assert!(ds.statuses().unwrap().is_empty());

    Datastore::open(dir.path()).unwrap();
    assert!(!leftover.exists() && !status_leftover.exists() && !rev_leftover.exists());
    assert!(pods.join("web.json").exists());
}

#[test]
fn arguments_cannot_escape_the_store() {
    let (_dir, ds) = store();
    assert!(ds.get("Pod", Some(".."), "x").is_err());
    assert!(ds.get("../objects", None, "x").is_err());
    assert!(ds.delete("Pod", None, "a/b").is_err());
    assert!(ds.list("..").is_err());
}

#[test]
fn snapshot_converts_and_reports_rejected_objects() {
    let (dir, ds) = store();
    ds.apply_text(MANIFEST).unwrap();
    ds.update("Pod", Some("shop"), "web", |p| {
        p["status"] = json!({"podIPs": [{"ip": "10.244.1.5"}], "phase": "Running",
                             "conditions": [{"type": "Ready", "status": "True"}]});
    })
    .unwrap();
    // Hand-edited files: a Pod the model refuses, a file that is not
    // JSON, and an object stored where it does not belong.
    let pods = dir.path().join("objects/pods/shop");
    let mut bad = pod("bad", json!({}));
    bad["metadata"]["namespace"] = json!("shop");
    bad["status"] = json!({"podIP": "not-an-ip"});
    fs::write(pods.join("bad.json"), bad.to_string()).unwrap();
    fs::write(pods.join("torn.json"), "{").unwrap();
    // A policy the API server would refuse, written by hand: it is left
    // out alone, the valid policy stays in force.
    let policies = dir.path().join("objects/networkpolicies/shop");
    let bad_policy = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "bad-cidr", "namespace": "shop"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
    });
    fs::write(policies.join("bad-cidr.json"), bad_policy.to_string()).unwrap();
    fs::write(
        pods.join("elsewhere.json"),
        pod("moved", json!({})).to_string(),
    )
    .unwrap();

    let snap = ds.snapshot().unwrap();
    assert_eq!(snap.revision, 2);
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.nodes[0].pod_cidrs[0].to_string(), "10.244.1.0/24");
    assert_eq!(&snap.namespaces[0].labels["team"], "a");
    assert_eq!(snap.pods.len(), 1);
    let web = &snap.pods[0];
    assert_eq!((web.namespace.as_str(), web.name.as_str()), ("shop", "web"));
    assert_eq!(web.ips[0].to_string(), "10.244.1.5");
    assert!(web.ready);
    assert!(snap.others.is_empty(), "{:?}", snap.others);
    assert_eq!(snap.policies.len(), 1);
    assert_eq!(snap.policies[0].key(), "shop/deny");
    assert!(snap.policies[0].policy_types.ingress);

    let rejected: Vec<_> = snap
        .rejected
        .iter()
        .map(|(what, _)| what.as_str())
        .collect();
    assert_eq!(rejected.len(), 4, "{:?}", snap.rejected);
    assert!(rejected.contains(&"Pod/shop/bad"));
    assert!(rejected.contains(&"NetworkPolicy/shop/bad-cidr"));
    assert!(rejected.contains(&"Pod/default/moved"));
    assert!(rejected.iter().any(|w| w.ends_with("torn.json")));
    let why = &snap
        .rejected
        .iter()
        .find(|(w, _)| w == "Pod/shop/bad")
        .unwrap()
        .1;
    assert!(why.contains("status.podIP"), "{why}");
    let why = &snap
        .rejected
        .iter()
        .find(|(w, _)| w == "NetworkPolicy/shop/bad-cidr")
        .unwrap()
        .1;
    assert!(
        why.contains("spec.ingress[0].from[0].ipBlock.cidr"),
        "{why}"
    );
}

#[test]
fn snapshot_types_services_and_slices_and_leaves_out_bad_ones_alone() {
    let (dir, ds) = store();
    ds.apply_text(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v4
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5], nodeName: node-1}]
ports: [{name: http, port: 8080}]
"#,
    )
    .unwrap();
    // A Service the API server would refuse, written by hand.
    let services = dir.path().join("objects/services/shop");
    let bad = json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "bad", "namespace": "shop"},
                     "spec": {"clusterIP": "10.96.0.11", "ports": []}});
    fs::write(services.join("bad.json"), bad.to_string()).unwrap();

    let snap = ds.snapshot().unwrap();
    assert!(snap.others.is_empty(), "{:?}", snap.others);
    assert_eq!(snap.services.len(), 1);
    assert_eq!(snap.services[0].key(), "shop/web");
    assert_eq!(snap.services[0].cluster_ips[0].to_string(), "10.96.0.10");
    assert_eq!(snap.slices.len(), 1);
    assert_eq!(snap.slices[0].service.as_deref(), Some("web"));
    assert_eq!(
        snap.slices[0].endpoints[0].node_name.as_deref(),
        Some("node-1")
    );
    assert_eq!(snap.rejected.len(), 1, "{:?}", snap.rejected);
    assert_eq!(snap.rejected[0].0, "Service/shop/bad");
    assert!(
        snap.rejected[0].1.contains("spec.ports"),
        "{:?}",
        snap.rejected
    );
}

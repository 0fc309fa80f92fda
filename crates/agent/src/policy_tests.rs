use weft_model::NetworkPolicy;
use weft_netlink::{RTPROT_BOOT, Route};
use weft_policy::PolicyView;
use weft_policy::nft::Ruleset;

use super::*;
use crate::fake::FakeKernel;
use crate::testutil::{net, node, pod};

/// A pod veth (`kind` veth, `weft…` name) or another link.
fn link(index: u32, name: &str, kind: &str) -> LinkState {
    LinkState {
        index,
        name: name.into(),
        mtu: 1500,
        up: true,
        mac: None,
        kind: Some(kind.into()),
        vxlan: None,
    }
}

/// The plugin's host route for a pod address.
fn host_route(dst: &str, oif: u32) -> Route {
    Route {
        dst: net(dst),
        oif: Some(oif),
        protocol: RTPROT_BOOT,
        ..Route::default()
    }
}

fn ruleset(rules: &[&str], known: &[&str]) -> Ruleset {
    let mut r = Ruleset::new(weft_policy::nft::TABLE);
    r.base_chains.insert(
        weft_policy::nft::BASE_CHAIN.into(),
        weft_policy::nft::BaseChain {
            hook: weft_policy::nft::BASE_CHAIN_HOOK.into(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
        },
    );
    r.sets.insert(
        "known4".into(),
        weft_policy::nft::SetDef {
            typ: "ipv4_addr".into(),
            flags: Vec::new(),
            elements: known.iter().map(|s| s.to_string()).collect(),
        },
    );
    r
}

#[test]
fn local_pods_come_from_host_routes_through_pod_veths() {
    let links = vec![
        link(2, "eth0", "veth"),
        link(5, "weft0a1b2c3d4e5", "veth"),
        link(6, "weftfffffffffff", "veth"),
        link(7, "weft.vxlan", "vxlan"),
    ];
    let routes = vec![
        host_route("10.244.1.5/32", 5),
        host_route("fd00:10:244:1::5/128", 5),
        host_route("10.244.1.6/32", 6),
        // Through the VXLAN device, or not a host route: not a pod's.
        host_route("10.244.1.7/32", 7),
        host_route("10.244.1.0/28", 6),
        // A route with no model pod (a pod being created): left out.
        host_route("10.244.1.9/32", 6),
    ];
    let mut b = pod("b", "n1", &["10.244.1.5", "fd00:10:244:1::5"]);
    b.namespace = "x".into();
    let pods = vec![
        b,
        pod("a", "n1", &["10.244.1.6"]),
        pod("c", "n1", &["10.244.1.7"]),
        pod("d", "n1", &["10.244.1.8"]),
        // Another node's pod with a local address is not local.
        pod("e", "n2", &["10.244.1.6"]),
    ];
    let got = local_pods(&pods, "n1", &links, &routes);
    let want = vec![
        LocalPod {
            namespace: "default".into(),
            name: "a".into(),
            ips: vec!["10.244.1.6".parse().unwrap()],
            host_if: "weftfffffffffff".into(),
        },
        LocalPod {
            namespace: "x".into(),
            name: "b".into(),
            ips: vec![
                "10.244.1.5".parse().unwrap(),
                "fd00:10:244:1::5".parse().unwrap(),
            ],
            host_if: "weft0a1b2c3d4e5".into(),
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn a_reused_address_goes_to_the_running_pod_once() {
    let links = vec![link(5, "weft0a1b2c3d4e5", "veth")];
    let routes = vec![host_route("10.244.1.5/32", 5)];
    let mut done = pod("a-old", "n1", &["10.244.1.5"]);
    done.phase = PodPhase::Succeeded;
    let pods = vec![
        done,
        pod("b-new", "n1", &["10.244.1.5"]),
        pod("c-stale", "n1", &["10.244.1.5"]),
    ];
    let got = local_pods(&pods, "n1", &links, &routes);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "b-new");
}

#[test]
fn first_pass_loads_the_whole_table_then_nothing() {
    let mut k = FakeKernel::default();
    let mut state = PolicyState::new();
    let r = ruleset(&["ct state established,related accept"], &["10.244.1.5"]);
    assert_eq!(state.apply(&mut k, r.clone()).unwrap(), PolicyAction::Full);
    assert_eq!(k.policy_scripts.len(), 1);
    let script = &k.policy_scripts[0];
    assert!(script.starts_with("table inet weft-policy {}\ndelete table"));
    assert!(script.ends_with(&stamp(&ruleset_hash(&r))));
    assert_eq!(k.policy_hash, Some(ruleset_hash(&r)));
    assert_eq!(state.apply(&mut k, r).unwrap(), PolicyAction::Unchanged);
    assert_eq!(k.policy_scripts.len(), 1);
}

#[test]
fn a_small_change_is_a_delta_with_a_new_stamp() {
    let mut k = FakeKernel::default();
    let mut state = PolicyState::new();
    let a = ruleset(&["ct state established,related accept"], &["10.244.1.5"]);
    let b = ruleset(
        &["ct state established,related accept"],
        &["10.244.1.5", "10.244.1.6"],
    );
    state.apply(&mut k, a).unwrap();
    assert_eq!(state.apply(&mut k, b.clone()).unwrap(), PolicyAction::Delta);
    let delta = k.policy_scripts.last().unwrap();
    assert!(!delta.contains("delete table"), "{delta}");
    assert!(
        delta.contains("add element inet weft-policy known4 { 10.244.1.6 }"),
        "{delta}"
    );
    assert_eq!(k.policy_hash, Some(ruleset_hash(&b)));
}

#[test]
fn a_restart_over_the_same_table_applies_nothing() {
    let mut k = FakeKernel::default();
    let r = ruleset(&["ct state invalid drop"], &["10.244.1.5"]);
    PolicyState::new().apply(&mut k, r.clone()).unwrap();
    let mut restarted = PolicyState::new();
    assert_eq!(
        restarted.apply(&mut k, r.clone()).unwrap(),
        PolicyAction::Adopted
    );
    assert_eq!(restarted.apply(&mut k, r).unwrap(), PolicyAction::Unchanged);
    assert_eq!(k.policy_scripts.len(), 1);
}

#[test]
fn a_table_gone_or_changed_behind_the_agent_is_reloaded_whole() {
    let mut k = FakeKernel::default();
    let mut state = PolicyState::new();
    let a = ruleset(&["ct state invalid drop"], &["10.244.1.5"]);
    state.apply(&mut k, a.clone()).unwrap();
    k.policy_hash = None;
    assert_eq!(state.apply(&mut k, a.clone()).unwrap(), PolicyAction::Full);
    k.policy_hash = Some("0123".into());
    let b = ruleset(&["ct state invalid drop"], &["10.244.1.6"]);
    assert_eq!(state.apply(&mut k, b).unwrap(), PolicyAction::Full);
    assert!(
        k.policy_scripts
            .iter()
            .all(|s| s.contains("delete table inet weft-policy"))
    );
}

#[test]
fn a_refused_delta_falls_back_to_a_full_load() {
    let mut k = FakeKernel::default();
    let mut state = PolicyState::new();
    state
        .apply(&mut k, ruleset(&["ct state invalid drop"], &["10.244.1.5"]))
        .unwrap();
    k.fail_next_policy = true;
    let b = ruleset(&["ct state invalid drop"], &["10.244.1.6"]);
    assert_eq!(state.apply(&mut k, b.clone()).unwrap(), PolicyAction::Full);
    assert_eq!(k.policy_hash, Some(ruleset_hash(&b)));
    // A full load the kernel refuses is an error naming the table.
    k.fail_next_policy = true;
    k.policy_hash = None;
    let err = state.apply(&mut k, b).unwrap_err().to_string();
    assert!(err.contains("inet weft-policy"), "{err}");
}

#[test]
fn the_stamp_is_read_back_from_an_nft_listing() {
    let listing = "table inet weft-policy {\n\tset agent_state {\n\t\ttype inet_service\n\t\telements = { 0 comment \"weft-agent sha256=ab12\" }\n\t}\n}\n";
    assert_eq!(hash_from_stamp(listing).as_deref(), Some("ab12"));
    assert_eq!(hash_from_stamp(&stamp("cd34")).as_deref(), Some("cd34"));
    assert_eq!(hash_from_stamp("table inet weft-policy {\n}\n"), None);
    assert_eq!(hash_from_stamp("comment \"weft-agent sha256=\""), None);
}

#[test]
fn reconcile_policy_isolates_a_local_pod_under_deny_all() {
    let mut k = FakeKernel::with_underlay(2, "eth0", 1500, &[net("192.168.1.1/24")]);
    k.links.push(link(5, "weft0a1b2c3d4e5", "veth"));
    k.routes.push(host_route("10.244.1.5/32", 5));
    let me = node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true);
    let deny = NetworkPolicy::from_value(&serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all", "namespace": "default"},
        "spec": {"podSelector": {}},
    }))
    .unwrap();
    let view = PolicyView {
        namespaces: vec![weft_model::Namespace {
            name: "default".into(),
            labels: Default::default(),
        }],
        pods: vec![pod("a", "n1", &["10.244.1.5"])],
        policies: vec![deny],
        nodes: vec![me.clone()],
    };
    let mut state = PolicyState::new();
    let report = reconcile_policy(&mut k, &mut state, &view, &me).unwrap();
    assert_eq!(report.action, PolicyAction::Full);
    assert_eq!((report.local_pods, report.policies), (1, 1));
    let script = &k.policy_scripts[0];
    assert!(
        script.contains("\"weft0a1b2c3d4e5\" . 10.244.1.5"),
        "{script}"
    );
    assert!(script.contains("10.244.1.5 : jump"), "{script}");
    let again = reconcile_policy(&mut k, &mut state, &view, &me).unwrap();
    assert_eq!(again.action, PolicyAction::Unchanged);
}

/// The fast path serves only pods the policy chains accept anything for:
/// attached, known to the model, and selected by no policy.
#[test]
fn open_pods_are_the_attached_pods_no_policy_selects() {
    let mut k = FakeKernel::with_underlay(2, "eth0", 1500, &[net("192.168.1.1/24")]);
    k.links.push(link(5, "weft0a1b2c3d4e5", "veth"));
    k.links.push(link(6, "weftfffffffffff", "veth"));
    k.routes.push(host_route("10.244.1.5/32", 5));
    k.routes.push(host_route("10.244.1.6/32", 6));
    // Attached but not (yet) in the model: not open.
    k.routes.push(host_route("10.244.1.9/32", 6));
    let me = node("n1", &["10.244.1.0/24"], &["192.168.1.1"], true);
    let mut a = pod("a", "n1", &["10.244.1.5"]);
    a.labels = [("app", "db")].into_iter().collect();
    let ns = weft_model::Namespace {
        name: "default".into(),
        labels: Default::default(),
    };
    let mut view = PolicyView {
        namespaces: vec![ns],
        pods: vec![a, pod("b", "n1", &["10.244.1.6"])],
        policies: Vec::new(),
        nodes: vec![me.clone()],
    };
    let mut state = PolicyState::new();
    reconcile_policy(&mut k, &mut state, &view, &me).unwrap();
    let ips = |v: &[&str]| {
        v.iter()
            .map(|s| s.parse().unwrap())
            .collect::<BTreeSet<IpAddr>>()
    };
    assert_eq!(*state.open_pods(), ips(&["10.244.1.5", "10.244.1.6"]));
    // An egress-only policy on app=db: pod a is no longer open.
    let egress = NetworkPolicy::from_value(&serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "db-egress", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]},
    }))
    .unwrap();
    view.policies.push(egress);
    reconcile_policy(&mut k, &mut state, &view, &me).unwrap();
    assert_eq!(*state.open_pods(), ips(&["10.244.1.6"]));
}

//! The semantic suite: one case per bullet of the NetworkPolicy semantics
//! (issue 4), each applied alone through `apply`, then synced, probed on
//! TCP and UDP, ports 80 and 81, both families, and compared with the
//! evaluator cell by cell.
//!
//! The netpol model: namespaces x, y, z labelled `ns=<name>`, pods a, b, c
//! in each labelled `pod=<name>`, round-robin over three nodes (so every
//! case has same-node and cross-node pairs), serving TCP and UDP on 80 and
//! 81 under the names `serve-<port>-<tcp|udp>`.

use ipnet::IpNet;
use weft_lab::store::Store;
use weft_lab::{LabState, Layout};

use super::check::{converge, delete_all_policies};

/// A NetworkPolicy document: `spec` is YAML flow text.
pub fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )
}

/// Applies `yaml` as `weftctl apply -f` does.
pub fn apply(layout: &Layout, yaml: &str, what: &str) {
    Store::open(layout)
        .unwrap()
        .apply_text(yaml, what)
        .unwrap_or_else(|e| panic!("apply {what}: {e}"));
}

/// The cases, by name: every one is a set of policies applied together.
pub fn cases(state: &LabState) -> Vec<(&'static str, String)> {
    let (v4, v6) = ip_blocks(state);
    vec![
        (
            "deny-all ingress",
            policy("x", "deny-all", "{podSelector: {}, policyTypes: [Ingress]}"),
        ),
        (
            "allow from the same namespace",
            policy(
                "x",
                "same-ns",
                "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
            ),
        ),
        (
            "namespaceSelector",
            policy(
                "x",
                "from-y",
                "{podSelector: {matchLabels: {pod: a}}, \
                 ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
            ),
        ),
        (
            "podSelector AND namespaceSelector in one peer",
            policy(
                "x",
                "and",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [\
                 {namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]}",
            ),
        ),
        (
            "podSelector OR namespaceSelector in two peers",
            policy(
                "x",
                "or",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [\
                 {namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]}",
            ),
        ),
        (
            "matchExpressions In, NotIn, Exists, DoesNotExist",
            policy(
                "x",
                "in-notin",
                "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}, \
                 ingress: [{from: [{namespaceSelector: {matchExpressions: \
                 [{key: ns, operator: NotIn, values: [y]}]}, \
                 podSelector: {matchExpressions: [{key: pod, operator: Exists}]}}]}]}",
            ) + &policy(
                "z",
                "does-not-exist",
                "{podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [c]}]}, \
                 ingress: [{from: [{podSelector: {matchExpressions: \
                 [{key: tier, operator: DoesNotExist}]}}]}]}",
            ),
        ),
        (
            "ipBlock with except, IPv4 and IPv6",
            policy(
                "y",
                "ip-block",
                &format!(
                    "{{podSelector: {{}}, ingress: [{{from: [\
                     {{ipBlock: {{cidr: \"{}\", except: [\"{}\"]}}}}, \
                     {{ipBlock: {{cidr: \"{}\", except: [\"{}\"]}}}}]}}]}}",
                    v4.0, v4.1, v6.0, v6.1
                ),
            ),
        ),
        (
            "named ports",
            policy(
                "x",
                "named",
                "{podSelector: {}, ingress: [{ports: [{port: serve-80-tcp}, \
                 {port: serve-81-udp, protocol: UDP}]}]}",
            ),
        ),
        (
            "endPort ranges",
            policy(
                "z",
                "ranges",
                "{podSelector: {}, ingress: [{ports: [{port: 81, endPort: 90}, \
                 {port: 70, endPort: 80, protocol: UDP}]}]}",
            ),
        ),
        (
            "egress deny-all",
            policy(
                "y",
                "deny-egress",
                "{podSelector: {}, policyTypes: [Egress]}",
            ),
        ),
        (
            "egress to one port",
            policy(
                "y",
                "egress-81",
                "{podSelector: {matchLabels: {pod: b}}, policyTypes: [Egress], \
                 egress: [{ports: [{port: 81, protocol: TCP}]}]}",
            ),
        ),
        (
            "policyTypes Egress only (ingress rules ignored)",
            policy(
                "z",
                "egress-only",
                "{podSelector: {}, policyTypes: [Egress], \
                 ingress: [{from: [{podSelector: {matchLabels: {pod: nobody}}}]}], \
                 egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}]}]}",
            ),
        ),
        (
            "multiple policies are a union",
            policy(
                "x",
                "union-1",
                "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: \
                 [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]}",
            ) + &policy(
                "x",
                "union-2",
                "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}], \
                 ports: [{port: 81, protocol: UDP}]}]}",
            ),
        ),
        (
            "a rule without ports allows every port",
            policy(
                "y",
                "all-ports",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}",
            ),
        ),
    ]
}

/// Runs every case alone, from no policy; each must deny something, or it
/// would prove nothing about enforcement.
pub fn run_all(layout: &Layout) {
    let state = LabState::require(layout).unwrap();
    for (name, yaml) in cases(&state) {
        delete_all_policies(layout);
        apply(layout, &yaml, name);
        let outcome = converge(layout, name);
        assert!(outcome.denied > 0, "{name}: the evaluator denies nothing");
        assert_eq!(outcome.compared, 4 * 9 * 9 * 2, "{name}");
        println!("    case {name:?}: {} denied cells agree", outcome.denied);
    }
    delete_all_policies(layout);
}

/// An IPv4 and an IPv6 block covering every node's pod CIDR of the family,
/// each with one node's CIDR as the exception (node 2's for IPv4, node 3's
/// for IPv6), as (cidr, except).
fn ip_blocks(state: &LabState) -> ((IpNet, IpNet), (IpNet, IpNet)) {
    let of = |node: usize, v4: bool| -> IpNet {
        *state.nodes[node]
            .pod_cidrs
            .iter()
            .find(|c| matches!(c, IpNet::V4(_)) == v4)
            .expect("dual-stack node")
    };
    let cover = |v4: bool, len: u8| -> IpNet {
        let net = IpNet::new(of(0, v4).addr(), len).unwrap().trunc();
        for n in 0..state.nodes.len() {
            assert!(net.contains(&of(n, v4)), "{net} does not cover node {n}");
        }
        net
    };
    (
        (cover(true, 16), of(1, true)),
        (cover(false, 48), of(2, false)),
    )
}

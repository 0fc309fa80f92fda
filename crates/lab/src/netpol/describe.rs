//! Policy pieces as one-line text, the way an operator reads them in
//! `kubectl get -o yaml` or a `kubectl` label query: `pod=a,ns in (x,y)`,
//! `ipBlock 10.0.0.0/16 except 10.0.1.0/24`, `TCP/80-81`.

use weft_model::{Direction, LabelSelector, NetworkPolicy, Operator, Peer, PolicyPort, PolicyRule};
use weft_policy::RuleRef;

/// A selector in `kubectl -l` syntax; `<all>` for the empty selector,
/// which matches everything.
pub fn selector(s: &LabelSelector) -> String {
    if s.is_empty() {
        return "<all>".to_owned();
    }
    let labels = s.match_labels.iter().map(|(k, v)| format!("{k}={v}"));
    let expressions = s.match_expressions.iter().map(|r| {
        let values = || r.values.join(",");
        match r.op {
            Operator::In => format!("{} in ({})", r.key, values()),
            Operator::NotIn => format!("{} notin ({})", r.key, values()),
            Operator::Exists => r.key.to_string(),
            Operator::DoesNotExist => format!("!{}", r.key),
        }
    });
    labels.chain(expressions).collect::<Vec<_>>().join(",")
}

/// One peer of `from`/`to`.
pub fn peer(p: &Peer) -> String {
    match p {
        Peer::IpBlock(block) if block.except.is_empty() => format!("ipBlock {}", block.cidr),
        Peer::IpBlock(block) => {
            let except: Vec<String> = block.except.iter().map(ToString::to_string).collect();
            format!("ipBlock {} except {}", block.cidr, except.join(","))
        }
        Peer::Selector {
            namespace_selector,
            pod_selector,
        } => {
            let ns = namespace_selector
                .as_ref()
                .map(|s| format!("namespaceSelector {}", selector(s)));
            let pods = pod_selector
                .as_ref()
                .map(|s| format!("podSelector {}", selector(s)));
            match (ns, pods) {
                (Some(ns), Some(pods)) => format!("{ns} and {pods}"),
                (Some(ns), None) => ns,
                (None, Some(pods)) => format!("{pods} (policy's namespace)"),
                (None, None) => "<all pods of the policy's namespace>".to_owned(),
            }
        }
    }
}

/// One entry of `ports`.
pub fn port(p: &PolicyPort) -> String {
    let protocol = weft_probe::protocol_name(p.protocol);
    match &p.port {
        Some(m) => format!("{protocol}/{m}"),
        None => format!("{protocol}/any port"),
    }
}

/// Where a rule reference points in the policy's manifest:
/// `spec.ingress[0].from[1]`, `ports[0]`.
pub fn rule_path(r: &RuleRef) -> String {
    let mut path = format!("spec.{}[{}]", r.direction.rules_field(), r.rule_index);
    if let Some(i) = r.peer_index {
        path.push_str(&format!(".{}[{i}]", r.direction.peers_field()));
    }
    if let Some(i) = r.port_index {
        path.push_str(&format!(".ports[{i}]"));
    }
    path
}

/// What a rule reference allows, in words: the matched peer and port, or
/// "any" where the rule leaves them out. `None` when the policy or rule is
/// not in `policies` (the caller's view is then not the one evaluated).
pub fn rule_match(policies: &[NetworkPolicy], r: &RuleRef) -> Option<String> {
    let policy = policies.iter().find(|p| p.key() == r.policy)?;
    let rule: &PolicyRule = policy.rules(r.direction).get(r.rule_index)?;
    let peers = match r.peer_index {
        Some(i) => peer(rule.peers.get(i)?),
        None => match r.direction {
            Direction::Ingress => "any source".to_owned(),
            Direction::Egress => "any destination".to_owned(),
        },
    };
    let ports = match r.port_index {
        Some(i) => port(rule.ports.get(i)?),
        None => "any port".to_owned(),
    };
    Some(format!("{peers}, {ports}"))
}

#[cfg(test)]
mod tests {
    use weft_model::{IpBlock, Labels, PortMatch, Protocol, Requirement};

    use super::*;

    #[test]
    fn selectors_read_like_kubectl() {
        assert_eq!(selector(&LabelSelector::default()), "<all>");
        let s = LabelSelector {
            match_labels: Labels::from([("pod", "a")]),
            match_expressions: vec![
                Requirement::new("ns", Operator::In, ["x", "y"]),
                Requirement::new("k", Operator::DoesNotExist, [""; 0]),
            ],
        };
        assert_eq!(selector(&s), "pod=a,ns in (x,y),!k");
    }

    #[test]
    fn peers_ports_and_paths() {
        let block = Peer::IpBlock(IpBlock {
            cidr: "10.0.0.0/16".parse().unwrap(),
            except: vec!["10.0.1.0/24".parse().unwrap()],
        });
        assert_eq!(peer(&block), "ipBlock 10.0.0.0/16 except 10.0.1.0/24");
        let both = Peer::Selector {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(LabelSelector::default()),
        };
        assert_eq!(peer(&both), "namespaceSelector <all> and podSelector <all>");
        let range = PolicyPort {
            protocol: Protocol::Udp,
            port: Some(PortMatch::Range {
                first: 80,
                last: 81,
            }),
        };
        assert_eq!(port(&range), "UDP/80-81");
        let r = RuleRef {
            policy: "x/p".into(),
            direction: Direction::Egress,
            rule_index: 2,
            peer_index: Some(0),
            port_index: None,
        };
        assert_eq!(rule_path(&r), "spec.egress[2].to[0]");
    }
}

//! `weftctl policy explain`: the evaluator's verdict on one packet in the
//! lab's live model, and which policies and rules produced it — egress on
//! the source's side, ingress on the destination's side.
//!
//! It explains what the evaluator (the specification) says, not what the
//! kernel does: the differential harness ([`super::diff`]) is what checks
//! that the two agree.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use weft_datastore::Snapshot;
use weft_model::{Direction, Protocol};
use weft_policy::{DirectionVerdict, Endpoint, IpFamily, Packet, PolicyView, evaluate};

use super::describe;
use crate::error::LabError;
use crate::layout::Layout;
use crate::state::family_of;

/// `weftctl policy …`: the state directory and the subcommand.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The lab's state directory (its datastore is the live model).
    #[arg(long, global = true, env = "WEFT_LAB_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: PolicyCmd,
}

/// The policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Whether a packet may pass, and which policies and rules decide it.
    Explain(ExplainArgs),
}

/// `policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The sender: a pod `NAMESPACE/NAME` or an IP address.
    #[arg(long, value_name = "NS/POD|IP", value_parser = parse_endpoint)]
    pub from: Endpoint,
    /// The receiver: a pod `NAMESPACE/NAME` or an IP address.
    #[arg(long, value_name = "NS/POD|IP", value_parser = parse_endpoint)]
    pub to: Endpoint,
    /// Destination port and protocol, `80/TCP` (the protocol defaults to
    /// TCP, in any case).
    #[arg(long, value_name = "PORT[/PROTOCOL]", value_parser = parse_port)]
    pub port: (u16, Protocol),
    /// Address family, 4 or 6 (default: an IP end's family, else the
    /// destination pod's primary family).
    #[arg(long, value_parser = parse_family)]
    pub family: Option<u8>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The packet to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainQuery {
    /// The sender.
    pub from: Endpoint,
    /// The receiver.
    pub to: Endpoint,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// 4 or 6; `None` as [`ExplainArgs::family`] says.
    pub family: Option<u8>,
}

/// The evaluator's verdict on a packet, with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The datastore revision the verdict is about.
    pub revision: u64,
    /// The sender.
    pub from: End,
    /// The receiver.
    pub to: End,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: &'static str,
    /// Destination port.
    pub port: u16,
    /// The family evaluated, 4 or 6 (`None`: neither end has an address).
    pub family: Option<u8>,
    /// Egress and ingress both allow the packet.
    pub allowed: bool,
    /// The sender's egress side.
    pub egress: Side,
    /// The receiver's ingress side.
    pub ingress: Side,
    /// NetworkPolicies the datastore holds but that failed validation, as
    /// (`NetworkPolicy/namespace/name`, error): not in force anywhere.
    pub rejected_policies: Vec<(String, String)>,
}

/// One end of the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct End {
    /// As given: `ns/pod` or an address.
    pub endpoint: String,
    /// The pod (`ns/name`) the end is or whose address it is.
    pub pod: Option<String>,
    /// The pod's node.
    pub node: Option<String>,
    /// The address the packet carries for this end, if known.
    pub address: Option<IpAddr>,
    /// The pod uses its node's network: no policy applies to it.
    pub host_network: bool,
}

/// One direction's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    /// `egress` or `ingress`.
    pub direction: &'static str,
    /// Some policy selects the pod for this direction.
    pub isolated: bool,
    /// The direction lets the packet through.
    pub allowed: bool,
    /// The policies (`namespace/name`) that select the pod for this
    /// direction.
    pub selected_by: Vec<String>,
    /// Every rule that allows the packet, in policy order.
    pub allowed_by: Vec<RuleMatch>,
    /// Ingress from the pod's own node, which policies never block.
    pub from_local_node: bool,
    /// The verdict in one sentence.
    pub summary: String,
}

/// A rule (and the peer and port inside it) that allows the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// The policy, `namespace/name`.
    pub policy: String,
    /// The path in the policy, `spec.ingress[0].from[1].ports[0]`.
    pub path: String,
    /// The matched peer and port in words.
    pub matched: String,
}

/// Parses `NAMESPACE/NAME` or an IP address.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(Endpoint::Ip(addr));
    }
    let (ns, name) = crate::cli::split_pod(text)
        .map_err(|_| format!("{text:?}: expected NAMESPACE/POD or an IP address"))?;
    Ok(Endpoint::pod(&ns, &name))
}

/// Parses `80/TCP`, `53/udp` or `80` (TCP).
pub fn parse_port(text: &str) -> Result<(u16, Protocol), String> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let protocol = weft_probe::parse_protocol(protocol)
        .ok_or_else(|| format!("{text:?}: protocol must be TCP, UDP or SCTP"))?;
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((port, protocol)),
        _ => Err(format!("{text:?}: port must be a number from 1 to 65535")),
    }
}

fn parse_family(text: &str) -> Result<u8, String> {
    match text {
        "4" => Ok(4),
        "6" => Ok(6),
        _ => Err(format!("{text:?}: family must be 4 or 6")),
    }
}

/// Explains `q` against one snapshot of the model. Fails on what the
/// evaluator would silently make up: a pod the datastore does not hold, or
/// an IP end of another family than `--family`.
pub fn explain(snapshot: &Snapshot, q: &ExplainQuery) -> crate::Result<Explanation> {
    let view = super::policy_view(snapshot);
    for end in [&q.from, &q.to] {
        match end {
            Endpoint::Pod { namespace, name } if view.pod(namespace, name).is_none() => {
                return Err(LabError::Invalid(format!(
                    "no pod {end} in the datastore (revision {})",
                    snapshot.revision
                )));
            }
            Endpoint::Ip(addr) if q.family.is_some_and(|f| f != family_of(*addr)) => {
                return Err(LabError::Invalid(format!(
                    "{addr} is not an IPv{} address",
                    q.family.unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    // The family is settled here, with the evaluator's own default rule, so
    // that the addresses shown are the ones it evaluated.
    let family = q.family.or_else(|| default_family(&view, q));
    let mut packet = Packet::new(q.from.clone(), q.to.clone(), q.protocol, q.port);
    packet.family = family.map(|f| if f == 4 { IpFamily::V4 } else { IpFamily::V6 });
    let verdict = evaluate(&view, &packet);
    let from = end(&view, &q.from, family);
    let to = end(&view, &q.to, family);
    let egress = side(&view, Direction::Egress, &from, &verdict.egress);
    let ingress = side(&view, Direction::Ingress, &to, &verdict.ingress);
    let rejected_policies = snapshot
        .rejected
        .iter()
        .filter(|(what, _)| what.starts_with("NetworkPolicy/"))
        .cloned()
        .collect();
    Ok(Explanation {
        revision: snapshot.revision,
        from,
        to,
        protocol: weft_probe::protocol_name(q.protocol),
        port: q.port,
        family,
        allowed: verdict.allowed,
        egress,
        ingress,
        rejected_policies,
    })
}

/// [`Packet::family`]'s rule: an IP end's family, else the destination
/// pod's primary family, else the source pod's.
fn default_family(view: &PolicyView, q: &ExplainQuery) -> Option<u8> {
    let ip = |e: &Endpoint| match e {
        Endpoint::Ip(addr) => Some(family_of(*addr)),
        Endpoint::Pod { .. } => None,
    };
    let primary = |e: &Endpoint| match e {
        Endpoint::Pod { namespace, name } => view
            .pod(namespace, name)
            .and_then(|p| p.ips.first())
            .map(|a| family_of(*a)),
        Endpoint::Ip(_) => None,
    };
    ip(&q.to)
        .or_else(|| ip(&q.from))
        .or_else(|| primary(&q.to))
        .or_else(|| primary(&q.from))
}

fn end(view: &PolicyView, endpoint: &Endpoint, family: Option<u8>) -> End {
    let pod = match endpoint {
        Endpoint::Pod { namespace, name } => view.pod(namespace, name),
        Endpoint::Ip(addr) => view.pod_by_ip(*addr),
    };
    let address = match endpoint {
        Endpoint::Ip(addr) => Some(*addr),
        Endpoint::Pod { .. } => pod.and_then(|p| {
            p.ips
                .iter()
                .copied()
                .find(|a| family.is_none_or(|f| family_of(*a) == f))
        }),
    };
    End {
        endpoint: endpoint.to_string(),
        pod: pod.map(weft_model::Pod::key),
        node: pod.and_then(|p| p.node_name.clone()),
        address,
        host_network: pod.is_some_and(|p| p.host_network),
    }
}

fn side(view: &PolicyView, direction: Direction, end: &End, v: &DirectionVerdict) -> Side {
    let name = direction.rules_field();
    let allowed_by =
        v.by.iter()
            .map(|r| RuleMatch {
                policy: r.policy.clone(),
                path: describe::rule_path(r),
                matched: describe::rule_match(&view.policies, r).unwrap_or_default(),
            })
            .collect();
    let selected = v.selected_by.join(", ");
    let who = end.pod.as_deref().unwrap_or(&end.endpoint);
    let summary = match (&end.pod, end.host_network) {
        (None, _) => format!("{who} is not a pod: no policy applies, allowed"),
        (Some(_), true) => format!("{who} uses its node's network: no policy applies, allowed"),
        _ if !v.isolated => format!("allowed: not isolated, no policy selects {who} for {name}"),
        _ if v.from_local_node => format!(
            "allowed: from {who}'s own node, which policies never block (isolated by {selected})"
        ),
        _ if v.allowed => format!("allowed by a rule (isolated by {selected})"),
        _ => format!(
            "denied by isolation, selected by {selected}; none of their {name} rules allows it"
        ),
    };
    Side {
        direction: name,
        isolated: v.isolated,
        allowed: v.allowed,
        selected_by: v.selected_by.clone(),
        allowed_by,
        from_local_node: v.from_local_node,
        summary,
    }
}

impl Explanation {
    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let family = self.family.map_or(String::new(), |f| format!(" IPv{f}"));
        let _ = writeln!(
            out,
            "{} -> {} {}/{}{family}: {}  (revision {})",
            end_text(&self.from),
            end_text(&self.to),
            self.protocol,
            self.port,
            if self.allowed { "ALLOWED" } else { "DENIED" },
            self.revision
        );
        for (side, end) in [(&self.egress, &self.from), (&self.ingress, &self.to)] {
            let at = if side.direction == "egress" {
                "from"
            } else {
                "to"
            };
            let who = end.pod.as_deref().unwrap_or(&end.endpoint);
            let _ = writeln!(out, "  {} {at} {who}: {}", side.direction, side.summary);
            for r in &side.allowed_by {
                let _ = writeln!(out, "    {} {}: {}", r.policy, r.path, r.matched);
            }
        }
        for (what, why) in &self.rejected_policies {
            let _ = writeln!(out, "  note: {what} is rejected and not in force: {why}");
        }
        out
    }
}

fn end_text(e: &End) -> String {
    let mut text = e.endpoint.clone();
    match (&e.pod, e.address) {
        (Some(pod), _) if *pod != e.endpoint => text.push_str(&format!(" (pod {pod})")),
        (_, Some(addr)) if addr.to_string() != e.endpoint => {
            text.push_str(&format!(" ({addr})"));
        }
        _ => {}
    }
    text
}

/// Runs `weftctl policy`; returns the process exit code (0 whatever the
/// verdict: the question was answered).
pub fn run_policy(args: PolicyArgs) -> Result<i32> {
    let layout = Layout::resolve(args.state_dir.as_deref());
    match args.cmd {
        PolicyCmd::Explain(a) => {
            crate::LabState::require(&layout)?;
            let snapshot = super::snapshot(&layout)?;
            let q = ExplainQuery {
                from: a.from,
                to: a.to,
                port: a.port.0,
                protocol: a.port.1,
                family: a.family,
            };
            let e = explain(&snapshot, &q)?;
            if a.json {
                crate::cli::emit(&format!("{}\n", serde_json::to_string_pretty(&e)?))?;
            } else {
                crate::cli::emit(&e.render())?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;

//! The API server's Service allocators, for the lab: cluster IPs from the
//! lab's service CIDRs by `ipFamilies`/`ipFamilyPolicy`, NodePorts from
//! 30000–32767. Pure functions over the manifest and the stored Services;
//! unit-tested without root.
//!
//! As on the API server, a re-applied manifest that gives no cluster IP or
//! NodePort keeps the ones the stored object has (`kubectl apply` never
//! makes a Service change address), and an explicit value is kept as given.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::error::{LabError, Result};

/// The lab's IPv4 service CIDR (kubeadm's default).
pub const SERVICE_CIDR_V4: &str = "10.96.0.0/16";
/// The lab's IPv6 service CIDR (a /108, the largest the API server takes).
pub const SERVICE_CIDR_V6: &str = "fd00:10:96::/108";
/// The NodePort range (the API server's default).
pub const NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

/// What the stored Services already hold.
#[derive(Debug, Default, Clone)]
pub struct Allocated {
    /// Cluster IPs in use.
    pub ips: BTreeSet<IpAddr>,
    /// NodePorts in use.
    pub node_ports: BTreeSet<u16>,
}

impl Allocated {
    /// What `services` (raw stored Services) hold, except the one named
    /// `skip` (`namespace/name`, the one being replaced).
    pub fn of(services: &[Value], skip: Option<&str>) -> Allocated {
        let mut out = Allocated::default();
        for svc in services.iter().filter(|s| skip != Some(key_of(s).as_str())) {
            out.add(svc);
        }
        out
    }

    /// Takes what one Service holds.
    pub fn add(&mut self, svc: &Value) {
        self.ips.extend(cluster_ips(svc));
        self.node_ports
            .extend(node_ports(svc).into_iter().map(|(_, p)| p));
    }
}

/// `namespace/name` of a stored object (`default` namespace when absent).
pub fn key_of(obj: &Value) -> String {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{ns}/{name}")
}

/// Fills in `spec.clusterIP(s)`, `ipFamilies`, `ipFamilyPolicy` and the
/// NodePorts of Service manifest `svc`, from `old` (the stored Service of
/// the same name) where it has them, else from what `taken` leaves free.
/// `families` are the lab's (4, 6; the first is primary). Headless and
/// ExternalName Services get no address. What is allocated is added to
/// `taken`, so several Services of one manifest get different ones.
pub fn allocate(
    svc: &mut Value,
    old: Option<&Value>,
    families: &[u8],
    taken: &mut Allocated,
) -> Result<()> {
    let key = key_of(svc);
    let fail = |reason: String| LabError::Invalid(format!("Service {key}: {reason}"));
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    let spec_type = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    if spec_type == "ExternalName" {
        return Ok(());
    }
    let headless = svc["spec"]["clusterIP"].as_str() == Some("None");
    if !headless {
        let families = wanted_families(&svc["spec"], families).map_err(fail)?;
        let mut ips: Vec<IpAddr> = cluster_ips(svc);
        if ips.is_empty() {
            if let Some(old) = old {
                ips = cluster_ips(old)
                    .into_iter()
                    .filter(|ip| families.contains(&family_of(*ip)))
                    .collect();
            }
        }
        for family in &families {
            if ips.iter().any(|ip| family_of(*ip) == *family) {
                continue;
            }
            let ip = free_ip(*family, &taken.ips)
                .ok_or_else(|| fail(format!("the IPv{family} service CIDR is full")))?;
            ips.push(ip);
        }
        // Primary family first, as the API server orders them.
        ips.sort_by_key(|ip| families.iter().position(|f| *f == family_of(*ip)));
        taken.ips.extend(ips.iter().copied());
        let spec = &mut svc["spec"];
        let texts: Vec<String> = ips.iter().map(ToString::to_string).collect();
        spec["clusterIP"] = json!(texts[0]);
        spec["clusterIPs"] = json!(texts);
        let names: Vec<&str> = ips.iter().map(|ip| family_name(family_of(*ip))).collect();
        spec["ipFamilies"] = json!(names);
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if matches!(spec_type.as_str(), "NodePort" | "LoadBalancer") {
        let old_ports = old.map(node_ports).unwrap_or_default();
        let Some(ports) = svc["spec"]["ports"].as_array_mut() else {
            return Ok(());
        };
        for port in ports.iter_mut() {
            if let Some(given) = port["nodePort"].as_u64() {
                taken.node_ports.extend(u16::try_from(given).ok());
                continue;
            }
            let id = port_id(port);
            let node_port = match old_ports.iter().find(|(i, _)| *i == id) {
                Some((_, p)) => *p,
                None => NODE_PORTS
                    .clone()
                    .find(|p| !taken.node_ports.contains(p))
                    .ok_or_else(|| fail("no NodePort left in 30000-32767".into()))?,
            };
            taken.node_ports.insert(node_port);
            port["nodePort"] = json!(node_port);
        }
    }
    Ok(())
}

/// The families a Service gets, primary first: `ipFamilies` when given
/// (only the first for `SingleStack`), else the lab's primary family, or
/// both for `PreferDualStack`/`RequireDualStack` as far as the lab has them.
fn wanted_families(spec: &Value, lab: &[u8]) -> Result<Vec<u8>, String> {
    let policy = spec["ipFamilyPolicy"].as_str().unwrap_or("SingleStack");
    let given: Vec<u8> = match spec["ipFamilies"].as_array() {
        Some(list) => list
            .iter()
            .map(|f| match f.as_str() {
                Some("IPv4") => Ok(4),
                Some("IPv6") => Ok(6),
                _ => Err(format!("spec.ipFamilies: unknown family {f}")),
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    if let Some(f) = given.iter().find(|f| !lab.contains(f)) {
        return Err(format!("spec.ipFamilies: the lab has no IPv{f}"));
    }
    let mut out = match policy {
        "SingleStack" => given.first().or(lab.first()).into_iter().copied().collect(),
        "PreferDualStack" | "RequireDualStack" => {
            let mut out = given.clone();
            out.extend(lab.iter().filter(|f| !given.contains(f)));
            out
        }
        other => return Err(format!("spec.ipFamilyPolicy: unknown policy {other:?}")),
    };
    out.truncate(2);
    if policy == "RequireDualStack" && out.len() < 2 {
        return Err("spec.ipFamilyPolicy: RequireDualStack in a single-stack lab".into());
    }
    Ok(out)
}

/// The first free address of the family's service CIDR, skipping the
/// network address (and the IPv4 broadcast address).
fn free_ip(family: u8, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let cidr: IpNet = if family == 4 {
        SERVICE_CIDR_V4
    } else {
        SERVICE_CIDR_V6
    }
    .parse()
    .expect("constant CIDR");
    cidr.hosts()
        .filter(|ip| *ip != cidr.network())
        .find(|ip| !taken.contains(ip))
}

/// A stored or given Service's cluster IPs (`clusterIPs`, else
/// `clusterIP`), without `None` and unparseable entries.
pub fn cluster_ips(svc: &Value) -> Vec<IpAddr> {
    let spec = &svc["spec"];
    let list: Vec<&str> = match spec["clusterIPs"].as_array() {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => spec["clusterIP"].as_str().into_iter().collect(),
    };
    list.iter().filter_map(|s| s.parse().ok()).collect()
}

/// A Service port's identity across re-applies: its name, else its port
/// and protocol.
fn port_id(port: &Value) -> String {
    match port["name"].as_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!(
            "{}/{}",
            port["protocol"].as_str().unwrap_or("TCP"),
            port["port"].as_u64().unwrap_or(0)
        ),
    }
}

/// A Service's NodePorts by port identity.
fn node_ports(svc: &Value) -> Vec<(String, u16)> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((port_id(p), u16::try_from(p["nodePort"].as_u64()?).ok()?)))
        .collect()
}

fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

fn family_name(family: u8) -> &'static str {
    if family == 4 { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "x"}, "spec": spec})
    }

    #[test]
    fn cluster_ips_follow_families_and_policy() {
        let mut taken = Allocated::default();
        let mut a = svc("a", json!({"ports": [{"port": 80}]}));
        allocate(&mut a, None, &[4, 6], &mut taken).unwrap();
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.96.0.1"]));
        assert_eq!(a["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(a["spec"]["ipFamilyPolicy"], "SingleStack");

        let mut b = svc(
            "b",
            json!({"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}),
        );
        allocate(&mut b, None, &[4, 6], &mut taken).unwrap();
        assert_eq!(
            b["spec"]["clusterIPs"],
            json!(["10.96.0.2", "fd00:10:96::1"])
        );
        assert_eq!(b["spec"]["clusterIP"], "10.96.0.2");

        let mut c = svc(
            "c",
            json!({"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}),
        );
        allocate(&mut c, None, &[4, 6], &mut taken).unwrap();
        assert_eq!(c["spec"]["clusterIPs"], json!(["fd00:10:96::2"]));

        let mut d = svc(
            "d",
            json!({"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}),
        );
        let err = allocate(&mut d, None, &[4], &mut taken)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Service x/d") && err.contains("RequireDualStack"),
            "{err}"
        );
        let mut e = svc(
            "e",
            json!({"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}),
        );
        assert!(allocate(&mut e, None, &[4], &mut taken).is_err());

        let mut headless = svc("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        allocate(&mut headless, None, &[4], &mut taken).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert!(headless["spec"]["clusterIPs"].is_null());
    }

    #[test]
    fn a_reapply_keeps_the_stored_addresses_and_node_ports() {
        let stored = vec![svc(
            "a",
            json!({"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
                   "ports": [{"name": "http", "port": 80, "nodePort": 30001}]}),
        )];
        let mut taken = Allocated::of(&stored, Some("x/a"));
        assert!(taken.ips.is_empty());
        let mut again = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80},
                                                 {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        );
        allocate(&mut again, Some(&stored[0]), &[4], &mut taken).unwrap();
        assert_eq!(again["spec"]["clusterIP"], "10.96.0.7");
        assert_eq!(again["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(again["spec"]["ports"][1]["nodePort"], 30000);

        // Another Service sees both as taken.
        let mut taken = Allocated::of(&[again.clone()], None);
        let mut other = svc(
            "o",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
        );
        allocate(&mut other, None, &[4], &mut taken).unwrap();
        assert_eq!(other["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(other["spec"]["ports"][0]["nodePort"], 30002);
        // An explicit value is kept.
        let mut fixed = svc(
            "f",
            json!({"clusterIP": "10.96.5.5", "type": "NodePort",
                                        "ports": [{"port": 80, "nodePort": 31000}]}),
        );
        allocate(&mut fixed, None, &[4], &mut taken).unwrap();
        assert_eq!(fixed["spec"]["clusterIPs"], json!(["10.96.5.5"]));
        assert_eq!(fixed["spec"]["ports"][0]["nodePort"], 31000);
    }
}

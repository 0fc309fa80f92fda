//! The CNI result: one internal form (the 1.x layout) and its encodings for
//! every supported version, with the down-conversion rules libcni applies.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION};
use super::version::Version;

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address (`aa:bb:…`), may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (1.1.0 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; empty for host interfaces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// vhost-user socket path (1.1.0 and later); weft never sets it, but
    /// passes it through.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// PCI ID (1.1.0 and later), passed through.
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: IpNet,
    /// Gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result. The 1.1 extras are kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings in a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A CNI result in weft's internal (1.x) form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

#[derive(Deserialize)]
struct Legacy {
    #[serde(default)]
    ip4: Option<LegacyIp>,
    #[serde(default)]
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

fn decode(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(DECODING_FAILURE, format!("cannot decode {what}: {e}"))
}

impl CniResult {
    /// Parses a result (e.g. `prevResult`) of any supported version.
    pub fn from_json(v: &Value) -> Result<CniResult, CniError> {
        let obj = v
            .as_object()
            .ok_or_else(|| decode("result", "not a JSON object"))?;
        let version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .and_then(Version::parse)
            .unwrap_or(Version(1, 0, 0));
        if version < Version::V030 {
            let legacy: Legacy =
                serde_json::from_value(v.clone()).map_err(|e| decode("result", e))?;
            let mut r = CniResult {
                dns: legacy.dns.unwrap_or_default(),
                ..CniResult::default()
            };
            for ip in [legacy.ip4, legacy.ip6].into_iter().flatten() {
                r.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                r.routes.extend(ip.routes);
            }
            return Ok(r);
        }
        let field = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
        let list = |k: &str| match field(k) {
            Value::Null => Value::Array(vec![]),
            other => other,
        };
        // `ips[].version` of 0.3.x/0.4.0 is redundant with the address; serde
        // ignores it as an unknown field.
        Ok(CniResult {
            interfaces: serde_json::from_value(list("interfaces"))
                .map_err(|e| decode("interfaces", e))?,
            ips: serde_json::from_value(list("ips")).map_err(|e| decode("ips", e))?,
            routes: serde_json::from_value(list("routes")).map_err(|e| decode("routes", e))?,
            dns: match field("dns") {
                Value::Null => Dns::default(),
                d => serde_json::from_value(d).map_err(|e| decode("dns", e))?,
            },
        })
    }

    /// Encodes the result for a request in `version`:
    /// - 1.0.0 and 1.1.0 share one layout;
    /// - 0.3.x and 0.4.0 add `ips[].version` and drop the interface fields
    ///   that 1.1 introduced (`mtu`, `socketPath`, `pciID`);
    /// - 0.1.0 and 0.2.0 keep the first address per family as `ip4`/`ip6`,
    ///   with the routes split by family; no address at all is an error.
    pub fn to_json(&self, version: &str) -> Result<Value, CniError> {
        let v = Version::supported(version)?;
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version));
        if v < Version::V030 {
            self.encode_legacy(version, &mut out)?;
        } else {
            let mut ifaces = serde_json::to_value(&self.interfaces).expect("serializes");
            let mut ips = serde_json::to_value(&self.ips).expect("serializes");
            if v < Version::V100 {
                for i in ifaces.as_array_mut().into_iter().flatten() {
                    let i = i.as_object_mut().expect("object");
                    for k in ["mtu", "socketPath", "pciID"] {
                        i.remove(k);
                    }
                }
                for (ip, cfg) in ips.as_array_mut().into_iter().flatten().zip(&self.ips) {
                    let fam = if cfg.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    ip.as_object_mut()
                        .expect("object")
                        .insert("version".into(), json!(fam));
                }
            }
            if !self.interfaces.is_empty() {
                out.insert("interfaces".into(), ifaces);
            }
            if !self.ips.is_empty() {
                out.insert("ips".into(), ips);
            }
            if !self.routes.is_empty() {
                out.insert(
                    "routes".into(),
                    serde_json::to_value(&self.routes).expect("serializes"),
                );
            }
        }
        // libcni's Go types always encode `dns`, empty or not.
        out.insert(
            "dns".into(),
            serde_json::to_value(&self.dns).expect("serializes"),
        );
        Ok(Value::Object(out))
    }

    fn encode_legacy(&self, version: &str, out: &mut Map<String, Value>) -> Result<(), CniError> {
        let mut any = false;
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = self.ips.iter().find(|i| i.address.addr().is_ipv4() == v4) else {
                continue;
            };
            any = true;
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.addr().is_ipv4() == v4)
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("dst".into(), json!(r.dst));
                    if let Some(gw) = r.gw {
                        m.insert("gw".into(), json!(gw));
                    }
                    Value::Object(m)
                })
                .collect();
            let mut m = Map::new();
            m.insert("ip".into(), json!(ip.address));
            if let Some(gw) = ip.gateway {
                m.insert("gateway".into(), json!(gw));
            }
            if !routes.is_empty() {
                m.insert("routes".into(), Value::Array(routes));
            }
            out.insert(key.into(), Value::Object(m));
        }
        if !any {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!("cannot convert a result without addresses to version {version}"),
            ));
        }
        Ok(())
    }
}

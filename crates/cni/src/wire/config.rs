//! The network configuration weft reads on stdin.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

use super::env::valid_name;
use super::error::{CniError, DECODING_FAILURE, INVALID_CONFIG};
use super::result::{CniResult, Dns};
use super::version::Version;

/// One attachment a runtime still considers valid (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct ValidAttachment {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// weft's plugin configuration (one object of a conflist, with what the
/// runtime injects).
#[derive(Debug, Clone)]
pub struct NetConf {
    /// The request's CNI version (validated as supported).
    pub cni_version: String,
    /// The parsed version.
    pub version: Version,
    /// Network name.
    pub name: String,
    /// Plugin type (normally "weft").
    pub plugin_type: String,
    /// The node's pod CIDRs, when the config gives them; otherwise they come
    /// from the node-state file that weftd writes.
    pub pod_cidrs: Option<Vec<IpNet>>,
    /// Where address reservations live.
    pub data_dir: Option<PathBuf>,
    /// Pod interface MTU.
    pub mtu: Option<u32>,
    /// Path of the node-state file.
    pub node_state_file: Option<PathBuf>,
    /// DNS settings to report.
    pub dns: Dns,
    /// The previous plugin's result (CHECK, DEL; ADD when chained after another).
    pub prev_result: Option<CniResult>,
    /// GC: the attachments the runtime still holds. `None` when the key is
    /// absent (GC then does nothing); `Some(empty)` releases everything.
    pub valid_attachments: Option<HashSet<ValidAttachment>>,
    /// Addresses requested through `runtimeConfig.ips`, `args.cni.ips` or
    /// `CNI_ARGS IP=` (checked against the reservation, not honoured as static
    /// assignment: weft's IPAM is node-local).
    pub requested_ips: Vec<IpAddr>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

impl NetConf {
    /// Parses stdin. Undecodable JSON is code 6, an unsupported version code
    /// 1, anything else invalid code 7; unknown keys are tolerated.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                DECODING_FAILURE,
                format!("cannot decode the network configuration: {e}"),
            )
        })?;
        let obj = v.as_object().ok_or_else(|| {
            CniError::new(
                DECODING_FAILURE,
                "the network configuration is not a JSON object",
            )
        })?;
        let str_field = |k: &str| -> Result<Option<String>, CniError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!("{k}: expected a string, got {other}"))),
            }
        };
        // libcni treats a config without a version as 0.1.0.
        let cni_version = str_field("cniVersion")?.unwrap_or_else(|| "0.1.0".into());
        let version = Version::supported(&cni_version)?;
        let name = str_field("name")?.ok_or_else(|| invalid("name: missing"))?;
        if !valid_name(&name) {
            return Err(invalid(format!(
                "name: {name:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$"
            )));
        }
        let plugin_type = str_field("type")?.ok_or_else(|| invalid("type: missing"))?;

        let pod_cidrs = match obj.get("podCIDRs") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(parse_cidrs(items)?),
            Some(other) => {
                return Err(invalid(format!(
                    "podCIDRs: expected a list of CIDRs, got {other}"
                )));
            }
        };
        let mtu =
            match obj.get("mtu") {
                None | Some(Value::Null) => None,
                Some(m) => Some(m.as_u64().filter(|m| (68..=65535).contains(m)).ok_or_else(
                    || invalid(format!("mtu: {m} is not an MTU between 68 and 65535")),
                )? as u32),
            };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => Dns::default(),
            Some(d) => {
                serde_json::from_value(d.clone()).map_err(|e| invalid(format!("dns: {e}")))?
            }
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(p) => Some(CniResult::from_json(p)?),
        };
        Ok(NetConf {
            cni_version,
            version,
            name,
            plugin_type,
            pod_cidrs,
            data_dir: str_field("dataDir")?.map(PathBuf::from),
            mtu,
            node_state_file: str_field("nodeStateFile")?.map(PathBuf::from),
            dns,
            prev_result,
            valid_attachments: parse_valid_attachments(obj)?,
            requested_ips: requested_ips(obj)?,
        })
    }
}

/// Parses a CIDR list: no duplicates, no host bits set.
pub fn parse_cidrs(items: &[Value]) -> Result<Vec<IpNet>, CniError> {
    let mut out: Vec<IpNet> = Vec::new();
    for item in items {
        let s = item
            .as_str()
            .ok_or_else(|| invalid(format!("podCIDRs: {item} is not a string")))?;
        let net: IpNet = s
            .parse()
            .map_err(|_| invalid(format!("podCIDRs: {s:?} is not a CIDR")))?;
        if net.trunc() != net {
            return Err(invalid(format!(
                "podCIDRs: {s:?} has host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        if out.iter().any(|o| o.contains(&net) || net.contains(o)) {
            return Err(invalid(format!("podCIDRs: {s:?} overlaps another entry")));
        }
        out.push(net);
    }
    Ok(out)
}

/// Reads `cni.dev/valid-attachments`, falling back to (and merging)
/// `cni.dev/attachments`, the name the 1.1.0 tag of the spec uses; libcni
/// sends both.
fn parse_valid_attachments(
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<HashSet<ValidAttachment>>, CniError> {
    let mut found: Option<HashSet<ValidAttachment>> = None;
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let list: Vec<ValidAttachment> = serde_json::from_value(v.clone())
                    .map_err(|e| invalid(format!("{key}: {e}")))?;
                found.get_or_insert_with(HashSet::new).extend(list);
            }
        }
    }
    Ok(found)
}

fn requested_ips(obj: &serde_json::Map<String, Value>) -> Result<Vec<IpAddr>, CniError> {
    let mut out = Vec::new();
    let sources = [
        obj.get("runtimeConfig").and_then(|r| r.get("ips")),
        obj.get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips")),
    ];
    for list in sources.into_iter().flatten() {
        for item in list.as_array().into_iter().flatten() {
            let s = item.as_str().unwrap_or_default();
            let ip = s
                .split('/')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .ok_or_else(|| invalid(format!("ips: {item} is not an address")))?;
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_full_configs_parse() {
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"weft"}"#)
            .unwrap();
        assert_eq!(c.pod_cidrs, None);
        assert_eq!(c.valid_attachments, None);
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"weft","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"],
                 "mtu":1450,"dataDir":"/tmp/x","someUnknownKey":{"a":1},"capabilities":{"portMappings":true}}"#,
        )
        .unwrap();
        assert_eq!(c.pod_cidrs.unwrap().len(), 2);
        assert_eq!(c.mtu, Some(1450));
    }

    #[test]
    fn errors_have_the_right_codes() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{not json"), 6);
        assert_eq!(code("[]"), 6);
        assert_eq!(
            code(r#"{"cniVersion":"2.0.0","name":"n","type":"weft"}"#),
            1
        );
        assert_eq!(code(r#"{"cniVersion":"1.1.0","type":"weft"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","podCIDRs":["10.0.0.0/33"]}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","podCIDRs":["10.0.0.1/24"]}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","podCIDRs":"10.0.0.0/24"}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.1.0","name":"n","type":"weft","mtu":20}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.1.0","name":"bad name","type":"weft"}"#),
            7
        );
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"weft",
                 "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
                 "cni.dev/attachments":[{"containerID":"b","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap().len(), 2);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"weft","cni.dev/valid-attachments":[]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments, Some(HashSet::new()));
    }
}

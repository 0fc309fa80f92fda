//! The CNI environment variables a runtime sets for each invocation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{CniError, INVALID_ENVIRONMENT};

/// The CNI verb, from `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report whether ADD could succeed.
    Status,
    /// Release everything not in the valid attachments.
    Gc,
    /// Report the supported versions.
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The verb as the runtime spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// The validated CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS` (ADD, CHECK; may be empty on DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_ARGS`, parsed from `K=V;K2=V2`.
    pub args: BTreeMap<String, String>,
}

impl Env {
    /// Reads and validates the process environment.
    pub fn from_process() -> Result<Env, CniError> {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// Validates an environment given as a lookup function (testable without
    /// touching the process environment). Errors carry code 4 and name the
    /// variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let bad =
            |var: &str, why: String| CniError::new(INVALID_ENVIRONMENT, format!("{var}: {why}"));
        let raw = get("CNI_COMMAND").unwrap_or_default();
        let command = Command::parse(&raw)
            .ok_or_else(|| bad("CNI_COMMAND", format!("unknown or missing command {raw:?}")))?;
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());

        let container_id = nonempty("CNI_CONTAINERID").unwrap_or_default();
        let ifname = nonempty("CNI_IFNAME").unwrap_or_default();
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        if per_container {
            if container_id.is_empty() {
                return Err(bad("CNI_CONTAINERID", "missing".into()));
            }
            validate_container_id(&container_id).map_err(|w| bad("CNI_CONTAINERID", w))?;
            if ifname.is_empty() {
                return Err(bad("CNI_IFNAME", "missing".into()));
            }
            validate_ifname(&ifname).map_err(|w| bad("CNI_IFNAME", w))?;
        }
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return Err(bad("CNI_NETNS", "missing".into()));
        }
        let args =
            parse_args(&get("CNI_ARGS").unwrap_or_default()).map_err(|w| bad("CNI_ARGS", w))?;
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

/// Parses `CNI_ARGS` (`K=V;K2=V2`). Unknown keys are kept: weft is lenient,
/// as runtimes send keys (K8S_POD_NAME, …) that no plugin declares.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        if k.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Container IDs must match `^[A-Za-z0-9][A-Za-z0-9_.-]*$` (as libcni checks).
pub fn validate_container_id(id: &str) -> Result<(), String> {
    valid_name(id)
        .then_some(())
        .ok_or_else(|| format!("{id:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$"))
}

/// Network names follow the same rule as container IDs.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Interface names: 1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} must be 1 to 15 bytes long"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("{name:?} contains '/', ':' or whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
            ),
        ])
        .unwrap();
        assert_eq!(ok.command, Command::Add);
        assert_eq!(ok.args["K8S_POD_NAME"], "p");

        let missing = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let e = missing.unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
    }

    #[test]
    fn del_tolerates_an_empty_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
    }

    #[test]
    fn rejects_bad_values_with_code_4() {
        for (var, val) in [
            ("CNI_COMMAND", "FROB"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", "much-too-long-name"),
            ("CNI_ARGS", "novalue"),
        ] {
            let mut pairs = vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
            ];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, val));
            let e = env(&pairs).unwrap_err();
            assert_eq!(e.code, 4, "{var}={val}");
            assert!(e.msg.starts_with(var), "{e}");
        }
    }

    #[test]
    fn gc_status_version_need_no_container() {
        for c in ["GC", "STATUS", "VERSION"] {
            assert!(env(&[("CNI_COMMAND", c)]).is_ok(), "{c}");
        }
    }
}

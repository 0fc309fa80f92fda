//! Invoking a CNI plugin chain exactly as libcni does for a container
//! runtime: each plugin of the conflist in order for ADD (each one's result
//! is the next one's `prevResult`), in reverse for DEL with the cached final
//! result as `prevResult`; CNI variables in the environment, the plugin's
//! config (with `name` and `cniVersion` of the list) on stdin, the result on
//! stdout. The plugins run inside the node's namespace, as they would on a
//! real node.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{LabError, Result};
use crate::netns;

/// How long one plugin invocation may take before it is killed.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the reference plugins (tuning, ...) are installed.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// The network's name in the conflist, which is also the IPAM store's name.
pub const NETWORK_NAME: &str = "weft";

/// The conflist the lab gives each node: weft, then the reference `tuning`
/// plugin chained after it (as many clusters chain `portmap` or
/// `bandwidth`), so that chaining is exercised on every pod.
pub fn conflist(node_state_file: &Path, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "weft",
                "nodeStateFile": node_state_file,
                "dataDir": data_dir,
            },
            {
                "type": "tuning",
                "sysctl": {"net.ipv4.ping_group_range": "0 2147483647"},
            },
        ],
    })
}

/// One attachment as the runtime identifies it.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The node namespace the plugins run in.
    pub node_netns: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`: the pod's namespace file.
    pub pod_netns: PathBuf,
    /// `CNI_ARGS`.
    pub cni_args: &'a str,
    /// `CNI_PATH`: where plugins are looked up, in order.
    pub cni_path: Vec<PathBuf>,
}

/// `CNI_ARGS` as containerd's CRI plugin sends it.
pub fn cni_args(namespace: &str, name: &str, container_id: &str, uid: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
         K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )
}

/// The plugins of a conflist, each as libcni hands it to the plugin: its
/// own object plus the list's `name` and `cniVersion`.
pub fn plugin_configs(list: &Value) -> Result<Vec<Value>> {
    let bad = |why: &str| LabError::Invalid(format!("conflist: {why}"));
    let name = list.get("name").cloned().ok_or_else(|| bad("no name"))?;
    let version = list
        .get("cniVersion")
        .cloned()
        .ok_or_else(|| bad("no cniVersion"))?;
    let plugins = list
        .get("plugins")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("no plugins"))?;
    plugins
        .iter()
        .map(|p| {
            let mut p = p
                .as_object()
                .cloned()
                .ok_or_else(|| bad("a plugin is not an object"))?;
            p.insert("name".into(), name.clone());
            p.insert("cniVersion".into(), version.clone());
            Ok(Value::Object(p))
        })
        .collect()
}

/// ADD through the chain; returns the final result (what the runtime
/// caches). On failure nothing is undone here: the caller runs [`del`], as a
/// runtime tears the sandbox down.
pub fn add(list: &Value, inv: &Invocation<'_>) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for config in plugin_configs(list)? {
        let result = exec("ADD", config, prev.as_ref(), inv)?;
        if result.is_null() {
            return Err(LabError::failed(
                format!("CNI ADD of {}", inv.container_id),
                "a plugin returned no result",
            ));
        }
        prev = Some(result);
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// DEL through the chain in reverse order, each plugin given `cached` (the
/// ADD's final result) as `prevResult`. Every plugin is called even when an
/// earlier one fails; all failures are reported together.
pub fn del(list: &Value, inv: &Invocation<'_>, cached: Option<&Value>) -> Result<()> {
    let mut errors = Vec::new();
    for config in plugin_configs(list)?.into_iter().rev() {
        if let Err(e) = exec("DEL", config, cached, inv) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LabError::failed(
            format!("CNI DEL of {}", inv.container_id),
            errors.join("; "),
        ))
    }
}

/// Finds `$CNI_PATH/<type>`.
fn find_plugin(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    dirs.iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            LabError::Invalid(format!(
                "CNI plugin {kind:?} not found in {}",
                join_paths(dirs)
            ))
        })
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs one plugin once and returns its stdout as JSON (`Null` if empty).
fn exec(
    command: &str,
    mut config: Value,
    prev: Option<&Value>,
    inv: &Invocation<'_>,
) -> Result<Value> {
    let kind = config
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let op = format!(
        "CNI {command} of plugin {kind:?} for container {}",
        &inv.container_id[..inv.container_id.len().min(12)]
    );
    if let (Some(prev), Some(obj)) = (prev, config.as_object_mut()) {
        obj.insert("prevResult".into(), prev.clone());
    }
    let exe = find_plugin(&kind, &inv.cni_path)?;
    let mut cmd = Command::new(&exe);
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", &inv.pod_netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", inv.cni_args)
        .env("CNI_PATH", join_paths(&inv.cni_path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = netns::spawn_in(inv.node_netns, &mut cmd)?;
    let input = serde_json::to_vec(&config).map_err(LabError::json(op.clone()))?;
    // The config is far below a pipe's capacity; a plugin that exits without
    // reading it gives EPIPE, and its exit status is what to report.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || read_all(stdout.as_mut()));
    let err_reader = std::thread::spawn(move || read_all(stderr.as_mut()));
    let deadline = Instant::now() + PLUGIN_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(LabError::io(op.clone()))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout(format!(
                    "{op}: no answer within {PLUGIN_TIMEOUT:?}"
                )));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(LabError::failed(
            op,
            format!(
                "{status}: {} {}",
                String::from_utf8_lossy(&stdout).trim(),
                String::from_utf8_lossy(&stderr).trim()
            ),
        ));
    }
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&stdout).map_err(LabError::json(format!("{op}: decode its result")))
}

fn read_all(r: Option<&mut impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf);
    }
    buf
}

/// The addresses (without prefix length) of a CNI 1.x result.
pub fn result_ips(result: &Value) -> Vec<std::net::IpAddr> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str()?.split('/').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_the_lists_name_and_version() {
        let list = conflist(Path::new("/n.json"), Path::new("/ipam"));
        let configs = plugin_configs(&list).unwrap();
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0]["type"], "weft");
        assert_eq!(configs[0]["nodeStateFile"], "/n.json");
        assert_eq!(configs[1]["name"], "weft");
        assert_eq!(configs[1]["cniVersion"], "1.0.0");
        assert!(
            plugin_configs(&json!({"name": "x", "cniVersion": "1.0.0", "plugins": []})).is_err()
        );
    }

    #[test]
    fn result_ips_drop_the_prefix() {
        let r = json!({"ips": [{"address": "10.244.1.2/32"}, {"address": "fd00:10:244:1::2/128"}]});
        let ips = result_ips(&r);
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[0].to_string(), "10.244.1.2");
    }

    #[test]
    fn args_look_like_containerds() {
        let a = cni_args("x", "a", "ab12", "u-1");
        assert_eq!(
            a,
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=ab12;K8S_POD_UID=u-1"
        );
    }
}

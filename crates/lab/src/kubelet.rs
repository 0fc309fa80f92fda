//! The lab's kubelet: starts a pod (Pod object, sandbox namespace, the CNI
//! chain, the echo server, the Pod's status) and stops it again. A pod that
//! fails to start is torn down completely: no namespace, no address, no
//! object, no process is left behind.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_model::Protocol;

use crate::chain::{self, Invocation};
use crate::error::{LabError, Result};
use crate::layout::{Layout, NodePaths};
use crate::netns;
use crate::objects;
use crate::procs;
use crate::state::{LabState, NodeRecord, PodRecord, family_of, write_atomic};
use crate::store::Store;

/// How long a pod's server gets to open its ports.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new namespace's `default` ServiceAccount may take to appear
/// (kube mode).
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the API server says while that ServiceAccount is missing.
const NO_SERVICE_ACCOUNT: &str = "serviceaccount \"default\" not found";

/// The longest name `ip netns` can bind-mount (a file name).
const MAX_NETNS_NAME: usize = 255;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// The node; `None` picks the node with the fewest pods.
    pub node: Option<String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Ports the server listens on (and the Pod declares).
    pub ports: Vec<(Protocol, u16)>,
}

/// Starts a pod and records it in `state` (saved as it goes).
pub fn add_pod(
    layout: &Layout,
    state: &mut LabState,
    store: &Store,
    spec: &PodSpec,
) -> Result<PodRecord> {
    let key = format!("{}/{}", spec.namespace, spec.name);
    if state.pods.iter().any(|p| p.key() == key) {
        return Err(LabError::Invalid(format!("pod {key} already exists")));
    }
    let node = match &spec.node {
        Some(n) => state.node(n)?.clone(),
        None => least_loaded(state)?.clone(),
    };
    let netns_name = layout.pod_netns(&node.name, &spec.namespace, &spec.name);
    // Checked before anything is created: the cleanup of a failed start
    // deletes the pod's namespace, which must never be another pod's
    // (`node1-a-b-c` is both a/b-c and a-b/c).
    if netns_name.len() > MAX_NETNS_NAME {
        return Err(LabError::Invalid(format!(
            "pod {key}: its namespace name {netns_name:?} is longer than {MAX_NETNS_NAME} bytes"
        )));
    }
    if netns::exists(&netns_name) || state.netns.contains(&netns_name) {
        return Err(LabError::Invalid(format!(
            "pod {key}: namespace {netns_name} already exists (another pod's name reads the same)"
        )));
    }
    ensure_namespace(store, &spec.namespace)?;
    let pod = objects::pod(
        &spec.namespace,
        &spec.name,
        &node.name,
        &spec.labels,
        &spec.ports,
    );
    create_pod(store, pod, &key)?;

    let container_id = random_hex(32)?;
    let mut record = PodRecord {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        node: node.name.clone(),
        netns: netns_name.clone(),
        cni_args: chain::cni_args(&spec.namespace, &spec.name, &container_id, &uuid_v4()?),
        container_id,
        ips: Vec::new(),
        ports: spec.ports.iter().map(|(p, n)| port_arg(*p, *n)).collect(),
        server: None,
    };
    // Recorded before anything exists, so that `lab down` after a crash
    // here still finds the namespace and the attachment.
    state.netns.push(netns_name.clone());
    state.pods.push(record.clone());
    state.save(layout)?;

    let started = start(layout, state, store, &node, &mut record);
    if let Err(e) = started {
        let cleanup = del_pod(layout, state, store, &key);
        return Err(match cleanup {
            Ok(()) => e,
            Err(c) => LabError::failed(
                format!("start pod {key}"),
                format!("{e}; and cleaning up: {c}"),
            ),
        });
    }
    Ok(record)
}

/// The steps of a start that may fail after the record exists.
fn start(
    layout: &Layout,
    state: &mut LabState,
    store: &Store,
    node: &NodeRecord,
    record: &mut PodRecord,
) -> Result<()> {
    let key = record.key();
    netns::create(&record.netns)?;
    let paths = NodePaths::new(layout.node_dir(&node.name));
    let list = read_conflist(&paths.conflist)?;
    let inv = invocation(state, node, record);
    let result = chain::add(&list, &inv)?;
    // libcni's cache: DEL gets the final result as prevResult, also from
    // a later weftctl process.
    write_atomic(
        &cache_file(&paths, &record.container_id),
        &serde_json::to_vec_pretty(&result).map_err(LabError::json("encode CNI result"))?,
    )?;
    record.ips = chain::result_ips(&result);
    if record.ips.is_empty() {
        return Err(LabError::failed(
            format!("start pod {key}"),
            "the CNI result has no addresses",
        ));
    }
    replace_record(state, record);
    state.save(layout)?;

    let host_ip = record
        .ips
        .first()
        .and_then(|ip| {
            node.addresses
                .iter()
                .find(|a| family_of(a.addr()) == family_of(*ip))
        })
        .map(|a| a.addr());
    let ips = record.ips.clone();
    store.update("Pod", Some(&record.namespace), &record.name, |pod| {
        objects::set_pod_running(pod, &ips, host_ip)
    })?;

    if !record.ports.is_empty() {
        let log = layout
            .pod_dir(&record.namespace, &record.name)
            .join("server.log");
        let args = vec![
            "lab".into(),
            "serve".into(),
            "--ports".into(),
            record.ports.join(","),
            "--whoami".into(),
            record.key(),
        ];
        let (child, proc_rec) =
            procs::spawn_detached(&record.netns, &state.bin_dir.join("weftctl"), &args, &log)?;
        record.server = Some(proc_rec);
        replace_record(state, record);
        state.save(layout)?;
        wait_listening(proc_rec.pid, &record.ports, &log)?;
        drop(child);
    }
    Ok(())
}

/// Stops pod `key`: its server, the CNI chain (DEL), its namespace and its
/// Pod object. Keeps going after a failure and reports them all.
pub fn del_pod(layout: &Layout, state: &mut LabState, store: &Store, key: &str) -> Result<()> {
    let record = state.pod(key)?.clone();
    let mut errors: Vec<String> = Vec::new();
    if let Some(server) = &record.server {
        if let Err(e) = procs::stop(server, procs::STOP_GRACE) {
            errors.push(e.to_string());
        }
    }
    let node = state.node(&record.node)?.clone();
    let paths = NodePaths::new(layout.node_dir(&node.name));
    let cache = cache_file(&paths, &record.container_id);
    // DEL must run even when ADD never finished: the plugin may have
    // reserved an address before failing.
    let cached: Option<Value> = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match read_conflist(&paths.conflist) {
        Ok(list) => {
            let inv = invocation(state, &node, &record);
            match chain::del(&list, &inv, cached.as_ref()) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&cache);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    match netns::delete(&record.netns) {
        Ok(()) => state.netns.retain(|n| *n != record.netns),
        Err(e) => errors.push(e.to_string()),
    }
    if let Err(e) = store.delete("Pod", Some(&record.namespace), &record.name) {
        errors.push(e.to_string());
    }
    let _ = std::fs::remove_dir_all(layout.pod_dir(&record.namespace, &record.name));
    if errors.is_empty() {
        state.pods.retain(|p| p.key() != key);
    }
    state.save(layout)?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LabError::failed(
            format!("delete pod {key}"),
            errors.join("; "),
        ))
    }
}

/// Creates the Pod object. A real API server refuses pods in a namespace
/// whose `default` ServiceAccount the serviceaccount controller has not
/// created yet (it does so just after the namespace appears): that
/// refusal is retried for a while, as a controller would.
fn create_pod(store: &Store, pod: Value, key: &str) -> Result<()> {
    let deadline = Instant::now() + SERVICE_ACCOUNT_TIMEOUT;
    loop {
        match store.apply(vec![pod.clone()], &format!("Pod {key}")) {
            Ok(_) => return Ok(()),
            Err(e) if store.is_kube() && e.to_string().contains(NO_SERVICE_ACCOUNT) => {
                if Instant::now() >= deadline {
                    return Err(LabError::Timeout(format!(
                        "create Pod {key}: the namespace's default ServiceAccount did not \
                         appear within {SERVICE_ACCOUNT_TIMEOUT:?} (is kube-controller-manager's \
                         serviceaccount controller running?): {e}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the Namespace object unless it exists (the lab plays the API
/// server, which would otherwise refuse the pod).
pub fn ensure_namespace(store: &Store, name: &str) -> Result<()> {
    if store.get("Namespace", None, name)?.is_none() {
        store.apply(
            vec![objects::namespace(name, &BTreeMap::new())],
            &format!("Namespace {name}"),
        )?;
    }
    Ok(())
}

fn least_loaded(state: &LabState) -> Result<&NodeRecord> {
    state
        .nodes
        .iter()
        .min_by_key(|n| state.pods.iter().filter(|p| p.node == n.name).count())
        .ok_or_else(|| LabError::Invalid("the lab has no nodes".into()))
}

fn replace_record(state: &mut LabState, record: &PodRecord) {
    if let Some(slot) = state.pods.iter_mut().find(|p| p.key() == record.key()) {
        *slot = record.clone();
    }
}

fn invocation<'a>(state: &LabState, node: &'a NodeRecord, record: &'a PodRecord) -> Invocation<'a> {
    Invocation {
        node_netns: &node.netns,
        container_id: &record.container_id,
        pod_netns: netns::path(&record.netns),
        cni_args: &record.cni_args,
        cni_path: vec![
            state.bin_dir.clone(),
            PathBuf::from(chain::REFERENCE_PLUGIN_DIR),
        ],
    }
}

fn read_conflist(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(LabError::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(LabError::json(format!("decode {}", path.display())))
}

fn cache_file(paths: &NodePaths, container_id: &str) -> PathBuf {
    paths
        .cni_cache
        .join(format!("weft-{container_id}-eth0.json"))
}

/// `tcp/80`.
pub fn port_arg(protocol: Protocol, port: u16) -> String {
    format!(
        "{}/{port}",
        weft_probe::protocol_name(protocol).to_ascii_lowercase()
    )
}

/// Waits until `pid` has a socket bound to every TCP and UDP port of
/// `ports`, read from /proc/<pid>/net (the pod's namespace, seen through
/// the server). SCTP sockets are not listed there and are not waited for.
fn wait_listening(pid: i32, ports: &[String], log: &Path) -> Result<()> {
    let want: Vec<(Protocol, u16)> = weft_probe::parse_port_spec(&ports.join(","))
        .map_err(|e| LabError::Invalid(e.to_string()))?;
    let deadline = Instant::now() + SERVER_READY_TIMEOUT;
    loop {
        let ready = want.iter().all(|(proto, port)| match proto {
            Protocol::Tcp => procs::socket_bound(pid, "tcp", *port, Some("0A")),
            Protocol::Udp => procs::socket_bound(pid, "udp", *port, None),
            Protocol::Sctp => true,
        });
        if ready {
            return Ok(());
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() >= deadline {
            return Err(LabError::Timeout(format!(
                "the pod's echo server (pid {pid}) did not open {} within {SERVER_READY_TIMEOUT:?}; see {}:\n{}",
                ports.join(","),
                log.display(),
                procs::tail_file(log, 20)
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(LabError::io("read /dev/urandom"))?;
    Ok(b)
}

/// `n` random bytes as hex: a sandbox ID like containerd's for `n = 32`.
pub fn random_hex(n: usize) -> Result<String> {
    Ok(random_bytes(n)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A version-4 UUID, like the pod UIDs the API server assigns.
fn uuid_v4() -> Result<String> {
    let mut u = random_bytes(16)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_a_runtimes() {
        let id = random_hex(32).unwrap();
        assert_eq!(id.len(), 64);
        let uid = uuid_v4().unwrap();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&uid[14..15], "4");
    }

    #[test]
    fn port_args_round_trip() {
        assert_eq!(port_arg(Protocol::Udp, 81), "udp/81");
        assert_eq!(
            weft_probe::parse_port_spec(&port_arg(Protocol::Tcp, 80)).unwrap(),
            vec![(Protocol::Tcp, 80)]
        );
    }
}

//! Test harness: invokes the real `weft` binary (and the reference plugins)
//! exactly as a container runtime does — CNI environment variables plus the
//! configuration on stdin — inside a node network namespace created for the
//! test. Nothing runs in the root namespace.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use weft_testkit::{NetNs, TempDir};

/// Where Debian's containernetworking-plugins live.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The weft binary cargo built for these tests.
pub fn weft_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft"))
}

/// A directory that holds the weft binary, for `CNI_PATH`.
pub fn weft_dir() -> PathBuf {
    weft_bin()
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

/// A node: its network namespace and a private address store.
pub struct Node {
    /// The node's network namespace (where the plugin runs).
    pub ns: NetNs,
    /// The plugin's `dataDir`.
    pub data: TempDir,
    /// The network name used in configs.
    pub network: String,
}

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Reply {
    /// Exit status code.
    pub exit: i32,
    /// Parsed stdout (Null when empty).
    pub json: Value,
    /// Raw stdout.
    pub stdout: String,
    /// Raw stderr.
    pub stderr: String,
}

impl Reply {
    /// Panics unless the call succeeded.
    pub fn ok(self) -> Reply {
        assert_eq!(
            self.exit, 0,
            "plugin failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }

    /// The CNI error code of a failed call; panics when it succeeded or
    /// printed no error object.
    pub fn code(&self) -> u64 {
        assert_ne!(self.exit, 0, "expected a failure, got {}", self.stdout);
        self.json["code"].as_u64().unwrap_or_else(|| {
            panic!(
                "no error object on stdout: {:?} (stderr {:?})",
                self.stdout, self.stderr
            )
        })
    }
}

/// A pod sandbox: its netns and container ID.
pub struct Pod {
    /// The pod's network namespace.
    pub ns: NetNs,
    /// The container ID.
    pub cid: String,
}

impl Node {
    /// A node namespace with a fresh data dir.
    pub fn new(tag: &str) -> Node {
        let ns = NetNs::new(tag).expect("create node netns");
        // A node has an address of its own (its underlay address in a real
        // cluster): the source of node-to-pod traffic.
        for args in [
            &["addr", "add", "10.99.0.1/32", "dev", "lo"][..],
            &["addr", "add", "fd99::1/128", "dev", "lo"],
        ] {
            ns.ip(args).expect("node address");
        }
        Node {
            ns,
            data: TempDir::new(tag).expect("create data dir"),
            network: "weftnet".into(),
        }
    }

    /// A pod sandbox namespace.
    pub fn pod(&self, tag: &str) -> Pod {
        let ns = NetNs::new(tag).expect("create pod netns");
        let cid = format!("{}{:08x}", tag, rand_u32());
        Pod { ns, cid }
    }

    /// weft's plugin object for `version` with `cidrs`.
    pub fn conf(&self, version: &str, cidrs: &[&str]) -> Value {
        json!({
            "cniVersion": version,
            "name": self.network,
            "type": "weft",
            "podCIDRs": cidrs,
            "dataDir": self.data.path(),
        })
    }

    /// Runs one plugin binary with `command` in this node's namespace.
    pub fn call(
        &self,
        bin: &Path,
        command: &str,
        cid: &str,
        netns: Option<&Path>,
        ifname: &str,
        conf: &Value,
    ) -> Reply {
        let cni_path = bin.parent().unwrap().to_path_buf();
        let mut cmd = self.ns.command(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !cid.is_empty() {
            cmd.env("CNI_CONTAINERID", cid);
            cmd.env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME={cid};K8S_POD_INFRA_CONTAINER_ID={cid}"),
            );
        }
        if !ifname.is_empty() {
            cmd.env("CNI_IFNAME", ifname);
        }
        cmd.env(
            "CNI_NETNS",
            netns.map(|p| p.display().to_string()).unwrap_or_default(),
        );
        run(cmd, conf)
    }

    /// Runs weft.
    pub fn weft(&self, command: &str, pod: &Pod, conf: &Value) -> Reply {
        self.call(
            &weft_bin(),
            command,
            &pod.cid,
            Some(pod.ns.path()),
            "eth0",
            conf,
        )
    }

    /// ADD with weft; panics on failure; returns the result.
    pub fn add(&self, pod: &Pod, conf: &Value) -> Value {
        self.weft("ADD", pod, conf).ok().json
    }

    /// DEL with weft (prevResult given when `result` is some).
    pub fn del(&self, pod: &Pod, conf: &Value, result: Option<&Value>) -> Reply {
        let mut c = conf.clone();
        if let Some(r) = result {
            c["prevResult"] = r.clone();
        }
        self.weft("DEL", pod, &c)
    }

    /// The host-side interfaces weft created in this node (names starting
    /// with "weft").
    pub fn weft_links(&self) -> Vec<String> {
        let out = self.ns.ip(&["-j", "link", "show"]).expect("ip link");
        let links: Value = serde_json::from_str(&out).expect("ip -j link");
        links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("weft"))
            .map(str::to_string)
            .collect()
    }

    /// The addresses reserved in the store.
    pub fn reserved(&self) -> Vec<String> {
        let path = self
            .data
            .path()
            .join(&self.network)
            .join("reservations.json");
        let Ok(bytes) = std::fs::read(&path) else {
            return vec![];
        };
        let v: Value = serde_json::from_slice(&bytes).expect("state file is JSON");
        v["reservations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["ips"].as_array().cloned().unwrap_or_default())
            .map(|ip| ip.as_str().unwrap().to_string())
            .collect()
    }

    /// Routes in the node namespace (for a family: "-4" or "-6").
    pub fn routes(&self, family: &str) -> String {
        self.ns.ip(&[family, "route", "show"]).expect("ip route")
    }
}

/// Runs a prepared command with `conf` on stdin.
pub fn run(mut cmd: std::process::Command, conf: &Value) -> Reply {
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Reply {
        exit: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pseudo-random u32 (time and pid based; tests only need distinct IDs).
pub fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    t ^ std::process::id().rotate_left(16) ^ N.fetch_add(0x9e37_79b9, Ordering::Relaxed)
}

/// The addresses (`a.b.c.d/n`) of an interface inside a namespace.
pub fn addresses(ns: &NetNs, ifname: &str) -> Vec<String> {
    let out = ns
        .ip(&["-j", "addr", "show", "dev", ifname])
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// Whether `ifname` exists inside `ns`.
pub fn has_link(ns: &NetNs, ifname: &str) -> bool {
    ns.ip(&["link", "show", "dev", ifname]).is_ok()
}

/// Pings `dst` from inside `ns` (a few packets, short timeout).
pub fn ping(ns: &NetNs, dst: &str) -> bool {
    ns.command("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "1", dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

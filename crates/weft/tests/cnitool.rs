//! Real-client tier: `cnitool` (built from its Go module by
//! tests/cnitool/build.sh) drives weft through libcni's own logic — config
//! loading, the result cache, CHECK with the cached result, STATUS, DEL, and
//! GC, which DELs every cached attachment not in the valid set.
//!
//! cnitool keeps libcni's cache in /var/lib/cni with no way to move it, so it
//! runs in a private mount namespace where /var/lib is a scratch directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use weft_testkit::TempDir;

fn cnitool_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_CNITOOL") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cnitool/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/cnitool/build.sh");
    assert!(
        out.status.success(),
        "building cnitool failed (needs Go and the module proxy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build.sh prints the path")
            .trim(),
    )
}

struct Client {
    tool: PathBuf,
    work: TempDir,
}

impl Client {
    fn new(node: &Node, plugins: &str) -> Client {
        let work = TempDir::new("cnitool").unwrap();
        for d in ["net.d", "varlib", "bin"] {
            std::fs::create_dir_all(work.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink(weft_bin(), work.path().join("bin/weft")).unwrap();
        let conflist = format!(
            r#"{{"cniVersion":"1.1.0","name":"{}","plugins":[{plugins}]}}"#,
            node.network
        );
        std::fs::write(work.path().join("net.d/10-weft.conflist"), conflist).unwrap();
        Client {
            tool: cnitool_path(),
            work,
        }
    }

    fn run(&self, node: &Node, args: &[&str]) -> (bool, String) {
        let varlib = self.work.path().join("varlib");
        let out = node
            .ns
            .command("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /var/lib && shift && exec "$@""#)
            .arg("sh")
            .arg(&varlib)
            .arg(&self.tool)
            .args(args)
            .env("NETCONFPATH", self.work.path().join("net.d"))
            .env(
                "CNI_PATH",
                format!("{}:{REFERENCE_DIR}", self.work.path().join("bin").display()),
            )
            .env(
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=test;K8S_POD_NAME=p",
            )
            .output()
            .expect("run cnitool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, node: &Node, args: &[&str]) -> String {
        let (ok, text) = self.run(node, args);
        assert!(ok, "cnitool {args:?} failed: {text}");
        text
    }

    fn cached_results(&self) -> usize {
        std::fs::read_dir(self.work.path().join("varlib/cni/results"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

#[test]
fn cnitool_drives_the_whole_lifecycle() {
    if !weft_testkit::privileged("cnitool_drives_the_whole_lifecycle") {
        return;
    }
    let node = Node::new("ct");
    let plugins = format!(
        // weft alone: Debian's reference plugins stop at spec 1.0.0, and
        // libcni sends STATUS and GC only to 1.1.0 lists (chaining with them
        // is tested in chaining.rs).
        r#"{{"type":"weft","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"],"dataDir":"{}"}}"#,
        node.data.path().display()
    );
    let client = Client::new(&node, &plugins);
    let net = node.network.clone();
    let a = node.pod("a");
    let b = node.pod("b");
    let pa = a.ns.path().display().to_string();
    let pb = b.ns.path().display().to_string();

    let out = client.ok(&node, &["add", &net, &pa]);
    let result: Value = serde_json::from_str(&out).expect("cnitool prints the result");
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["ips"].as_array().unwrap().len(), 2);
    client.ok(&node, &["add", &net, &pb]);
    assert_eq!(client.cached_results(), 2, "libcni cached both results");
    assert_eq!(node.reserved().len(), 4);
    let ip_b = addresses(&b.ns, "eth0")[0]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ping(&a.ns, &ip_b));

    // CHECK with libcni's cached result; then damage the pod and CHECK again.
    client.ok(&node, &["check", &net, &pa]);
    a.ns.ip(&["route", "del", "default"]).unwrap();
    let (ok, text) = client.run(&node, &["check", &net, &pa]);
    assert!(!ok, "CHECK passed a pod without its default route: {text}");
    client.ok(&node, &["status", &net, &pa]);

    client.ok(&node, &["del", &net, &pa]);
    assert_eq!(node.reserved().len(), 2, "DEL released a's addresses");
    assert_eq!(node.weft_links().len(), 1);

    // GC with no valid attachments: libcni DELs every cached attachment,
    // then sends GC (without the key: weft then releases nothing more).
    client.ok(&node, &["gc", &net, &pb]);
    assert!(node.reserved().is_empty(), "GC left {:?}", node.reserved());
    assert!(node.weft_links().is_empty());
    assert_eq!(client.cached_results(), 0);
}

#[test]
fn cnitool_status_reports_an_exhausted_pool() {
    if !weft_testkit::privileged("cnitool_status_reports_an_exhausted_pool") {
        return;
    }
    let node = Node::new("cts");
    let plugins = format!(
        r#"{{"type":"weft","podCIDRs":["10.244.7.0/30"],"dataDir":"{}"}}"#,
        node.data.path().display()
    );
    let client = Client::new(&node, &plugins);
    let net = node.network.clone();
    let a = node.pod("a");
    let pa = a.ns.path().display().to_string();
    client.ok(&node, &["status", &net, &pa]);
    client.ok(&node, &["add", &net, &pa]);
    let (ok, text) = client.run(&node, &["status", &net, &pa]);
    assert!(!ok, "STATUS passed with no free address: {text}");
    assert!(text.contains("no free address"), "{text}");
    let b = node.pod("b");
    let (ok, text) = client.run(&node, &["add", &net, &b.ns.path().display().to_string()]);
    assert!(!ok && text.contains("no free address"), "{text}");
    client.ok(&node, &["del", &net, &pa]);
    assert!(node.reserved().is_empty());
}

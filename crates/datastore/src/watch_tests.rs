use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_testkit::TempDir;

use super::*;
use crate::Datastore;

fn ns(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

#[test]
fn wakes_on_a_commit_from_another_handle() {
    let dir = TempDir::new("watch").unwrap();
    let mut watcher = Watcher::new(dir.path()).unwrap();
    let root = dir.path().to_owned();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        Datastore::open(&root)
            .unwrap()
            .apply(vec![ns("a")])
            .unwrap()
    });
    assert!(watcher.wait(Duration::from_secs(10)).unwrap());
    assert_eq!(writer.join().unwrap(), 1);
    assert!(
        !watcher.wait(Duration::from_millis(50)).unwrap(),
        "reported once"
    );
}

#[test]
fn times_out_without_commits_and_ignores_reads_and_status() {
    let dir = TempDir::new("watch").unwrap();
    let ds = Datastore::open(dir.path()).unwrap();
    ds.apply(vec![ns("a")]).unwrap();
    let mut watcher = Watcher::new(dir.path()).unwrap();
    ds.snapshot().unwrap();
    ds.write_status("n1", &json!({"ok": true})).unwrap();
    ds.apply(vec![ns("a")]).unwrap(); // unchanged: no commit
    let start = Instant::now();
    assert!(!watcher.wait(Duration::from_millis(200)).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn a_burst_of_commits_is_one_change() {
    let dir = TempDir::new("watch").unwrap();
    let ds = Datastore::open(dir.path()).unwrap();
    let mut watcher = Watcher::new(dir.path()).unwrap();
    for i in 0..10 {
        ds.apply(vec![ns(&format!("n{i}"))]).unwrap();
    }
    assert!(watcher.wait(Duration::from_secs(1)).unwrap());
    assert!(!watcher.wait(Duration::from_millis(50)).unwrap());
}

#[test]
fn new_kind_directories_need_no_new_watches() {
    let dir = TempDir::new("watch").unwrap();
    let mut watcher = Watcher::new(dir.path().join("fresh")).unwrap();
    let ds = Datastore::open(dir.path().join("fresh")).unwrap();
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "p", "namespace": "new"}, "spec": {}});
    ds.apply(vec![policy]).unwrap();
    assert!(watcher.wait(Duration::from_secs(1)).unwrap());
}

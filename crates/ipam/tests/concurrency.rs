//! Many writers at once, and writers killed mid-commit.
//!
//! The plugin runs as one short-lived process per CNI call, so the real
//! test is many processes: this binary re-runs itself as the children
//! (the ignored `child` test below, selected by environment variables).

mod common;

use std::collections::HashSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{TempDir, att, files, pool};
use weft_ipam::Store;

/// Set in a child to the directory of the store it must use.
const CHILD_DIR: &str = "WEFT_IPAM_TEST_CHILD_DIR";
/// Set in a child to what it must do: `allocate:<id>` or `churn`.
const CHILD_TASK: &str = "WEFT_IPAM_TEST_CHILD_TASK";
/// The network name every test here uses.
const NET: &str = "weft";
/// Children of the process test wait for this file so they all start
/// their allocation at once instead of trickling in as they are spawned.
const GO_FILE: &str = "go";

/// The child side; does nothing unless spawned by a test below.
#[test]
#[ignore = "run as a child process by the tests of this file"]
fn child() {
    let (Ok(dir), Ok(task)) = (env::var(CHILD_DIR), env::var(CHILD_TASK)) else {
        eprintln!("child: not started by a parent test; nothing to do");
        return;
    };
    let dir = PathBuf::from(dir);
    let store = Store::open(&dir, NET).unwrap();
    let p = pool(&["10.244.1.0/24", "fd00:10:244:1::/64"]);
    if let Some(id) = task.strip_prefix("allocate:") {
        wait_for(&dir.join(GO_FILE), Duration::from_secs(20));
        let a = store.allocate(&att(id), &p).unwrap();
        assert!(a.created);
    } else if task == "churn" {
        // Allocate and release until killed, keeping ~10 reservations.
        for i in 0u64.. {
            store.allocate(&att(&format!("c{}", i % 20)), &p).unwrap();
            store.release(&att(&format!("c{}", (i + 10) % 20))).unwrap();
        }
    } else {
        panic!("unknown task {task:?}");
    }
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        thread::sleep(Duration::from_millis(1));
    }
}

fn spawn_child(dir: &Path, task: &str) -> Child {
    Command::new(env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--quiet",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_TASK, task)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The reservations hold distinct addresses; returns how many.
fn assert_consistent(store: &Store) -> usize {
    let list = store.list().unwrap();
    let ips: HashSet<_> = list.iter().flat_map(|r| r.ips.iter().copied()).collect();
    let total: usize = list.iter().map(|r| r.ips.len()).sum();
    assert_eq!(ips.len(), total, "an address is reserved twice: {list:?}");
    list.len()
}

#[test]
fn sixty_processes_allocate_distinct_addresses() {
    let tmp = TempDir::new("procs");
    let children: Vec<Child> = (0..60)
        .map(|i| spawn_child(tmp.path(), &format!("allocate:pod{i}")))
        .collect();
    std::fs::write(tmp.path().join(GO_FILE), b"").unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = Store::open(tmp.path(), NET).unwrap();
    assert_eq!(assert_consistent(&store), 60);
    let list = store.list().unwrap();
    assert!(list.iter().all(|r| r.ips.len() == 2));
    let ids: HashSet<_> = list
        .iter()
        .map(|r| r.attachment.container_id.clone())
        .collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(files(store.dir()), ["lock", "reservations.json"]);
}

#[test]
fn sixty_threads_with_their_own_or_a_shared_store() {
    let tmp = TempDir::new("threads");
    let shared = Store::open(tmp.path(), NET).unwrap();
    let p = pool(&["10.244.1.0/24"]);
    thread::scope(|s| {
        for i in 0..60 {
            let (shared, p, dir) = (&shared, &p, tmp.path());
            s.spawn(move || {
                let own;
                let store = if i % 2 == 0 {
                    own = Store::open(dir, NET).unwrap();
                    &own
                } else {
                    shared
                };
                store.allocate(&att(&format!("pod{i}")), p).unwrap();
            });
        }
    });
    assert_eq!(assert_consistent(&shared), 60);
    assert_eq!(shared.free(&p).unwrap()[0].1, 253 - 60);
}

#[test]
fn writers_killed_at_random_points_leave_a_readable_consistent_store() {
    let tmp = TempDir::new("kill");
    let state = tmp.path().join(NET).join("reservations.json");
    let p = pool(&["10.244.1.0/24", "fd00:10:244:1::/64"]);
    for round in 0..12u64 {
        let mut child = spawn_child(tmp.path(), "churn");
        wait_for(&state, Duration::from_secs(20));
        // Vary the moment of death across rounds (0.3–6 ms into the churn);
        // some land between a commit's write and its rename.
        thread::sleep(Duration::from_micros((round % 6) * 1000 + 300 + round * 53));
        assert!(
            child.try_wait().unwrap().is_none(),
            "churn child stopped by itself"
        );
        child.kill().unwrap(); // SIGKILL: no destructor, no unlock by hand
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );

        let store = Store::open(tmp.path(), NET).unwrap();
        let held = assert_consistent(&store);
        // Churn keeps about 10 of its 20 IDs; each earlier round added one.
        assert!(held <= 20 + round as usize, "{held}");
        // The lock died with the process and the next writer cleans up.
        let a = store.allocate(&att(&format!("after{round}")), &p).unwrap();
        assert_eq!(a.ips.len(), 2);
        assert_eq!(assert_consistent(&store), held + 1);
        assert_eq!(files(store.dir()), ["lock", "reservations.json"]);
    }
}

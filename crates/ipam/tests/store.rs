//! The store on a real file system: format, durability rules, idempotency
//! and error reporting. No root needed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{TempDir, att, files, ip, pool};
use weft_ipam::{Attachment, Error, Store};

fn state_bytes(store: &Store) -> Vec<u8> {
    fs::read(store.dir().join("reservations.json")).unwrap()
}

#[test]
fn writes_the_documented_state_file() {
    let tmp = TempDir::new("format");
    let store = Store::open(tmp.path(), "weft").unwrap();
    assert_eq!(store.dir(), tmp.path().join("weft"));
    let mode = fs::metadata(store.dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(
        files(store.dir()),
        ["lock"],
        "no state file before the first commit"
    );
    assert_eq!(store.list().unwrap(), []);

    let p = pool(&["10.244.1.0/24", "fd00:10:244:1::/64"]);
    let a = store.allocate(&att("c1"), &p).unwrap();
    assert!(a.created);
    assert_eq!(a.ips, [ip("10.244.1.2"), ip("fd00:10:244:1::2")]);
    assert_eq!(files(store.dir()), ["lock", "reservations.json"]);

    let json: serde_json::Value = serde_json::from_slice(&state_bytes(&store)).unwrap();
    assert_eq!(json["version"], 1);
    let r = &json["reservations"][0];
    assert_eq!(r["containerID"], "c1");
    assert_eq!(r["ifname"], "eth0");
    assert_eq!(
        r["ips"],
        serde_json::json!(["10.244.1.2", "fd00:10:244:1::2"])
    );
    assert!(r["created"].as_u64().unwrap() > 1_600_000_000);
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    assert_eq!(r["bootID"].as_str(), boot_id.as_deref().map(str::trim));
    assert_eq!(json["last"]["10.244.1.0/24"], "10.244.1.2");
    assert_eq!(json["last"]["fd00:10:244:1::/64"], "fd00:10:244:1::2");
}

#[test]
fn rejects_bad_names_before_touching_the_disk() {
    let tmp = TempDir::new("names");
    for bad in ["", "..", "../x", "a/b", ".hidden", "-x"] {
        assert!(
            matches!(
                Store::open(tmp.path(), bad),
                Err(Error::InvalidAttachment(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(files(tmp.path()), Vec::<String>::new());
    let store = Store::open(tmp.path(), "net-1.a_b").unwrap();
    let bad = Attachment::new("c1", "a/b");
    let p = pool(&["10.0.0.0/24"]);
    assert!(matches!(
        store.allocate(&bad, &p),
        Err(Error::InvalidAttachment(_))
    ));
    assert_eq!(files(store.dir()), ["lock"]);
}

#[test]
fn repeated_allocate_returns_the_same_addresses_and_writes_nothing() {
    let tmp = TempDir::new("idem");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.0.0.0/24", "fd00::/64"]);
    let first = store.allocate(&att("c1"), &p).unwrap();
    let before = state_bytes(&store);
    // A new handle, as a new plugin process would have.
    let again = Store::open(tmp.path(), "weft")
        .unwrap()
        .allocate(&att("c1"), &p)
        .unwrap();
    assert_eq!(again.ips, first.ips);
    assert!(!again.created);
    assert_eq!(state_bytes(&store), before);
}

#[test]
fn a_changed_pool_replaces_the_reservation_in_one_commit() {
    let tmp = TempDir::new("repool");
    let store = Store::open(tmp.path(), "weft").unwrap();
    store.allocate(&att("c1"), &pool(&["10.0.0.0/24"])).unwrap();
    let a = store
        .allocate(&att("c1"), &pool(&["10.0.1.0/24", "fd00::/64"]))
        .unwrap();
    assert!(a.created);
    assert_eq!(a.ips, [ip("10.0.1.2"), ip("fd00::2")]);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].ips, a.ips);
    assert_eq!(store.owner(ip("10.0.0.2")).unwrap(), None);
}

#[test]
fn dual_stack_exhaustion_writes_nothing() {
    let tmp = TempDir::new("exhaust");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.0.0.0/30", "fd00::/64"]);
    store.allocate(&att("c1"), &p).unwrap();
    let before = state_bytes(&store);
    match store.allocate(&att("c2"), &p) {
        Err(err @ Error::Exhausted { .. }) => {
            assert_eq!(err.to_string(), "no free address in 10.0.0.0/30");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state_bytes(&store), before, "no v6 address may be reserved");
    assert_eq!(store.get(&att("c2")).unwrap(), None);
    assert_eq!(
        store.free(&p).unwrap(),
        [
            ("10.0.0.0/30".parse().unwrap(), 0),
            ("fd00::/64".parse().unwrap(), (1u128 << 64) - 3)
        ]
    );
}

#[test]
fn release_is_idempotent_and_round_robin_survives_it() {
    let tmp = TempDir::new("release");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.0.0.0/24"]);
    store.allocate(&att("c1"), &p).unwrap();
    store.allocate(&att("c2"), &p).unwrap();

    let released = store.release(&att("c1")).unwrap().unwrap();
    assert_eq!(released.attachment, att("c1"));
    assert_eq!(released.ips, [ip("10.0.0.2")]);
    let before = state_bytes(&store);
    assert_eq!(store.release(&att("c1")).unwrap(), None);
    assert_eq!(store.release(&att("never")).unwrap(), None);
    assert_eq!(
        state_bytes(&store),
        before,
        "a no-op release writes nothing"
    );

    // The freed .2 is not handed out again right away, even by a new process.
    let next = Store::open(tmp.path(), "weft")
        .unwrap()
        .allocate(&att("c3"), &p)
        .unwrap();
    assert_eq!(next.ips, [ip("10.0.0.4")]);
    assert_eq!(
        store.get(&att("c2")).unwrap().unwrap().ips,
        [ip("10.0.0.3")]
    );
    assert_eq!(
        store.owner(ip("10.0.0.4")).unwrap().unwrap().attachment,
        att("c3")
    );
}

#[test]
fn retain_releases_the_rest_in_one_commit() {
    let tmp = TempDir::new("retain");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.0.0.0/24", "fd00::/64"]);
    for id in ["a", "b", "c", "d"] {
        store.allocate(&att(id), &p).unwrap();
    }
    let valid = [att("b"), att("d")];
    let released = store.retain(|r| valid.contains(&r.attachment)).unwrap();
    let ids: Vec<_> = released
        .iter()
        .map(|r| r.attachment.container_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    let left: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.attachment)
        .collect();
    assert_eq!(left, valid);

    let before = state_bytes(&store);
    assert_eq!(store.retain(|_| true).unwrap(), []);
    assert_eq!(state_bytes(&store), before);
    assert_eq!(store.retain(|_| false).unwrap().len(), 2);
    assert_eq!(store.list().unwrap(), []);
}

#[test]
fn a_corrupt_state_file_is_reported_and_kept() {
    let tmp = TempDir::new("corrupt");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let path = store.dir().join("reservations.json");
    let p = pool(&["10.0.0.0/24"]);
    for garbage in [
        &b""[..],
        b"{\"version\":1,\"reserva",
        b"\x00\x00\x00",
        b"{\"version\":7}",
    ] {
        fs::write(&path, garbage).unwrap();
        let results = [
            store.allocate(&att("c1"), &p).map(|_| ()),
            store.release(&att("c1")).map(|_| ()),
            store.get(&att("c1")).map(|_| ()),
            store.list().map(|_| ()),
            store.retain(|_| false).map(|_| ()),
            store.free(&p).map(|_| ()),
        ];
        for result in results {
            match result {
                Err(Error::Corrupt {
                    path: reported,
                    reason,
                }) => {
                    assert_eq!(reported, path);
                    assert!(!reason.is_empty());
                }
                other => panic!("{garbage:?}: {other:?}"),
            }
        }
        assert_eq!(fs::read(&path).unwrap(), garbage, "never discarded");
    }
    let err = store.list().unwrap_err().to_string();
    assert!(
        err.contains("reservations.json") && err.contains("unsupported version 7"),
        "{err}"
    );
}

#[test]
fn a_crash_before_rename_leaves_the_previous_state() {
    let tmp = TempDir::new("crash");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.0.0.0/24", "fd00::/64"]);
    store.allocate(&att("c1"), &p).unwrap();
    let before = store.list().unwrap();

    // What a writer killed between write and rename leaves behind: a
    // partial temporary file (and one from a long-gone pid).
    let dir = store.dir();
    fs::write(
        dir.join("reservations.json.tmp-4242"),
        b"{\"version\":1,\"reservations\":[{\"cont",
    )
    .unwrap();
    fs::write(dir.join("reservations.json.tmp-1"), b"").unwrap();

    // Readers see the last committed state and leave the debris alone.
    assert_eq!(store.list().unwrap(), before);
    assert_eq!(store.get(&att("c1")).unwrap().unwrap(), before[0]);
    assert_eq!(files(dir).len(), 4);

    // The next writer removes it under the lock, then commits normally.
    let a = store.allocate(&att("c2"), &p).unwrap();
    assert_eq!(a.ips, [ip("10.0.0.3"), ip("fd00::3")]);
    assert_eq!(files(dir), ["lock", "reservations.json"]);
    assert_eq!(store.list().unwrap().len(), 2);

    // Debris is cleaned even by a write that ends up changing nothing.
    fs::write(dir.join("reservations.json.tmp-9"), b"x").unwrap();
    assert_eq!(store.release(&att("nobody")).unwrap(), None);
    assert_eq!(files(dir), ["lock", "reservations.json"]);
}

#[test]
fn stores_of_different_networks_are_independent() {
    let tmp = TempDir::new("nets");
    let a = Store::open(tmp.path(), "net-a").unwrap();
    let b = Store::open(tmp.path(), "net-b").unwrap();
    let p = pool(&["10.0.0.0/24"]);
    assert_eq!(a.allocate(&att("c1"), &p).unwrap().ips, [ip("10.0.0.2")]);
    assert_eq!(b.allocate(&att("c1"), &p).unwrap().ips, [ip("10.0.0.2")]);
    assert_eq!(files(tmp.path()), ["net-a", "net-b"]);
}

/// On tmpfs (where /run lives on a systemd host) the commit costs nothing
/// to wait for, so it runs inline: the reservation is already durable and
/// the lock free while the work runs.
#[test]
fn allocate_with_on_tmpfs_commits_before_the_work() {
    let shm = std::path::Path::new("/dev/shm");
    let is_tmpfs = nix::sys::statfs::statfs(shm)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if !is_tmpfs {
        eprintln!("SKIPPED allocate_with_on_tmpfs_commits_before_the_work: /dev/shm is not tmpfs");
        return;
    }
    let tmp = TempDir::new_in(shm, "tmpfs");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.244.1.0/24"]);
    let (a, seen) = store
        .allocate_with(&att("c1"), &p, |_| {
            // The lock is free (another ADD may go on) and a second store
            // sees the reservation, while the work runs.
            let lock = fs::File::open(store.dir().join("lock")).unwrap();
            let free = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock);
            assert!(free.is_ok(), "the lock is still held while the work runs");
            drop(free);
            let other = Store::open(tmp.path(), "weft").unwrap();
            other.get(&att("c1")).unwrap().map(|r| r.ips)
        })
        .unwrap();
    assert!(a.created);
    assert_eq!(seen, Some(a.ips));
}

#[test]
fn allocate_with_runs_the_work_and_commits() {
    let tmp = TempDir::new("with");
    let store = Store::open(tmp.path(), "weft").unwrap();
    let p = pool(&["10.244.1.0/24"]);
    // The work sees the decided addresses; the commit is durable on return.
    let (a, seen) = store
        .allocate_with(&att("c1"), &p, |alloc| alloc.ips.clone())
        .unwrap();
    assert!(a.created);
    assert_eq!(seen, a.ips);
    let other = Store::open(tmp.path(), "weft").unwrap();
    assert_eq!(other.get(&att("c1")).unwrap().unwrap().ips, a.ips);
    // A repeat writes nothing and still runs the work.
    let before = state_bytes(&store);
    let (again, ran) = store.allocate_with(&att("c1"), &p, |_| true).unwrap();
    assert!(!again.created && ran);
    assert_eq!(again.ips, a.ips);
    assert_eq!(state_bytes(&store), before);
    // An exhausted pool never runs the work.
    let tiny = pool(&["10.244.9.0/30"]);
    store.allocate(&att("c2"), &tiny).unwrap();
    let mut ran = false;
    let err = store.allocate_with(&att("c3"), &tiny, |_| ran = true);
    assert!(matches!(err, Err(Error::Exhausted { .. })));
    assert!(!ran);
}

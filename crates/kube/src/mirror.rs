//! The mirror: one watcher per watched kind, running on a tokio runtime of
//! its own, feeding the model objects of [`crate::store`] behind a blocking
//! interface for weftd's synchronous loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::digest::WATCHED_KINDS;
use crate::error::Error;
use crate::snapshot::{KubeSnapshot, Stores};
use crate::store::{KindStore, Stored, key_of};

/// How long [`Mirror::wait`] waits for a burst of events to end before it
/// reports them as one change (the file source's watcher does the same).
const COALESCE_QUIET: Duration = Duration::from_millis(5);
/// The longest it keeps coalescing: under a steady stream of events the
/// loop must still get to run.
const COALESCE_MAX: Duration = Duration::from_millis(100);

/// Bound on one write to the API server from the loop's thread: a pass must
/// not hang while the API server is away.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The field manager weftd's writes are recorded under.
pub const FIELD_MANAGER: &str = "weftd";

/// A live copy of the watched kinds, as model objects.
///
/// The watchers list and then watch each kind cluster-wide, re-listing
/// after `410 Gone` and retrying with the watcher's default backoff when the
/// API server is unreachable or a connection dies (noticed within seconds
/// even when it dies silently, see [`crate::client`]); meanwhile the stores
/// keep their last content.
/// Dropping the mirror stops the watchers.
pub struct Mirror {
    runtime: tokio::runtime::Runtime,
    client: Client,
    changes: Arc<Changes>,
    /// The change counter of the last snapshot handed out.
    seen: u64,
}

/// The stores and what the watcher tasks tell the loop, under one lock so
/// that a snapshot's counter and content belong together.
#[derive(Default)]
struct Changes {
    state: Mutex<ChangeState>,
    cond: Condvar,
}

#[derive(Default)]
struct ChangeState {
    /// Every kind's objects.
    stores: Stores,
    /// Bumped on every event that changed a store.
    counter: u64,
    /// Whether each kind (in [`WATCHED_KINDS`] order) has completed its
    /// first list.
    synced: [bool; 6],
}

impl Changes {
    fn lock(&self) -> MutexGuard<'_, ChangeState> {
        // A poisoned lock only means a watcher task panicked mid-update of
        // two plain fields; the values are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a change of `kind` made under `s` and wakes the loop.
    fn changed(&self, s: &mut ChangeState, kind: usize, initial_list_done: bool) {
        s.counter += 1;
        if initial_list_done && !s.synced[kind] {
            s.synced[kind] = true;
            info!(kind = WATCHED_KINDS[kind], "initial list complete");
        }
        self.cond.notify_all();
    }
}

impl ChangeState {
    fn unsynced(&self) -> Vec<&'static str> {
        WATCHED_KINDS
            .iter()
            .zip(self.synced)
            .filter(|(_, done)| !done)
            .map(|(kind, _)| *kind)
            .collect()
    }
}

impl Mirror {
    /// Connects (see [`crate::client`]) and starts watching. Returns
    /// without waiting for the API server: when it cannot be reached the
    /// watchers keep retrying, and [`Mirror::snapshot`] says which kinds
    /// have not been listed yet.
    pub fn start(kubeconfig: Option<&Path>) -> Result<Mirror, Error> {
        // One worker: it only runs six watch streams, and every thread
        // that allocates gets a glibc arena of its own, whose freed pages
        // stay resident (fragmentation, not live objects).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-kube")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let client = runtime.block_on(crate::client(kubeconfig))?;
        let changes = Arc::new(Changes::default());
        {
            let _entered = runtime.enter();
            spawn_watch::<core::Node, _>(&client, 0, |s| &mut s.nodes, &changes);
            spawn_watch::<core::Namespace, _>(&client, 1, |s| &mut s.namespaces, &changes);
            spawn_watch::<core::Pod, _>(&client, 2, |s| &mut s.pods, &changes);
            spawn_watch::<networking::NetworkPolicy, _>(&client, 3, |s| &mut s.policies, &changes);
            spawn_watch::<core::Service, _>(&client, 4, |s| &mut s.services, &changes);
            spawn_watch::<discovery::EndpointSlice, _>(&client, 5, |s| &mut s.slices, &changes);
        }
        Ok(Mirror {
            runtime,
            client,
            changes,
            seen: 0,
        })
    }

    /// The client the watchers use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether every kind has completed its first list.
    pub fn synced(&self) -> bool {
        self.changes.lock().synced.iter().all(|s| *s)
    }

    /// Blocks until the stores changed since the last [`Mirror::snapshot`]
    /// (and every kind has been listed once), or until `timeout`. Returns
    /// whether they changed. A change is reported a few milliseconds late
    /// so that a burst of events makes one pass.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.changes.lock();
        loop {
            if state.counter != self.seen && state.synced.iter().all(|s| *s) {
                // Let the burst end: wait until no event came for
                // COALESCE_QUIET, or COALESCE_MAX passed.
                let burst_end = Instant::now() + COALESCE_MAX;
                loop {
                    let last = state.counter;
                    let quiet =
                        COALESCE_QUIET.min(burst_end.saturating_duration_since(Instant::now()));
                    if quiet.is_zero() {
                        return true;
                    }
                    let (next, timed_out) = self
                        .changes
                        .cond
                        .wait_timeout_while(state, quiet, |s| s.counter == last)
                        .unwrap_or_else(|e| e.into_inner());
                    state = next;
                    if timed_out.timed_out() {
                        return true;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changes
                .cond
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The stores converted into the model, with their digest. Refused
    /// until every kind has been listed once: a snapshot without, say, the
    /// Nodes would make the agent remove every route to them.
    pub fn snapshot(&mut self) -> Result<KubeSnapshot, Error> {
        let shared = {
            let state = self.changes.lock();
            let missing = state.unsynced();
            if !missing.is_empty() {
                return Err(Error::NotSynced { kinds: missing });
            }
            self.seen = state.counter;
            state.stores.share(state.counter)
        };
        // Copied into the model's owned vectors after the lock, so the
        // watchers are held up only while reference counts are taken.
        Ok(shared.snapshot())
    }

    /// Sets `annotations` on the Node `node` with a merge patch of only
    /// those keys: other writers' annotations and fields stay untouched.
    pub fn publish_node_annotations(
        &self,
        node: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        publish_node_annotations(&self.runtime, &self.client, node, annotations)
    }
}

/// Merge-patches `annotations` onto Node `node` from a blocking caller,
/// bounded by a timeout.
fn publish_node_annotations(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    node: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let operation = format!("patch the annotations of Node {node}");
    let api: Api<core::Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    runtime.block_on(async {
        match tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch(node, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::api(operation, e)),
            Err(_) => Err(Error::Timeout {
                operation,
                after: WRITE_TIMEOUT,
            }),
        }
    })
}

/// Starts the watcher of one kind (index `kind` in [`WATCHED_KINDS`]) on the
/// current runtime: list+watch with the default backoff, each object
/// converted into `M` as it arrives and kept in the store `store` picks.
fn spawn_watch<K, M>(
    client: &Client,
    kind: usize,
    store: fn(&mut Stores) -> &mut KindStore<M>,
    changes: &Arc<Changes>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
    M: Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let changes = Arc::clone(changes);
    let name = WATCHED_KINDS[kind];
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            // After an error the watcher resumes from its last
            // resourceVersion (no new list) when the API server still has
            // it: any event after a failure means the watch is back.
            if failing && event.is_ok() {
                info!(kind = name, "watch restored");
                failing = false;
            }
            match event {
                Ok(event) => apply_event(&changes, kind, store, event),
                Err(e) => {
                    // The backoff decides when to retry; the store keeps
                    // its content, so the agent keeps its state.
                    if failing {
                        debug!(kind = name, error = %e, "watch still failing; retrying with backoff");
                    } else {
                        warn!(kind = name, error = %e, "watch failed; retrying with backoff");
                        failing = true;
                    }
                }
            }
        }
    });
}

/// Applies one watcher event to the store of `kind`. The object is
/// converted before the lock is taken (and dropped right after), so the
/// loop's snapshot waits for no conversion and no k8s object is kept.
fn apply_event<K, M>(
    changes: &Changes,
    kind: usize,
    store: fn(&mut Stores) -> &mut KindStore<M>,
    event: watcher::Event<K>,
) where
    K: ResourceExt,
    for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
{
    match event {
        watcher::Event::Apply(object) => {
            let key = key_of(&object);
            let stored = Stored::convert(object);
            let mut s = changes.lock();
            store(&mut s.stores).apply(key, stored);
            changes.changed(&mut s, kind, false);
        }
        watcher::Event::Delete(object) => {
            let mut s = changes.lock();
            store(&mut s.stores).delete(&key_of(&object));
            changes.changed(&mut s, kind, false);
        }
        // A (re-)list: gathered aside, in force from InitDone on.
        watcher::Event::Init => store(&mut changes.lock().stores).init(),
        watcher::Event::InitApply(object) => {
            let key = key_of(&object);
            // A re-list mostly repeats what is stored: share it rather
            // than converting it again.
            let same = store(&mut changes.lock().stores)
                .unchanged(&key, object.meta().resource_version.as_deref());
            let stored = same.unwrap_or_else(|| Stored::convert(object));
            store(&mut changes.lock().stores).init_apply(key, stored);
        }
        watcher::Event::InitDone => {
            let mut s = changes.lock();
            store(&mut s.stores).init_done();
            changes.changed(&mut s, kind, true);
        }
    }
}

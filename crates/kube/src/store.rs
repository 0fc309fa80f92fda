//! One watched kind, kept as model objects: each object is converted once,
//! when its event arrives, and only the conversion's outcome and the
//! object's identity and resourceVersion are stored. A k8s-openapi object
//! is many times the size of its model (every `Option` field takes its
//! inline space, trimmed or not), so the mirror never stores one.
//!
//! The event semantics are the reflector's: `Apply` inserts or replaces,
//! `Delete` removes, and a (re-)list — `Init`, `InitApply`…, `InitDone` —
//! builds a new map that replaces the old one at once at `InitDone`, so
//! objects deleted while the watch was down disappear and the agent never
//! sees a half-listed kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;

/// `kubectl apply`'s copy of the whole last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An object's identity within its kind: (namespace, name). The derived
/// order (cluster-scoped first, then by namespace, then by name) is the
/// `file` source's sort order, so iterating a map gives the snapshot's.
pub(crate) type Key = (Option<String>, String);

/// What is kept of one object.
#[derive(Debug)]
pub(crate) struct Stored<M> {
    /// `metadata.resourceVersion`, for the digest.
    pub(crate) resource_version: String,
    /// The converted object, or why it does not convert. `Arc`: a snapshot
    /// and a re-list share it instead of copying or converting it again.
    pub(crate) model: Result<Arc<M>, Arc<str>>,
}

// Manual: a derive would require `M: Clone`, which the Arc does not need.
impl<M> Clone for Stored<M> {
    fn clone(&self) -> Self {
        Stored {
            resource_version: self.resource_version.clone(),
            model: self.model.clone(),
        }
    }
}

impl<M> Stored<M> {
    /// Converts `object` into the model; the object itself is dropped.
    pub(crate) fn convert<K>(mut object: K) -> Stored<M>
    where
        K: ResourceExt,
        for<'a> M: TryFrom<&'a K, Error = weft_model::Error>,
    {
        // The Node model keeps annotations (peers' backend data); this one
        // is never read and is as large as the object.
        object.annotations_mut().remove(LAST_APPLIED);
        Stored {
            model: M::try_from(&object)
                .map(Arc::new)
                .map_err(|e| Arc::from(e.to_string())),
            resource_version: object
                .meta_mut()
                .resource_version
                .take()
                .unwrap_or_default(),
        }
    }
}

/// The key of `object`.
pub(crate) fn key_of<K: ResourceExt>(object: &K) -> Key {
    (object.namespace(), object.name_any())
}

/// The objects of one kind.
#[derive(Debug)]
pub(crate) struct KindStore<M> {
    /// What the last complete list and the watch events since hold.
    objects: BTreeMap<Key, Stored<M>>,
    /// A list in progress: filled by `InitApply`, swapped in at `InitDone`.
    listing: Option<BTreeMap<Key, Stored<M>>>,
}

// Manual: a derive would require `M: Default`.
impl<M> Default for KindStore<M> {
    fn default() -> Self {
        KindStore {
            objects: BTreeMap::new(),
            listing: None,
        }
    }
}

impl<M> KindStore<M> {
    /// `Apply`: the object was added or changed.
    pub(crate) fn apply(&mut self, key: Key, stored: Stored<M>) {
        self.objects.insert(key, stored);
    }

    /// `Delete`: the object is gone.
    pub(crate) fn delete(&mut self, key: &Key) {
        self.objects.remove(key);
    }

    /// `Init`: a list starts; whatever a list cut short had gathered is
    /// dropped, and the stored objects stay in force until `InitDone`.
    pub(crate) fn init(&mut self) {
        self.listing = Some(BTreeMap::new());
    }

    /// `InitApply`: one object of the list in progress.
    pub(crate) fn init_apply(&mut self, key: Key, stored: Stored<M>) {
        // The watcher always sends `Init` first; should it not, the object
        // still belongs to the list that `InitDone` will swap in.
        self.listing
            .get_or_insert_with(BTreeMap::new)
            .insert(key, stored);
    }

    /// `InitDone`: the list is complete and replaces the stored objects.
    pub(crate) fn init_done(&mut self) {
        self.objects = self.listing.take().unwrap_or_default();
    }

    /// The stored object at `key` when it is at `resource_version`: a
    /// re-list reuses it rather than converting the same object again.
    pub(crate) fn unchanged(&self, key: &Key, resource_version: Option<&str>) -> Option<Stored<M>> {
        let stored = self.objects.get(key)?;
        let rv = resource_version?;
        (!rv.is_empty() && stored.resource_version == rv).then(|| stored.clone())
    }

    /// The stored objects in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &Stored<M>)> {
        self.objects.iter()
    }

    /// How many objects are stored.
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(rv: &str, model: u32) -> Stored<u32> {
        Stored {
            resource_version: rv.to_owned(),
            model: Ok(Arc::new(model)),
        }
    }

    fn key(name: &str) -> Key {
        (Some("default".to_owned()), name.to_owned())
    }

    fn names(store: &KindStore<u32>) -> Vec<(&str, &str)> {
        store
            .iter()
            .map(|((_, name), s)| (name.as_str(), s.resource_version.as_str()))
            .collect()
    }

    #[test]
    fn apply_replaces_and_delete_removes() {
        let mut store = KindStore::default();
        store.apply(key("a"), stored("1", 1));
        store.apply(key("b"), stored("2", 2));
        store.apply(key("a"), stored("3", 3));
        assert_eq!(names(&store), [("a", "3"), ("b", "2")]);
        store.delete(&key("b"));
        store.delete(&key("never-there"));
        assert_eq!(names(&store), [("a", "3")]);
    }

    #[test]
    fn a_relist_replaces_the_kind_at_init_done_only() {
        let mut store = KindStore::default();
        store.apply(key("gone"), stored("1", 1));
        store.apply(key("kept"), stored("2", 2));
        store.init();
        store.init_apply(key("kept"), stored("5", 5));
        store.init_apply(key("new"), stored("6", 6));
        // Mid-list, the previous content stays in force.
        assert_eq!(names(&store), [("gone", "1"), ("kept", "2")]);
        store.init_done();
        // Objects absent from the new list are gone.
        assert_eq!(names(&store), [("kept", "5"), ("new", "6")]);
    }

    #[test]
    fn an_interrupted_list_is_dropped_by_the_next_init() {
        let mut store = KindStore::default();
        store.init();
        store.init_apply(key("partial"), stored("1", 1));
        store.init();
        store.init_apply(key("full"), stored("2", 2));
        store.init_done();
        assert_eq!(names(&store), [("full", "2")]);
        // An empty list empties the kind.
        store.init();
        store.init_done();
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn unchanged_objects_are_shared_not_converted_again() {
        let mut store = KindStore::default();
        store.apply(key("a"), stored("7", 1));
        let again = store.unchanged(&key("a"), Some("7")).unwrap();
        let Ok(model) = &again.model else {
            panic!("converted")
        };
        let Ok(kept) = &store.objects[&key("a")].model else {
            panic!("converted")
        };
        assert!(Arc::ptr_eq(model, kept));
        assert!(store.unchanged(&key("a"), Some("8")).is_none());
        assert!(store.unchanged(&key("a"), None).is_none());
        assert!(store.unchanged(&key("b"), Some("7")).is_none());
    }

    #[test]
    fn conversion_drops_the_last_applied_copy_and_keeps_the_rest() {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "resourceVersion": "9", "annotations": {
                LAST_APPLIED: "{\"huge\": true}", "weft.dev/vtep-mac": "02:00:00:00:00:01"}},
            "spec": {"podCIDRs": ["10.244.1.0/24"]}
        }))
        .unwrap();
        let stored = Stored::<weft_model::Node>::convert(node);
        assert_eq!(stored.resource_version, "9");
        let node = stored.model.expect("converts");
        assert_eq!(
            node.annotations.keys().collect::<Vec<_>>(),
            ["weft.dev/vtep-mac"]
        );
    }

    #[test]
    fn a_rejected_object_keeps_its_version_and_reason() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "default", "resourceVersion": "3"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIPs": [{"ip": "not-an-ip"}]}
        }))
        .unwrap();
        let stored = Stored::<weft_model::Pod>::convert(pod);
        assert_eq!(stored.resource_version, "3");
        let reason = stored.model.expect_err("rejected");
        assert!(reason.contains("status.podIPs[0].ip"), "{reason}");
    }

    #[test]
    fn keys_sort_cluster_scoped_first_then_namespace_then_name() {
        let mut keys = [
            (Some("b".to_owned()), "a".to_owned()),
            (Some("a".to_owned()), "z".to_owned()),
            (None, "n".to_owned()),
        ];
        keys.sort();
        assert_eq!(keys[0].0, None);
        assert_eq!(keys[1], (Some("a".to_owned()), "z".to_owned()));
    }
}

//! The datastore handle: transactions over the object files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::documents::{self, Prepared};
use crate::error::{Error, Result};
use crate::fsio::{self, Lock};
use crate::layout::{self, JSON_SUFFIX, OBJECTS_DIR, ObjectKey, STATUS_DIR, check_dns_subdomain};

/// A handle on a datastore directory.
///
/// Handles are cheap and hold no open files: every operation takes the
/// directory's flock itself, so any number of handles, threads and
/// processes may share one directory. Writers serialise on the exclusive
/// lock; readers of several files take it shared for a consistent view.
#[derive(Clone, Debug)]
pub struct Datastore {
    root: PathBuf,
}

/// A held exclusive lock and the revision committed when it was taken.
struct Txn<'a> {
    root: &'a Path,
    _lock: Lock,
    revision: u64,
}

impl Datastore {
    /// Opens the datastore at `root`, creating its directories if needed,
    /// and removes temporary files left by writers that crashed mid-write.
    pub fn open(root: impl AsRef<Path>) -> Result<Datastore> {
        let root = root.as_ref().to_owned();
        fsio::create_dirs(&root.join(OBJECTS_DIR))?;
        fsio::create_dirs(&root.join(STATUS_DIR))?;
        let _lock = fsio::lock(&root, true)?;
        fsio::remove_stale_tmp(&root)?;
        Ok(Datastore { root })
    }

    /// The datastore's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The last committed revision (0 for a fresh store). One file read:
    /// the revision file is only ever replaced whole.
    pub fn revision(&self) -> Result<u64> {
        fsio::read_revision(&self.root)
    }

    /// Creates or replaces objects, all in one transaction that bumps the
    /// revision once and stamps it as `metadata.resourceVersion` on every
    /// written object. `List`s are flattened; a later document for the same
    /// object wins. A replacement without `status` keeps the stored one.
    ///
    /// Any invalid document rejects the whole call before anything is
    /// written. Objects whose content is unchanged are not rewritten, and a
    /// call that changes nothing commits nothing and returns the current
    /// revision: agents publishing the same thing again must not wake
    /// every other agent.
    pub fn apply(&self, docs: Vec<Value>) -> Result<u64> {
        let mut prepared: BTreeMap<PathBuf, Prepared> = BTreeMap::new();
        for (index, doc) in documents::flatten(docs).into_iter().enumerate() {
            let p = documents::prepare(index, doc)?;
            prepared.insert(p.key.rel_path(), p);
        }
        let txn = self.begin()?;
        let mut writes = Vec::new();
        for (rel, Prepared { key, mut value }) in prepared {
            let path = self.root.join(&rel);
            if let Some(old) = fsio::read_json(&path)? {
                documents::keep_status(&mut value, &old);
                if documents::same_content(&value, &old) {
                    continue;
                }
            }
            writes.push((key, path, value));
        }
        txn.commit_writes(writes)
    }

    /// Parses manifest text (multi-document YAML, or JSON) and applies it
    /// as one transaction; see [`Datastore::apply`].
    pub fn apply_text(&self, text: &str) -> Result<u64> {
        self.apply(documents::parse_text(text)?)
    }

    /// Deletes one object; `namespace` defaults to `default` for namespaced
    /// kinds and is ignored for cluster-scoped ones. Returns the new
    /// revision, or `None` when the object did not exist.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<u64>> {
        let key = ObjectKey::new(kind, namespace, name)?;
        self.delete_keys(vec![key])
    }

    /// Deletes the objects the documents name (only their identity is
    /// read, as `kubectl delete -f` does), in one transaction. Returns the
    /// new revision, or `None` when none of them existed. An unidentifiable
    /// document rejects the whole call.
    pub fn delete_docs(&self, docs: Vec<Value>) -> Result<Option<u64>> {
        let keys = documents::flatten(docs)
            .into_iter()
            .enumerate()
            .map(|(index, mut doc)| documents::identify(index, &mut doc))
            .collect::<Result<Vec<_>>>()?;
        self.delete_keys(keys)
    }

    fn delete_keys(&self, keys: Vec<ObjectKey>) -> Result<Option<u64>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let txn = self.begin()?;
        let mut dirs = Vec::new();
        for key in &keys {
            let path = self.root.join(key.rel_path());
            if fsio::remove_file(&path)? {
                dirs.extend(path.parent().map(Path::to_owned));
            }
        }
        if dirs.is_empty() {
            return Ok(None);
        }
        txn.commit(dirs).map(Some)
    }

    /// One object, or `None` when it does not exist. One file read, without
    /// the lock: object files are only ever replaced whole.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Result<Option<Value>> {
        let key = ObjectKey::new(kind, namespace, name)?;
        fsio::read_json(&self.root.join(key.rel_path()))
    }

    /// All objects of a kind (letter case ignored), across namespaces,
    /// sorted by namespace then name, read under the shared lock so that
    /// they come from one revision. A stored file that is not JSON fails
    /// the call, naming the file.
    pub fn list(&self, kind: &str) -> Result<Vec<Value>> {
        layout::check_kind(kind).map_err(|reason| Error::InvalidArgument {
            what: "kind",
            value: kind.to_owned(),
            reason,
        })?;
        let _lock = fsio::lock(&self.root, false)?;
        let mut out = Vec::new();
        for (_, path) in object_files(&self.root.join(layout::kind_dir(kind)))? {
            out.extend(fsio::read_json(&path)?);
        }
        Ok(out)
    }

    /// Read-modify-write of one object under the exclusive lock: `f` sees
    /// the stored object and changes it in place (labels, pod status, node
    /// annotations). Returns the new revision, the current one when `f`
    /// changed nothing (nothing is written), or `None` when the object does
    /// not exist (`f` is not called).
    ///
    /// `f` must not change the object's kind, namespace or name, and the
    /// result must be as valid as an applied document; otherwise nothing is
    /// written.
    pub fn update<F: FnOnce(&mut Value)>(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        f: F,
    ) -> Result<Option<u64>> {
        let key = ObjectKey::new(kind, namespace, name)?;
        let path = self.root.join(key.rel_path());
        let txn = self.begin()?;
        let Some(old) = fsio::read_json(&path)? else {
            return Ok(None);
        };
        let mut new = old.clone();
        f(&mut new);
        let update_err = |reason: String| Error::Update {
            key: key.to_string(),
            reason,
        };
        let Prepared {
            key: new_key,
            value,
        } = documents::prepare(0, new).map_err(|e| match e {
            Error::Invalid { reason, .. } => update_err(reason),
            other => other,
        })?;
        if new_key.rel_path() != key.rel_path() {
            return Err(update_err(format!("the update renamed it to {new_key}")));
        }
        if documents::same_content(&value, &old) {
            return Ok(Some(txn.revision));
        }
        txn.commit_writes(vec![(new_key, path, value)]).map(Some)
    }

    /// Publishes an agent's status for `node` (`<root>/status/<node>.json`):
    /// an atomic replacement that does not bump the revision, so agents
    /// reporting never wake one another.
    pub fn write_status(&self, node: &str, status: &Value) -> Result<()> {
        let path = self.status_path(node)?;
        // Shared: status writers only exclude the stale-file sweep of
        // `open`, not one another (each uses its own temporary file).
        let _lock = fsio::lock(&self.root, false)?;
        fsio::write_json(&path, status, &format!("status of node {node}"))
    }

    /// An agent's last published status, or `None` if it never wrote one.
    pub fn read_status(&self, node: &str) -> Result<Option<Value>> {
        fsio::read_json(&self.status_path(node)?)
    }

    /// Every node's last published status, by node name.
    pub fn statuses(&self) -> Result<BTreeMap<String, Value>> {
        let mut out = BTreeMap::new();
        for (node, path) in object_files(&self.root.join(STATUS_DIR))? {
            if let Some(status) = fsio::read_json(&path)? {
                out.insert(node, status);
            }
        }
        Ok(out)
    }

    fn status_path(&self, node: &str) -> Result<PathBuf> {
        check_dns_subdomain(node).map_err(|reason| Error::InvalidArgument {
            what: "node",
            value: node.to_owned(),
            reason,
        })?;
        Ok(self
            .root
            .join(STATUS_DIR)
            .join(format!("{node}{JSON_SUFFIX}")))
    }

    /// Takes the exclusive lock and reads the committed revision.
    fn begin(&self) -> Result<Txn<'_>> {
        let lock = fsio::lock(&self.root, true)?;
        let revision = fsio::read_revision(&self.root)?;
        Ok(Txn {
            root: &self.root,
            _lock: lock,
            revision,
        })
    }
}

impl Txn<'_> {
    /// Stamps and writes the objects, then commits; with nothing to write,
    /// commits nothing and returns the current revision.
    fn commit_writes(self, writes: Vec<(ObjectKey, PathBuf, Value)>) -> Result<u64> {
        if writes.is_empty() {
            return Ok(self.revision);
        }
        let next = self.revision + 1;
        let mut dirs = Vec::new();
        for (key, path, mut value) in writes {
            documents::stamp(&mut value, next);
            let dir = path.parent().map(Path::to_owned).unwrap_or_default();
            fsio::create_dirs(&dir)?;
            fsio::write_json(&path, &value, &key.to_string())?;
            dirs.push(dir);
        }
        self.commit(dirs)
    }

    /// Makes the changed directories durable, then bumps the revision: a
    /// crash before the bump leaves changed objects that the next
    /// transaction's revision covers.
    fn commit(self, mut dirs: Vec<PathBuf>) -> Result<u64> {
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            fsio::sync_dir(dir)?;
        }
        let next = self.revision + 1;
        fsio::write_revision(self.root, next)?;
        Ok(next)
    }
}

/// The `<stem>.json` files under `dir` (a kind's directory with its
/// namespace directories, or the flat status directory), sorted, with
/// temporary files skipped.
pub(crate) fn object_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (name, path) in fsio::sorted_entries(dir)? {
        if path.is_dir() {
            out.extend(object_files(&path)?);
        } else if let Some(stem) = name.strip_suffix(JSON_SUFFIX) {
            if !fsio::is_tmp(&name) && !stem.starts_with('.') {
                out.push((stem.to_owned(), path));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

//! Where objects live on disk, and the naming rules that keep every path
//! inside the datastore.
//!
//! `<root>/objects/<kind-lowercase-plural>/<namespace or _cluster>/<name>.json`.
//! Kinds, namespaces and names are validated before they become path
//! components: a DNS-1123 name can hold neither `/` nor be `..`, and `_`
//! (of `_cluster`) is not a DNS-1123 character, so no namespace collides
//! with the cluster-scope directory.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Subdirectory holding the objects.
pub(crate) const OBJECTS_DIR: &str = "objects";
/// Subdirectory holding the agents' status files.
pub(crate) const STATUS_DIR: &str = "status";
/// Directory name standing for "no namespace" under a kind's directory.
pub(crate) const CLUSTER_DIR: &str = "_cluster";
/// Suffix of every object and status file.
pub(crate) const JSON_SUFFIX: &str = ".json";
/// Namespace of a namespaced object whose manifest leaves it out.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Kinds without a namespace. Node and Namespace are what weft reads; the
/// others are the common cluster-scoped kinds (the policy ones matter to a
/// network plugin), listed so that applying them does not invent a
/// namespace for them.
const CLUSTER_SCOPED: &[&str] = &[
    "Node",
    "Namespace",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "ClusterNetworkPolicy",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "GatewayClass",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
];

/// Identity of a stored object: kind, namespace (`None` for cluster-scoped
/// kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind, e.g. `Pod`.
    pub kind: String,
    /// The namespace; `None` exactly when the kind is cluster-scoped.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key from arguments as a CLI user gives them: the kind in
    /// any letter case, the namespace defaulting to `default` for
    /// namespaced kinds and ignored for cluster-scoped ones (as `kubectl`
    /// does).
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Result<ObjectKey> {
        check_kind(kind).map_err(|reason| invalid_arg("kind", kind, reason))?;
        let namespace = if is_cluster_scoped(kind) {
            None
        } else {
            let ns = namespace.unwrap_or(DEFAULT_NAMESPACE);
            check_dns_label(ns).map_err(|reason| invalid_arg("namespace", ns, reason))?;
            Some(ns.to_owned())
        };
        check_object_name(kind, name).map_err(|reason| invalid_arg("name", name, reason))?;
        Ok(ObjectKey {
            kind: kind.to_owned(),
            namespace,
            name: name.to_owned(),
        })
    }

    /// The object's file, relative to the datastore root.
    pub(crate) fn rel_path(&self) -> PathBuf {
        kind_dir(&self.kind)
            .join(self.namespace.as_deref().unwrap_or(CLUSTER_DIR))
            .join(format!("{}{JSON_SUFFIX}", self.name))
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// Whether objects of `kind` have no namespace (letter case ignored).
pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.iter().any(|k| k.eq_ignore_ascii_case(kind))
}

/// The directory of a kind's objects, relative to the root.
pub(crate) fn kind_dir(kind: &str) -> PathBuf {
    Path::new(OBJECTS_DIR).join(plural(kind))
}

/// The lowercase plural Kubernetes uses for a kind's resource, by the same
/// rule as apimachinery's `UnsafeGuessKindToResource` (`Endpoints` stays,
/// `-s` takes `-es`, consonant `-y` becomes `-ies`), except that a vowel
/// before `y` keeps it (`gateways`).
pub(crate) fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower == "endpoints" {
        return lower;
    }
    if lower.ends_with('s') {
        return format!("{lower}es");
    }
    if let Some(stem) = lower.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            return format!("{stem}ies");
        }
    }
    format!("{lower}s")
}

/// A kind: an ASCII letter, then letters and digits, at most 63 bytes
/// (it becomes a directory name).
pub(crate) fn check_kind(kind: &str) -> Result<(), String> {
    if kind.is_empty() || kind.len() > 63 {
        return Err("must be 1-63 characters".to_owned());
    }
    if !kind.starts_with(|c: char| c.is_ascii_alphabetic())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err("must be a letter followed by letters and digits".to_owned());
    }
    Ok(())
}

/// An object name: a DNS-1123 label for Namespaces (as Kubernetes
/// requires), a DNS-1123 subdomain for everything else.
pub(crate) fn check_object_name(kind: &str, name: &str) -> Result<(), String> {
    if kind.eq_ignore_ascii_case("Namespace") {
        check_dns_label(name)
    } else {
        check_dns_subdomain(name)
    }
}

/// A DNS-1123 label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub(crate) fn check_dns_label(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 63 {
        return Err("a DNS-1123 label must be 1-63 characters".to_owned());
    }
    check_label_chars(text).map_err(|reason| format!("not a DNS-1123 label: {reason}"))
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated labels.
pub(crate) fn check_dns_subdomain(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 253 {
        return Err("a DNS-1123 subdomain must be 1-253 characters".to_owned());
    }
    text.split('.')
        .try_for_each(check_label_chars)
        .map_err(|reason| format!("not a DNS-1123 subdomain: {reason}"))
}

fn check_label_chars(label: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if label.is_empty() {
        return Err("empty label".to_owned());
    }
    if let Some(c) = label.chars().find(|&c| !alnum(c) && c != '-') {
        return Err(format!("{c:?} is not a lowercase letter, digit or '-'"));
    }
    if !label.starts_with(alnum) || !label.ends_with(alnum) {
        return Err("must start and end with a lowercase letter or digit".to_owned());
    }
    Ok(())
}

fn invalid_arg(what: &'static str, value: &str, reason: String) -> Error {
    Error::InvalidArgument {
        what,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_kubernetes() {
        for (kind, want) in [
            ("Pod", "pods"),
            ("Node", "nodes"),
            ("NetworkPolicy", "networkpolicies"),
            ("Ingress", "ingresses"),
            ("Endpoints", "endpoints"),
            ("EndpointSlice", "endpointslices"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(kind), want, "{kind}");
        }
    }

    #[test]
    fn names_follow_dns_1123() {
        assert!(check_dns_subdomain("web-1.example").is_ok());
        assert!(check_dns_label("kube-system").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "..", "a/b", "a..b", ".a"] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad:?}");
        }
        assert!(check_dns_label("a.b").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_subdomain(&"a".repeat(254)).is_err());
    }

    #[test]
    fn kinds_must_be_path_safe() {
        assert!(check_kind("NetworkPolicy").is_ok());
        for bad in ["", "../x", "a/b", "1Pod", "Po d"] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_default_and_drop_namespaces_by_scope() {
        let pod = ObjectKey::new("Pod", None, "web").unwrap();
        assert_eq!(pod.namespace.as_deref(), Some("default"));
        assert_eq!(pod.to_string(), "Pod/default/web");
        assert_eq!(pod.rel_path(), Path::new("objects/pods/default/web.json"));
        let node = ObjectKey::new("node", Some("ignored"), "n1").unwrap();
        assert_eq!(node.namespace, None);
        assert_eq!(node.rel_path(), Path::new("objects/nodes/_cluster/n1.json"));
        assert!(ObjectKey::new("Pod", Some("_cluster"), "web").is_err());
        assert!(ObjectKey::new("Pod", None, "../x").is_err());
    }
}

//! The digest of a set of objects at their resourceVersions: what an agent
//! reports after a pass and what `weftctl lab sync` compares against a
//! fresh list of the cluster.

use sha2::{Digest, Sha256};

/// The kinds the `kube` source watches, as they appear in digest lines.
pub const WATCHED_KINDS: [&str; 6] = [
    "Node",
    "Namespace",
    "Pod",
    "NetworkPolicy",
    "Service",
    "EndpointSlice",
];

/// One object's identity and version, borrowed from wherever it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectVersion<'a> {
    /// One of [`WATCHED_KINDS`].
    pub kind: &'a str,
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.resourceVersion`.
    pub resource_version: &'a str,
}

/// Digests objects: each is the line `{kind}/{namespace or "_"}/{name}={resource_version}`,
/// the lines are sorted bytewise and joined with `\n`, and the result is the
/// first 16 hex characters of their SHA-256. Order independent, so the
/// mirror's stores and a LIST agree whatever order they hold objects in.
pub fn digest<'a>(items: impl IntoIterator<Item = ObjectVersion<'a>>) -> String {
    let mut lines: Vec<String> = items
        .into_iter()
        .map(|o| {
            format!(
                "{}/{}/{}={}",
                o.kind,
                o.namespace.unwrap_or("_"),
                o.name,
                o.resource_version
            )
        })
        .collect();
    lines.sort_unstable();
    let sum = Sha256::digest(lines.join("\n").as_bytes());
    let mut hex = String::with_capacity(16);
    for byte in &sum[..8] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>(kind: &'a str, ns: Option<&'a str>, name: &'a str, rv: &'a str) -> ObjectVersion<'a> {
        ObjectVersion {
            kind,
            namespace: ns,
            name,
            resource_version: rv,
        }
    }

    #[test]
    fn digest_is_the_sha256_prefix_of_the_sorted_lines() {
        let items = [
            v("Pod", Some("default"), "a", "12"),
            v("Node", None, "n1", "7"),
        ];
        let text = "Node/_/n1=7\nPod/default/a=12";
        let sum = Sha256::digest(text.as_bytes());
        let want: String = sum[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest(items), want);
        assert_eq!(digest(items).len(), 16);
    }

    #[test]
    fn digest_ignores_order() {
        let a = [
            v("Pod", Some("default"), "a", "12"),
            v("Node", None, "n1", "7"),
            v("Service", Some("kube-system"), "dns", "3"),
        ];
        let mut b = a;
        b.reverse();
        assert_eq!(digest(a), digest(b));
    }

    #[test]
    fn digest_changes_with_any_version() {
        let a = [v("Node", None, "n1", "7")];
        let b = [v("Node", None, "n1", "8")];
        assert_ne!(digest(a), digest(b));
        // The empty set has a digest too (SHA-256 of the empty string).
        assert_eq!(digest([]), "e3b0c44298fc1c14");
    }
}

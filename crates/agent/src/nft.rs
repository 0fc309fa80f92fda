//! The masquerade ruleset of table `inet weft`, rendered as `nft -f` text.
//!
//! The table is replaced whole, atomically, in one `nft -f -` transaction
//! (`table inet weft {}` makes the delete safe when it does not exist yet,
//! `delete table` drops the old contents, then the new definition), so no
//! packet ever sees a half-built table and no other table is touched.
//!
//! Change detection: the definition's SHA-256 is stored in the table's
//! comment, and the reconciler replaces the table only when the comment in
//! the kernel differs. That costs one `nft -t list table` (terse: without
//! set elements) per reconcile and no parsing of rules, whose printed form
//! varies between nft versions. The
//! price: an out-of-band edit that keeps the comment goes unnoticed until
//! the desired ruleset changes; nothing but weft writes this table.

use std::fmt::Write;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::desired::Masquerade;

/// The table's family and name.
pub const TABLE: &str = "inet weft";
/// Prefix of the table comment that carries the definition's hash.
pub const HASH_PREFIX: &str = "weft-agent sha256=";

/// A rendered ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The complete `nft -f` input: create-if-missing, delete, define.
    pub script: String,
    /// Hex SHA-256 of the definition, also in the table's comment.
    pub hash: String,
}

/// Renders the table for `masq`. Sets and the rule of a family appear only
/// when the node has pod CIDRs of that family.
pub fn render(masq: &Masquerade) -> Ruleset {
    let body = body(masq);
    let hash = hex(&Sha256::digest(body.as_bytes()));
    let mut script = String::new();
    let _ = writeln!(script, "table {TABLE} {{}}");
    let _ = writeln!(script, "delete table {TABLE}");
    let _ = writeln!(script, "table {TABLE} {{");
    let _ = writeln!(script, "\tcomment \"{HASH_PREFIX}{hash}\"");
    script.push_str(&body);
    script.push_str("}\n");
    Ruleset { script, hash }
}

/// The table's contents, without the hash comment.
fn body(masq: &Masquerade) -> String {
    let mut out = String::new();
    let mut rules = Vec::new();
    for (v4, suffix, addr_type, proto) in [
        (true, "4", "ipv4_addr", "ip"),
        (false, "6", "ipv6_addr", "ip6"),
    ] {
        let of_family = |nets: &[IpNet]| -> Vec<IpNet> {
            nets.iter()
                .copied()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .collect()
        };
        let pods = of_family(&masq.pod_cidrs);
        if pods.is_empty() {
            continue;
        }
        set(&mut out, &format!("pods{suffix}"), addr_type, &pods);
        set(
            &mut out,
            &format!("cluster{suffix}"),
            addr_type,
            &of_family(&masq.cluster_cidrs),
        );
        rules.push(format!(
            "{proto} saddr @pods{suffix} {proto} daddr != @cluster{suffix} masquerade"
        ));
    }
    out.push_str("\tchain postrouting {\n");
    out.push_str("\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    for rule in rules {
        let _ = writeln!(out, "\t\t{rule}");
    }
    out.push_str("\t}\n");
    out
}

/// A named interval set; an empty one has no `elements` line (nft refuses
/// `elements = { }`) and matches nothing.
fn set(out: &mut String, name: &str, addr_type: &str, elements: &[IpNet]) {
    let _ = writeln!(out, "\tset {name} {{");
    let _ = writeln!(out, "\t\ttype {addr_type}");
    out.push_str("\t\tflags interval\n");
    if !elements.is_empty() {
        let list: Vec<String> = elements.iter().map(|n| n.trunc().to_string()).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(", "));
    }
    out.push_str("\t}\n");
}

/// The hash in the comment of table `inet weft` as `nft -t list table inet
/// weft` prints it; `None` when the table has no weft hash comment. The
/// text form is read because `nft -j` (1.0.6) leaves table comments out. The
/// table's own comment is the first line inside `table inet weft {`; set,
/// chain and rule comments come later and deeper.
pub fn hash_from_listing(listing: &str) -> Option<String> {
    let mut lines = listing.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.find(|l| *l == "table inet weft {")?;
    lines
        .next()?
        .strip_prefix("comment \"")?
        .strip_suffix('"')?
        .strip_prefix(HASH_PREFIX)
        .map(str::to_string)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn dual_stack_ruleset_golden() {
        let masq = Masquerade {
            pod_cidrs: nets(&["10.244.1.0/24", "fd00:10:244:1::/64"]),
            cluster_cidrs: nets(&["10.244.0.0/16", "fd00:10:244::/48"]),
        };
        let r = render(&masq);
        let golden = include_str!("../tests/golden/masquerade-dual-stack.nft");
        let golden = golden.replace("@HASH@", &r.hash);
        assert_eq!(r.script, golden);
    }

    #[test]
    fn v4_only_has_no_v6_set_or_rule() {
        let masq = Masquerade {
            pod_cidrs: nets(&["10.244.1.0/24"]),
            cluster_cidrs: nets(&["10.244.0.0/16"]),
        };
        let r = render(&masq);
        assert!(!r.script.contains("ip6"));
        assert!(
            r.script
                .contains("ip saddr @pods4 ip daddr != @cluster4 masquerade")
        );
    }

    #[test]
    fn no_pod_cidrs_gives_an_empty_chain() {
        let r = render(&Masquerade::default());
        assert!(!r.script.contains("masquerade"));
        assert!(r.script.contains("chain postrouting"));
    }

    #[test]
    fn hash_changes_with_elements_only() {
        let a = Masquerade {
            pod_cidrs: nets(&["10.244.1.0/24"]),
            cluster_cidrs: nets(&["10.244.0.0/16"]),
        };
        let mut b = a.clone();
        assert_eq!(render(&a).hash, render(&b).hash);
        b.cluster_cidrs = nets(&["10.0.0.0/8"]);
        assert_ne!(render(&a).hash, render(&b).hash);
    }

    #[test]
    fn hash_is_read_back_from_nft_listing() {
        let listing = "table inet weft {\n\tcomment \"weft-agent sha256=abcd\"\n\tset pods4 {\n\t\ttype ipv4_addr\n\t}\n}\n";
        assert_eq!(hash_from_listing(listing).as_deref(), Some("abcd"));
        // The rendered script is also a listing of the table.
        let r = render(&Masquerade::default());
        assert_eq!(hash_from_listing(&r.script), Some(r.hash));
        let foreign =
            "table inet weft {\n\tset s {\n\t\tcomment \"weft-agent sha256=ab\"\n\t}\n}\n";
        assert_eq!(hash_from_listing(foreign), None);
        assert_eq!(hash_from_listing(""), None);
    }
}

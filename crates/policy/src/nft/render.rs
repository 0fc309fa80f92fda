//! The whole table as one `nft -f` transaction.

use std::fmt::Write;

use super::{BASE_CHAIN, BASE_CHAIN_HOOK, Ruleset, TABLE};

/// Renders `ruleset` as a complete `nft -f` script that replaces the table
/// atomically: `table … {}` creates it when missing so that the `delete`
/// cannot fail, then the new definition follows, all in one transaction, so
/// no packet sees a half-built table (as the agent's masquerade table does).
/// For the first load and after a restart; later changes go through
/// [`super::render_delta`].
///
/// Order inside the table: sets, regular chains, maps (their `jump`s need the
/// chains), the base chain last (it refers to sets and maps).
pub fn render_full(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table {TABLE} {{}}");
    let _ = writeln!(out, "delete table {TABLE}");
    let _ = writeln!(out, "table {TABLE} {{");
    for (name, set) in &ruleset.sets {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype {}", set.typ);
        if !set.flags.is_empty() {
            let _ = writeln!(out, "\t\tflags {}", set.flags.join(","));
        }
        elements(&mut out, set.elements.iter().cloned());
        out.push_str("\t}\n");
    }
    for (name, rules) in ruleset.chains.iter().filter(|(n, _)| *n != BASE_CHAIN) {
        chain(&mut out, name, None, rules);
    }
    for (name, map) in &ruleset.maps {
        let _ = writeln!(out, "\tmap {name} {{");
        let _ = writeln!(out, "\t\ttype {} : {}", map.key_type, map.value_type);
        elements(&mut out, map.element_texts(map.elements.keys()).into_iter());
        out.push_str("\t}\n");
    }
    if let Some(rules) = ruleset.chains.get(BASE_CHAIN) {
        chain(&mut out, BASE_CHAIN, Some(BASE_CHAIN_HOOK), rules);
    }
    out.push_str("}\n");
    out
}

/// An `elements = { … }` line; none for an empty set (nft refuses
/// `elements = { }`).
fn elements(out: &mut String, items: impl Iterator<Item = String>) {
    let items: Vec<String> = items.collect();
    if !items.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(", "));
    }
}

fn chain(out: &mut String, name: &str, hook: Option<&str>, rules: &[String]) {
    let _ = writeln!(out, "\tchain {name} {{");
    if let Some(hook) = hook {
        let _ = writeln!(out, "\t\t{hook}");
    }
    for rule in rules {
        let _ = writeln!(out, "\t\t{rule}");
    }
    out.push_str("\t}\n");
}

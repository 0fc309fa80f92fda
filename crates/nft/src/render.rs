//! The whole table as one `nft -f` transaction.

use std::fmt::Write;

use super::{MapDef, Ruleset};

/// Renders `ruleset` as a complete `nft -f` script that replaces the table
/// atomically: `table … {}` creates it when missing so that the `delete`
/// cannot fail, then the new definition follows, all in one transaction, so
/// no packet sees a half-built table. For the first load and after a
/// restart; later changes go through [`super::render_delta`].
///
/// Order inside the table: sets and maps of data, regular chains (their
/// rules may look those up), verdict maps (their `jump`s need the chains),
/// the base chains last, by name (they refer to sets and maps).
pub fn render_full(ruleset: &Ruleset) -> String {
    let table = &ruleset.table;
    let mut out = String::new();
    let _ = writeln!(out, "table {table} {{}}");
    let _ = writeln!(out, "delete table {table}");
    let _ = writeln!(out, "table {table} {{");
    for (name, set) in &ruleset.sets {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype {}", set.typ);
        if !set.flags.is_empty() {
            let _ = writeln!(out, "\t\tflags {}", set.flags.join(","));
        }
        elements(&mut out, set.elements.iter().cloned());
        out.push_str("\t}\n");
    }
    let (verdict_maps, data_maps): (Vec<_>, Vec<_>) =
        ruleset.maps.iter().partition(|(_, map)| map.is_verdict());
    for (name, map) in data_maps {
        self::map(&mut out, name, map);
    }
    for (name, rules) in &ruleset.chains {
        chain(&mut out, name, None, rules);
    }
    for (name, map) in verdict_maps {
        self::map(&mut out, name, map);
    }
    for (name, base) in &ruleset.base_chains {
        chain(&mut out, name, Some(&base.hook), &base.rules);
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

fn map(out: &mut String, name: &str, map: &MapDef) {
    let _ = writeln!(out, "\tmap {name} {{");
    let _ = writeln!(out, "\t\t{}", map.type_line());
    elements(out, map.element_texts(map.elements.keys()).into_iter());
    out.push_str("\t}\n");
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

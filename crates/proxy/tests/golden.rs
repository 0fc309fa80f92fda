//! Golden rulesets: the whole table for a set of Services that covers every
//! feature, compared byte for byte with `tests/golden/*.nft`. Set
//! `WEFT_UPDATE_GOLDEN=1` to rewrite the files after an intended change
//! (and review the diff).

mod support;

use support::*;
use weft_proxy::{compile, render_full};

fn check(name: &str, text: &str) {
    weft_testkit::golden(env!("CARGO_MANIFEST_DIR"), name, text);
}

#[test]
fn full_table() {
    let (services, slices) = cluster();
    check(
        "full.nft",
        &render_full(&compile(&services, &slices, &node())),
    );
}

#[test]
fn empty_cluster() {
    check("empty.nft", &render_full(&compile(&[], &[], &node())));
}

#[test]
fn compilation_is_deterministic_and_order_independent() {
    let (mut services, mut slices) = cluster();
    let first = compile(&services, &slices, &node());
    services.reverse();
    slices.reverse();
    assert_eq!(compile(&services, &slices, &node()), first);
}

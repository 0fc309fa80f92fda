use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

#[test]
fn reads_like_the_map_it_replaces() {
    let map = BTreeMap::from([
        ("tier".to_owned(), "web".to_owned()),
        ("app".to_owned(), "shop".to_owned()),
    ]);
    let labels = Labels::from(&map);
    assert_eq!(labels.len(), 2);
    assert_eq!(labels.get("app"), Some("shop"));
    assert_eq!(labels.get("nope"), None);
    assert!(labels.contains_key("tier"));
    assert_eq!(&labels["tier"], "web");
    // Key order, as the map iterates.
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["app", "tier"]);
    assert_eq!(labels.to_map(), map);
    assert_eq!(format!("{labels:?}"), format!("{map:?}"));
    assert!(Labels::new().is_empty());
}

#[test]
fn the_last_of_equal_keys_wins() {
    let labels: Labels = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
    assert_eq!(labels.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
}

#[test]
fn with_replaces_or_inserts_in_order() {
    let labels = Labels::from([("b", "2")]);
    assert_eq!(
        labels.with("a", "1").iter().collect::<Vec<_>>(),
        [("a", "1"), ("b", "2")]
    );
    assert_eq!(
        labels.with("b", "3").iter().collect::<Vec<_>>(),
        [("b", "3")]
    );
}

#[test]
fn equal_strings_are_shared() {
    let a = Labels::from([("app", "interned-value-1")]);
    let b = Labels::from([("app", "interned-value-1")]);
    assert!(Arc::ptr_eq(&a.pairs()[0].1, &b.pairs()[0].1));
    assert!(Arc::ptr_eq(&a.pairs()[0].0, &intern("app")));
}

#[test]
fn unused_strings_leave_the_interner() {
    // Far more distinct strings than the first purge threshold, none kept:
    // the table must not hold them all.
    for i in 0..4 * PURGE_MIN {
        drop(intern(&format!("churn-{i}")));
    }
    let held = INTERNER.lock().unwrap().strings.len();
    assert!(held < 3 * PURGE_MIN, "{held} strings held");
    // A string still in use survives purges and stays shared.
    let kept = intern("kept-across-purges");
    for i in 0..4 * PURGE_MIN {
        drop(intern(&format!("churn2-{i}")));
    }
    assert!(Arc::ptr_eq(&kept, &intern("kept-across-purges")));
}

#[test]
fn serde_is_a_map() {
    let labels = Labels::from([("b", "2"), ("a", "1")]);
    let json = serde_json::to_string(&labels).unwrap();
    assert_eq!(json, r#"{"a":"1","b":"2"}"#);
    assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), labels);
}

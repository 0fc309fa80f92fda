//! Selector semantics and validation, checked against Kubernetes behaviour.

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The labels of an object.
fn set(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

fn req(key: &str, op: &str, values: Option<&[&str]>) -> meta::LabelSelectorRequirement {
    meta::LabelSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
    }
}

fn selector(
    match_labels: &[(&str, &str)],
    exprs: Vec<meta::LabelSelectorRequirement>,
) -> Result<LabelSelector, SelectorError> {
    LabelSelector::from_k8s(&meta::LabelSelector {
        match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    })
}

#[test]
fn semantics_table() {
    let web = set(&[("app", "web"), ("tier", "front")]);
    let db = set(&[("app", "db")]);
    let none = set(&[]);
    // (selector, labels, expected)
    let cases: Vec<(&str, LabelSelector, &Labels, bool)> = vec![
        (
            "empty matches labels",
            selector(&[], vec![]).unwrap(),
            &web,
            true,
        ),
        (
            "empty matches no labels",
            selector(&[], vec![]).unwrap(),
            &none,
            true,
        ),
        (
            "matchLabels equal",
            selector(&[("app", "web")], vec![]).unwrap(),
            &web,
            true,
        ),
        (
            "matchLabels differ",
            selector(&[("app", "web")], vec![]).unwrap(),
            &db,
            false,
        ),
        (
            "matchLabels absent",
            selector(&[("app", "web")], vec![]).unwrap(),
            &none,
            false,
        ),
        (
            "In hit",
            selector(&[], vec![req("app", "In", Some(&["web", "db"]))]).unwrap(),
            &db,
            true,
        ),
        (
            "In miss",
            selector(&[], vec![req("app", "In", Some(&["api"]))]).unwrap(),
            &db,
            false,
        ),
        (
            "In absent key",
            selector(&[], vec![req("app", "In", Some(&["web"]))]).unwrap(),
            &none,
            false,
        ),
        (
            "NotIn hit",
            selector(&[], vec![req("app", "NotIn", Some(&["web"]))]).unwrap(),
            &web,
            false,
        ),
        (
            "NotIn other value",
            selector(&[], vec![req("app", "NotIn", Some(&["web"]))]).unwrap(),
            &db,
            true,
        ),
        (
            "NotIn absent key",
            selector(&[], vec![req("app", "NotIn", Some(&["web"]))]).unwrap(),
            &none,
            true,
        ),
        (
            "Exists present",
            selector(&[], vec![req("tier", "Exists", None)]).unwrap(),
            &web,
            true,
        ),
        (
            "Exists absent",
            selector(&[], vec![req("tier", "Exists", None)]).unwrap(),
            &db,
            false,
        ),
        (
            "Exists empty values",
            selector(&[], vec![req("tier", "Exists", Some(&[]))]).unwrap(),
            &web,
            true,
        ),
        (
            "DoesNotExist present",
            selector(&[], vec![req("tier", "DoesNotExist", None)]).unwrap(),
            &web,
            false,
        ),
        (
            "DoesNotExist absent",
            selector(&[], vec![req("tier", "DoesNotExist", None)]).unwrap(),
            &db,
            true,
        ),
        (
            "all terms ANDed, all hold",
            selector(
                &[("app", "web")],
                vec![
                    req("tier", "In", Some(&["front"])),
                    req("x", "DoesNotExist", None),
                ],
            )
            .unwrap(),
            &web,
            true,
        ),
        (
            "all terms ANDed, one fails",
            selector(
                &[("app", "web")],
                vec![
                    req("tier", "In", Some(&["front"])),
                    req("app", "NotIn", Some(&["web"])),
                ],
            )
            .unwrap(),
            &web,
            false,
        ),
        (
            "matchLabels ANDed with expression",
            selector(&[("app", "db")], vec![req("tier", "Exists", None)]).unwrap(),
            &db,
            false,
        ),
    ];
    for (name, sel, labels, expected) in cases {
        assert_eq!(sel.matches(labels), expected, "case {name}: {sel:?}");
    }
}

#[test]
fn empty_value_matches_empty_label() {
    let sel = selector(&[("flag", "")], vec![]).unwrap();
    assert!(sel.matches(&set(&[("flag", "")])));
    assert!(!sel.matches(&set(&[])));
}

#[test]
fn absent_fields_give_empty_selector() {
    let sel = LabelSelector::from_k8s(&meta::LabelSelector::default()).unwrap();
    assert!(sel.is_empty());
    assert_eq!(sel, LabelSelector::default());
}

#[test]
fn operator_errors() {
    let err = selector(&[], vec![req("app", "in", Some(&["web"]))]).unwrap_err();
    assert_eq!(
        err,
        SelectorError::UnknownOperator {
            key: "app".into(),
            operator: "in".into()
        }
    );
    for op in ["In", "NotIn"] {
        for values in [None, Some(&[][..])] {
            let err = selector(&[], vec![req("app", op, values)]).unwrap_err();
            assert!(
                matches!(err, SelectorError::MissingValues { .. }),
                "{op}: {err}"
            );
        }
    }
    for op in ["Exists", "DoesNotExist"] {
        let err = selector(&[], vec![req("app", op, Some(&["web"]))]).unwrap_err();
        assert!(
            matches!(err, SelectorError::UnexpectedValues { .. }),
            "{op}: {err}"
        );
    }
    assert!(
        err_text(selector(&[], vec![req("app", "Exists", Some(&["x"]))]))
            .contains("takes no values")
    );
}

fn err_text(r: Result<LabelSelector, SelectorError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn valid_keys() {
    let long_name = "a".repeat(63);
    let long_prefix = format!("{}.com", "a".repeat(249));
    for key in [
        "app",
        "a",
        "A_b.c-d9",
        "app.kubernetes.io/name",
        "kubernetes.io/metadata.name",
        "x/y",
        long_name.as_str(),
        &format!("{long_prefix}/n"),
    ] {
        assert_eq!(validate_label_key(key), Ok(()), "{key}");
    }
}

#[test]
fn invalid_keys() {
    let long_name = "a".repeat(64);
    let long_prefix = format!("{}.com/n", "a".repeat(250));
    for key in [
        "",
        "-app",
        "app-",
        "a b",
        "a/b/c",
        "/name",
        "prefix/",
        "Example.com/name",
        "exa_mple.com/name",
        "-x.com/name",
        "x..com/name",
        "ünïcode",
        long_name.as_str(),
        long_prefix.as_str(),
    ] {
        let err = validate_label_key(key).unwrap_err();
        assert!(
            matches!(err, SelectorError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
    }
}

#[test]
fn label_values() {
    for value in ["", "a", "web-1", "v1.2_3", &"z".repeat(63)] {
        assert_eq!(validate_label_value("k", value), Ok(()), "{value:?}");
    }
    for value in ["-a", "a-", "a b", "a/b", &"z".repeat(64)] {
        assert!(validate_label_value("k", value).is_err(), "{value:?}");
    }
}

#[test]
fn invalid_keys_and_values_rejected_by_from_k8s() {
    assert!(matches!(
        selector(&[("bad key", "v")], vec![]),
        Err(SelectorError::InvalidKey { .. })
    ));
    assert!(matches!(
        selector(&[("k", "bad value")], vec![]),
        Err(SelectorError::InvalidValue { .. })
    ));
    assert!(matches!(
        selector(&[], vec![req("k", "In", Some(&["ok", "-bad"]))]),
        Err(SelectorError::InvalidValue { .. })
    ));
    assert!(matches!(
        selector(&[], vec![req("Bad.io/k", "Exists", None)]),
        Err(SelectorError::InvalidKey { .. })
    ));
    let text = err_text(selector(&[("k", "bad value")], vec![]));
    assert!(
        text.contains("\"bad value\"") && text.contains("\"k\""),
        "{text}"
    );
}

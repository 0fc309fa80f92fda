//! Label selectors with exact Kubernetes semantics and validation.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::error::SelectorError;
use crate::labels::{Labels, Str, intern};

/// Longest name part of a label key, and longest label value.
const MAX_NAME_LEN: usize = 63;
/// Longest DNS-subdomain prefix of a label key.
const MAX_PREFIX_LEN: usize = 253;

/// A set-based label selector.
///
/// An empty selector matches every label set. A null (absent) selector is
/// not representable here on purpose: callers hold `Option<LabelSelector>`,
/// because what "absent" means (nothing, or everything) depends on the field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Every key must be present with exactly this value.
    pub match_labels: Labels,
    /// Every requirement must hold.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: Str,
    /// How the key's value is tested.
    pub op: Operator,
    /// The values for `In` / `NotIn`, sorted and unique; empty for
    /// `Exists` / `DoesNotExist`. Interned, like label values.
    pub values: Box<[Str]>,
}

/// A `matchExpressions` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// The key is present and its value is one of the values.
    In,
    /// The key is absent, or its value is none of the values.
    NotIn,
    /// The key is present, whatever its value.
    Exists,
    /// The key is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// Converts and validates a Kubernetes selector, rejecting what the API
    /// server would reject.
    pub fn from_k8s(selector: &meta::LabelSelector) -> Result<Self, SelectorError> {
        for (key, value) in selector.match_labels.iter().flatten() {
            validate_label_key(key)?;
            validate_label_value(key, value)?;
        }
        let match_labels = selector.match_labels.iter().flatten().collect();
        let match_expressions = selector
            .match_expressions
            .iter()
            .flatten()
            .map(Requirement::from_k8s)
            .collect::<Result<_, _>>()
            .map(exact)?;
        Ok(Self {
            match_labels,
            match_expressions,
        })
    }

    /// Whether the selector selects an object with these labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no terms, and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl Requirement {
    /// Converts and validates one Kubernetes requirement.
    pub fn from_k8s(req: &meta::LabelSelectorRequirement) -> Result<Self, SelectorError> {
        let key = &req.key;
        validate_label_key(key)?;
        let op = Operator::parse(&req.operator).ok_or_else(|| SelectorError::UnknownOperator {
            key: key.clone(),
            operator: req.operator.clone(),
        })?;
        let values: BTreeSet<&str> = req.values.iter().flatten().map(String::as_str).collect();
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError::MissingValues {
                    key: key.clone(),
                    operator: op.as_str(),
                });
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues {
                    key: key.clone(),
                    operator: op.as_str(),
                });
            }
            _ => {}
        }
        for value in &values {
            validate_label_value(key, value)?;
        }
        Ok(Self::new(key, op, values))
    }

    /// A requirement as given, unvalidated (for callers that build
    /// selectors themselves); `values` are sorted and deduplicated.
    pub fn new<V: AsRef<str>>(
        key: &str,
        op: Operator,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        let values: BTreeSet<Str> = values.into_iter().map(|v| intern(v.as_ref())).collect();
        Self {
            key: intern(key),
            op,
            values: values.into_iter().collect(),
        }
    }

    /// Whether `value` is one of [`Self::values`].
    pub fn has_value(&self, value: &str) -> bool {
        self.values.binary_search_by(|v| (**v).cmp(value)).is_ok()
    }

    /// Whether the requirement holds for these labels.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::In => value.is_some_and(|v| self.has_value(v)),
            Operator::NotIn => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl Operator {
    /// Parses the operator as Kubernetes spells it (case-sensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }

    /// The operator as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

/// `vec` without spare capacity. Model objects are built once and then only
/// read, for as long as the cluster holds them; collecting through a
/// `Result` gives no size hint, so a one-element list would otherwise keep
/// room for four (issue 4: the agent's memory per pod).
pub(crate) fn exact<T>(mut vec: Vec<T>) -> Vec<T> {
    vec.shrink_to_fit();
    vec
}

/// Checks a label key: a qualified name with an optional DNS-subdomain
/// prefix (`example.com/name`), as Kubernetes' `IsQualifiedName`.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(invalid("more than one '/'"));
            }
            if prefix.is_empty() {
                return Err(invalid("prefix part must be non-empty"));
            }
            if prefix.len() > MAX_PREFIX_LEN {
                return Err(invalid("prefix part must be at most 253 characters"));
            }
            if !is_dns_subdomain(prefix) {
                return Err(invalid(
                    "prefix part must be a lowercase DNS subdomain (e.g. example.com)",
                ));
            }
            name
        }
    };
    if name.is_empty() {
        return Err(invalid("name part must be non-empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("name part must be at most 63 characters"));
    }
    if !is_name(name) {
        return Err(invalid(
            "name part must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of alphanumerics,
/// `-`, `_`, `.`, starting and ending with an alphanumeric.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if value.len() > MAX_NAME_LEN {
        return Err(invalid("must be at most 63 characters"));
    }
    if !value.is_empty() && !is_name(value) {
        return Err(invalid(
            "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// RFC 1123 subdomain: dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                is_lower_alnum(*first)
                    && is_lower_alnum(*last)
                    && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
            }
            _ => false,
        }
    })
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;

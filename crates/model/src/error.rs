//! Errors of the model crate.

/// A label selector (or label) that Kubernetes itself would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The operator is not one of `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("requirement on key {key:?}: unknown operator {operator:?}")]
    UnknownOperator {
        /// The requirement's key.
        key: String,
        /// The operator as written.
        operator: String,
    },
    /// `In` or `NotIn` without any value.
    #[error("requirement on key {key:?}: operator {operator} needs at least one value")]
    MissingValues {
        /// The requirement's key.
        key: String,
        /// The operator.
        operator: &'static str,
    },
    /// `Exists` or `DoesNotExist` with values.
    #[error("requirement on key {key:?}: operator {operator} takes no values")]
    UnexpectedValues {
        /// The requirement's key.
        key: String,
        /// The operator.
        operator: &'static str,
    },
    /// The key is not a valid qualified name (optional DNS-subdomain prefix).
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The value is not a valid label value.
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// Errors converting Kubernetes objects or parsing manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object has no `metadata.name`.
    #[error("{kind} without metadata.name")]
    MissingName {
        /// The object's kind.
        kind: &'static str,
    },
    /// A field of a named object holds a value weft cannot use.
    #[error("{kind} {object}: field {field}: {reason}")]
    Field {
        /// The object's kind.
        kind: &'static str,
        /// `name` or `namespace/name`.
        object: String,
        /// The field path, e.g. `spec.podCIDRs[1]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label selector or label that Kubernetes would reject.
    #[error("invalid label selector: {0}")]
    Selector(#[from] SelectorError),
    /// The text is not valid YAML.
    #[error("document {index}: invalid YAML: {source}")]
    Yaml {
        /// Zero-based document index in the stream.
        index: usize,
        /// The parser's error.
        source: serde_yaml_ng::Error,
    },
    /// The text is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A document is not a Kubernetes object (no apiVersion/kind, not a map, ...).
    #[error("document {index}: {reason}")]
    Document {
        /// Zero-based document index in the stream.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A document does not decode as the Kubernetes type its kind names.
    #[error("document {index}: {kind} {name}: {source}")]
    Decode {
        /// Zero-based document index in the stream.
        index: usize,
        /// The document's kind.
        kind: String,
        /// The document's `metadata.name`, or `<unnamed>`.
        name: String,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// A document decoded but failed conversion into the model.
    #[error("document {index}: {source}")]
    InDocument {
        /// Zero-based document index in the stream.
        index: usize,
        /// The conversion error.
        source: Box<Error>,
    },
}

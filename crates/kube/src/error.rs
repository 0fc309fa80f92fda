//! Errors of the `kube` source, each naming the operation that failed.

/// What went wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig (or in-cluster configuration) could not be loaded.
    #[error("load the Kubernetes client configuration{}: {source}", path_suffix(.path))]
    Config {
        /// The kubeconfig file, when one was named.
        path: Option<std::path::PathBuf>,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request to the API server failed.
    #[error("{operation}: {source}")]
    Api {
        /// What was being done (`list Pods`, `patch Node n1`, ...).
        operation: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The background runtime could not be started.
    #[error("start the watcher runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A request did not finish in time.
    #[error("{operation}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        operation: String,
        /// The bound that passed.
        after: std::time::Duration,
    },
    /// A snapshot was asked for before every kind had been listed once.
    #[error("waiting for the initial list of {}", kinds.join(", "))]
    NotSynced {
        /// The kinds not listed yet.
        kinds: Vec<&'static str>,
    },
}

fn path_suffix(path: &Option<std::path::PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" from {}", p.display()))
        .unwrap_or_default()
}

impl Error {
    /// An API error with the operation it belongs to.
    pub(crate) fn api(operation: impl Into<String>, source: kube::Error) -> Error {
        Error::Api {
            operation: operation.into(),
            source,
        }
    }
}

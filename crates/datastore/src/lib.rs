//! The file datastore: Kubernetes manifests in a directory, one object per file, with a revision and a watch

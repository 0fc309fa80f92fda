//! Connecting to the API server, and the reference digest of a cluster.

use std::path::Path;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::digest::{ObjectVersion, digest};
use crate::error::Error;

/// Page size of the LISTs behind [`cluster_digest`]: bounded memory per
/// response on large clusters; the continue token keeps every page at the
/// first page's resourceVersion, so the pages form one consistent list.
const LIST_PAGE: u32 = 500;

/// A client from `kubeconfig` when given, else from the standard inference:
/// `$KUBECONFIG`, `~/.kube/config`, then the in-cluster ServiceAccount.
/// Its connections fail within seconds once they go silent (see
/// `transport`), so watches over them resume instead of hanging.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Config {
        path: kubeconfig.map(Path::to_owned),
        source,
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| config_error(e.into()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| config_error(e.into()))?
        }
        None => Config::infer().await.map_err(|e| config_error(e.into()))?,
    };
    crate::transport::client(config).map_err(|e| config_error(e.into()))
}

/// LISTs the six watched kinds cluster-wide with consistent reads (no
/// resourceVersion: served from etcd, not a cache) and digests every
/// object. Equal to an agent's digest exactly when the agent's snapshot
/// holds the same objects at the same resourceVersions.
pub async fn cluster_digest(client: &Client) -> Result<String, Error> {
    let mut versions: Vec<(&'static str, Option<String>, String, String)> = Vec::new();
    list_versions::<core::Node>(client, "Node", &mut versions).await?;
    list_versions::<core::Namespace>(client, "Namespace", &mut versions).await?;
    list_versions::<core::Pod>(client, "Pod", &mut versions).await?;
    list_versions::<networking::NetworkPolicy>(client, "NetworkPolicy", &mut versions).await?;
    list_versions::<core::Service>(client, "Service", &mut versions).await?;
    list_versions::<discovery::EndpointSlice>(client, "EndpointSlice", &mut versions).await?;
    Ok(digest(versions.iter().map(|(kind, ns, name, rv)| {
        ObjectVersion {
            kind,
            namespace: ns.as_deref(),
            name,
            resource_version: rv,
        }
    })))
}

/// Appends (kind, namespace, name, resourceVersion) of every `K` in the
/// cluster; metadata only, so a digest of 5,000 Pods moves no pod specs.
async fn list_versions<K>(
    client: &Client,
    kind: &'static str,
    out: &mut Vec<(&'static str, Option<String>, String, String)>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|e| Error::api(format!("list {kind}s"), e))?;
        for item in &page.items {
            let meta = &item.metadata;
            out.push((
                kind,
                meta.namespace.clone(),
                meta.name.clone().unwrap_or_default(),
                meta.resource_version.clone().unwrap_or_default(),
            ));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

//! `weftd`: the weft node agent. For now it parses its flags; the agent's
//! reconcilers arrive with the agent issue.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// The weft node agent.
#[derive(Parser, Debug)]
#[command(name = "weftd", version)]
struct Args {
    /// This node's name.
    #[arg(long, env = "WEFT_NODE_NAME")]
    node_name: Option<String>,
    /// Where the cluster comes from: `file` (a manifest directory) or `kube`.
    #[arg(long, default_value = "file")]
    source: String,
    /// The manifest directory of the `file` source.
    #[arg(long, default_value = "/var/lib/weft/datastore")]
    datastore: PathBuf,
    /// Where to write the node state the CNI plugin reads.
    #[arg(long, default_value = "/run/weft/node.json")]
    node_state_file: PathBuf,
    /// Between-node backend: vxlan, host-gw or auto.
    #[arg(long, default_value = "vxlan")]
    backend: String,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tracing::info!(
        ?args,
        "weftd parsed its flags; the agent is not implemented yet"
    );
    anyhow::bail!("weftd: the node agent is not implemented yet (see the agent issue)")
}

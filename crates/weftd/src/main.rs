//! `weftd`: the weft node agent. Parses its flags and runs the agent loop
//! (crates/agent) over the chosen source.

mod fastpath;
mod health;
mod run;
mod source;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use weft_agent::{AgentConfig, Backend};

/// The weft node agent.
#[derive(Parser, Debug)]
#[command(name = "weftd", version)]
struct Args {
    /// This node's name.
    #[arg(long, env = "WEFT_NODE_NAME")]
    node_name: String,
    /// Where the cluster comes from.
    #[arg(long, value_enum, default_value = "file")]
    source: Source,
    /// The manifest directory of the `file` source.
    #[arg(long, default_value = "/var/lib/weft/datastore")]
    datastore: PathBuf,
    /// The kubeconfig of the `kube` source (default: $KUBECONFIG,
    /// ~/.kube/config, then the in-cluster ServiceAccount).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where to write the outcome of every pass as JSON (any source).
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Where to write the node state the CNI plugin reads.
    #[arg(long, default_value = weft_cni::plugin::node::DEFAULT_NODE_STATE_FILE)]
    node_state_file: PathBuf,
    /// The plugin's IPAM data directory (for the address sweep).
    #[arg(long, default_value = weft_cni::plugin::node::DEFAULT_DATA_DIR)]
    ipam_dir: PathBuf,
    /// The CNI network name in the conflist (the IPAM store's name).
    #[arg(long, default_value = "weft")]
    network: String,
    /// Between-node backend.
    #[arg(long, value_enum, default_value = "vxlan")]
    backend: BackendArg,
    /// VXLAN network identifier.
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// VXLAN UDP port.
    #[arg(long, default_value_t = weft_agent::DEFAULT_VXLAN_PORT)]
    vxlan_port: u16,
    /// Pod MTU override (default: the underlay's minus the overhead).
    #[arg(long)]
    mtu: Option<u32>,
    /// Destinations never masqueraded (default: every node's pod CIDRs).
    #[arg(long, value_delimiter = ',')]
    cluster_cidrs: Vec<IpNet>,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, default_value = "127.0.0.1:9099")]
    health_addr: SocketAddr,
    /// Seconds between full resyncs when nothing changes.
    #[arg(long, default_value_t = 10)]
    resync_secs: u64,
    /// Seconds a reservation must age before the sweep may release it.
    #[arg(long, default_value_t = 60)]
    sweep_grace_secs: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// The BPF fast path for TCP between pods on different nodes (tc
    /// programs on the pod veths and the uplinks): `on`, or `off` for the
    /// kernel's forwarding path only.
    #[arg(long, value_enum, default_value = "on")]
    fast_path: Toggle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Toggle {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Source {
    File,
    Kube,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Vxlan,
    HostGw,
    Auto,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let mut cfg = AgentConfig::new(&args.node_name);
    cfg.backend = match args.backend {
        BackendArg::Vxlan => Backend::Vxlan,
        BackendArg::HostGw => Backend::HostGw,
        BackendArg::Auto => Backend::Auto,
    };
    cfg.vni = args.vni;
    cfg.vxlan_port = args.vxlan_port;
    cfg.mtu = args.mtu;
    cfg.cluster_cidrs = args.cluster_cidrs.clone();
    cfg.validate()?;

    let resync = Duration::from_secs(args.resync_secs.max(1));
    let health = health::Health::new(resync * 3 + Duration::from_secs(5));
    let bound = health.serve(args.health_addr)?;
    tracing::info!(node = args.node_name, backend = cfg.backend.as_str(), source = ?args.source, health = %bound, "weftd starting");
    // Unreachable API servers are retried inside the kube source; only a
    // file datastore that cannot be opened at all stops weftd.
    let mut source: Box<dyn source::Source> = match args.source {
        Source::File => Box::new(source::FileSource::open(&args.datastore)?),
        Source::Kube => Box::new(source::KubeSource::new(args.kubeconfig.clone())),
    };
    run::run(
        cfg,
        run::LoopConfig {
            node_state_file: args.node_state_file,
            ipam_dir: args.ipam_dir,
            network: args.network,
            resync,
            sweep_grace: Duration::from_secs(args.sweep_grace_secs),
            status_file: args.status_file,
            fast_path: args.fast_path == Toggle::On,
        },
        health,
        source.as_mut(),
    )
}

//! `weftctl`: the operator CLI. Parses arguments and calls library crates.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weftctl",
    version,
    about = "Operate weft: the lab, its datastore, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A multi-node weft cluster in network namespaces on this machine.
    Lab(weft_lab::LabArgs),
    /// Create or replace the objects of a manifest in the lab's cluster (its
    /// file datastore, or server-side apply to its API server).
    Apply(weft_lab::ApplyArgs),
    /// Delete the objects a manifest names from the lab's cluster.
    Delete(weft_lab::ApplyArgs),
    /// Set (`k=v`) or remove (`k-`) labels of a namespace or pod.
    Label(weft_lab::LabelArgs),
    /// NetworkPolicy: why a packet is allowed or denied in the live model.
    Policy(weft_lab::PolicyArgs),
    /// Benchmarks that print JSON figures against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(Bench),
    /// Install the plugin binary and the conflist on this node (the
    /// DaemonSet's init step, deploy/weft.yaml): each file through a
    /// temporary file and a rename, the conflist checked first.
    InstallCni(InstallCni),
}

#[derive(clap::Args)]
struct InstallCni {
    /// The plugin binary to install (as `<bin-dir>/weft`).
    #[arg(long)]
    plugin: PathBuf,
    /// The conflist to install (under its own file name).
    #[arg(long)]
    conflist: PathBuf,
    /// The runtime's CNI binary directory.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// The runtime's CNI configuration directory.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
}

#[derive(Subcommand)]
enum Bench {
    /// CNI ADD/DEL latency: weft versus the reference bridge + host-local plugins.
    Cni {
        /// Pods to attach and detach per plugin.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// The weft plugin binary (default: next to this weftctl).
        #[arg(long)]
        weft: Option<PathBuf>,
        /// Directory of the reference plugins.
        #[arg(long, default_value = "/usr/lib/cni")]
        reference_dir: PathBuf,
        /// Warm-up invocations per plugin, not counted.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Measure the reference plugins only.
        #[arg(long)]
        only_reference: bool,
        /// Parent of the work directory holding both plugins' dataDirs
        /// (default: a tmpfs, as weft's default dataDir /run/weft/ipam is in
        /// production: /run if tmpfs, else /dev/shm; e.g. /var/tmp for a
        /// disk filesystem).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// TCP throughput (iperf3): pod to pod on one node and across nodes with
    /// vxlan and host-gw, against node to node over the underlay.
    Throughput {
        /// Measured seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Parallel TCP streams.
        #[arg(long, default_value_t = 1)]
        parallel: u32,
        /// Runs per case (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also measure every case over IPv6.
        #[arg(long)]
        ipv6: bool,
    },
    /// `lab up` wall-clock to pods serving and agents synced, and `lab down`.
    LabUp {
        /// Nodes per lab.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Namespaces and pods to create.
        #[arg(long, value_enum, default_value_t = weft_lab::model::ModelKind::Netpol)]
        model: weft_lab::model::ModelKind,
        /// Labs to bring up and down.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// weftd's backend.
        #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw", "auto"])]
        backend: String,
    },
    /// NetworkPolicy programming time and agent memory at scale (one node's
    /// share loaded with nft into a weft namespace).
    Policy {
        /// Cluster sizes in pods (as many policies).
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
        sizes: Vec<usize>,
        /// Timed runs per size (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// New TCP connections per second between two lab pods with 1,000
    /// unrelated NetworkPolicies present versus none.
    NetpolConnect {
        /// Connections per measured phase.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Unrelated policies in the loaded phases.
        #[arg(long, default_value_t = 1000)]
        policies: usize,
        /// Rounds of (with policies, without), each judged against the
        /// policy-free phases around it.
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// weftd's backend.
        #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw", "auto"])]
        backend: String,
    },
    /// Services at scale: programming time and memory of 10,000 Services
    /// × 10 endpoints, and connect latency with few versus many Services.
    Services {
        /// Programming sizes in Services.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        sizes: Vec<usize>,
        /// Endpoints per Service (1 to 10).
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// Timed programming runs per size (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Services in the latency's small table.
        #[arg(long, default_value_t = 10)]
        few: usize,
        /// Services in the latency's big table.
        #[arg(long, default_value_t = 10_000)]
        many: usize,
        /// Timed connects per latency phase (0 skips the latency).
        #[arg(long, default_value_t = 2000)]
        connections: usize,
    },
    /// Convergence through a real kube-apiserver (Pod status update or
    /// NetworkPolicy creation to the rule on another node) and weftd's
    /// memory with 5,000 Pods and 1,000 policies stored, against the file
    /// datastore.
    KubeConverge {
        /// Events of each kind per datastore.
        #[arg(long, default_value_t = 100)]
        events: usize,
        /// Pods stored for the memory phase.
        #[arg(long, default_value_t = 5000)]
        pods: usize,
        /// NetworkPolicies stored for the memory phase.
        #[arg(long, default_value_t = 1000)]
        policies: usize,
        /// Node objects the stored pods are spread over.
        #[arg(long, default_value_t = 50)]
        load_nodes: usize,
        /// Writes in flight while loading the API server.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// weftd's backend.
        #[arg(long, default_value = "host-gw", value_parser = ["vxlan", "host-gw", "auto"])]
        backend: String,
        /// The datastores to measure, in order.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "file,kube")]
        datastores: Vec<weft_lab::cluster::Datastore>,
        /// The control plane's binaries (default: $WEFT_KUBE_BIN).
        #[arg(long)]
        kube_bin_dir: Option<PathBuf>,
    },
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name(name))
}

/// Runs one benchmark and returns its JSON report.
fn run_bench(bench: Bench) -> Result<serde_json::Value> {
    match bench {
        Bench::Cni {
            pods,
            weft,
            reference_dir,
            warmup,
            only_reference,
            work_dir,
        } => {
            let mut opts = weft_bench::cni::CniBenchOpts {
                pods,
                weft_bin: match weft {
                    Some(p) => p,
                    None => sibling("weft")?,
                },
                reference_dir,
                warmup,
                only_reference,
                ..Default::default()
            };
            if let Some(dir) = work_dir {
                opts.work_dir = dir;
            }
            weft_bench::cni::run(&opts)
        }
        Bench::Throughput {
            seconds,
            parallel,
            runs,
            ipv6,
        } => {
            let opts = weft_bench::throughput::ThroughputOpts {
                seconds,
                parallel,
                runs,
                ipv6,
                ..Default::default()
            };
            weft_bench::throughput::run(&opts)
        }
        Bench::LabUp {
            nodes,
            model,
            runs,
            backend,
        } => {
            let opts = weft_bench::lab_up::LabUpOpts {
                nodes,
                model,
                runs,
                backend,
                ..Default::default()
            };
            weft_bench::lab_up::run(&opts)
        }
        Bench::Policy { sizes, runs } => {
            let opts = weft_bench::policy::PolicyBenchOpts { sizes, runs };
            weft_bench::policy::run(&opts)
        }
        Bench::NetpolConnect {
            connections,
            policies,
            rounds,
            backend,
        } => {
            let opts = weft_bench::netpol_connect::NetpolConnectOpts {
                connections,
                policies,
                rounds,
                backend,
                ..Default::default()
            };
            weft_bench::netpol_connect::run(&opts)
        }
        Bench::Services {
            sizes,
            endpoints,
            runs,
            few,
            many,
            connections,
        } => {
            let opts = weft_bench::services::ServicesBenchOpts {
                sizes,
                endpoints,
                runs,
                few,
                many,
                connections,
                ..Default::default()
            };
            weft_bench::services::run(&opts)
        }
        Bench::KubeConverge {
            events,
            pods,
            policies,
            load_nodes,
            in_flight,
            backend,
            datastores,
            kube_bin_dir,
        } => {
            let opts = weft_bench::kube_converge::KubeConvergeOpts {
                events,
                pods,
                policies,
                load_nodes,
                in_flight,
                backend,
                datastores,
                kube_bin_dir,
                ..Default::default()
            };
            weft_bench::kube_converge::run(&opts)
        }
    }
}

fn main() -> Result<()> {
    let code = match Cli::parse().command {
        Cmd::Lab(args) => weft_lab::run_lab(args)?,
        Cmd::Apply(args) => weft_lab::run_apply(args)?,
        Cmd::Delete(args) => weft_lab::run_delete(args)?,
        Cmd::Label(args) => weft_lab::run_label(args)?,
        Cmd::Policy(args) => weft_lab::run_policy(args)?,
        Cmd::InstallCni(a) => {
            let done = weft_cni::install::install(&a.plugin, &a.conflist, &a.bin_dir, &a.conf_dir)?;
            println!(
                "installed {} and {}",
                done.plugin.display(),
                done.conflist.display()
            );
            0
        }
        Cmd::Bench(bench) => {
            let report = run_bench(bench)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            0
        }
    };
    // `lab exec` passes its command's exit code on.
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

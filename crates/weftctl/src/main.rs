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
    /// Create or replace the objects of a manifest in the lab's datastore.
    Apply(weft_lab::ApplyArgs),
    /// Delete the objects a manifest names from the lab's datastore.
    Delete(weft_lab::ApplyArgs),
    /// Set (`k=v`) or remove (`k-`) labels of a namespace or pod.
    Label(weft_lab::LabelArgs),
    /// Benchmarks that print JSON figures against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(Bench),
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
    },
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name(name))
}

fn main() -> Result<()> {
    let code = match Cli::parse().command {
        Cmd::Lab(args) => weft_lab::run_lab(args)?,
        Cmd::Apply(args) => weft_lab::run_apply(args)?,
        Cmd::Delete(args) => weft_lab::run_delete(args)?,
        Cmd::Label(args) => weft_lab::run_label(args)?,
        Cmd::Bench(Bench::Cni {
            pods,
            weft,
            reference_dir,
            warmup,
            only_reference,
        }) => {
            let opts = weft_bench::cni::CniBenchOpts {
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
            let report = weft_bench::cni::run(&opts)?;
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

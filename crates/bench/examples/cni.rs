//! Runs the CNI benchmark without weftctl, e.g. before weft's plugin exists:
//!
//! ```text
//! cargo run --release -p weft-bench --example cni -- --only-reference
//! cargo run --release -p weft-bench --example cni -- --weft target/release/weft --pods 200
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use weft_bench::cni::{CniBenchOpts, run};

fn main() -> Result<()> {
    let mut opts = CniBenchOpts::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--pods" => opts.pods = value("--pods")?.parse()?,
            "--warmup" => opts.warmup = value("--warmup")?.parse()?,
            "--weft" => opts.weft_bin = PathBuf::from(value("--weft")?),
            "--reference-dir" => opts.reference_dir = PathBuf::from(value("--reference-dir")?),
            "--work-dir" => opts.work_dir = PathBuf::from(value("--work-dir")?),
            "--only-reference" => opts.only_reference = true,
            other => bail!("unknown argument {other}"),
        }
    }
    let report = run(&opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

//! Measures the proxy table at scale (root; inside a `weft` namespace of
//! its own): compile and render times, `nft -f` time of the full load and
//! of a one-endpoint delta, for N Services × M endpoints. Prints one JSON
//! line.
//!
//! `cargo run --release -p weft-proxy --example load_scale -- 10000 10`

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use weft_proxy::{ProxyNode, compile, render_delta, render_full};
use weft_testkit::{NetNs, privileged};

#[path = "support/synth.rs"]
mod synth;
use synth::cluster;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let endpoints: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    if !privileged("load_scale") {
        bail!("needs root");
    }
    let (svcs, mut slices) = cluster(services, endpoints)?;
    let node = ProxyNode {
        name: "node-a".into(),
        ..Default::default()
    };
    {
        let ns = NetNs::new("pxscale")?;
        let started = Instant::now();
        let old = compile(&svcs, &slices, &node);
        let compile_ms = ms(started);
        let started = Instant::now();
        let text = render_full(&old);
        let render_ms = ms(started);
        let started = Instant::now();
        nft(&ns, &text)?;
        let load_ms = ms(started);

        // One endpoint of the first Service goes away.
        let removed = slices[0].endpoints.pop().context("no endpoint")?;
        let new = compile(&svcs, &slices, &node);
        let delta = render_delta(&old, &new).context("no delta")?;
        let started = Instant::now();
        nft(&ns, &delta)?;
        let delta_ms = ms(started);
        slices[0].endpoints.push(removed);

        let stats = old.stats();
        println!(
            "{}",
            json!({
                "services": services, "endpoints_per_service": endpoints,
                "chains": stats.chains, "rules": stats.rules, "elements": stats.elements,
                "compile_ms": compile_ms, "render_ms": render_ms,
                "full_load_ms": load_ms, "one_endpoint_delta_ms": delta_ms,
                "delta_lines": delta.lines().count(),
            })
        );
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn nft(ns: &NetNs, script: &str) -> Result<()> {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft -f: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

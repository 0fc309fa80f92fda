//! Times the incremental compiler at scale (no root, nothing loaded): a
//! first pass over N Services × M endpoints, then one endpoint removed and
//! added back `R` times, each pass's update, hash and change batch timed.
//! Prints one JSON line with the medians.
//!
//! `cargo run --release -p weft-proxy --example incremental_scale -- 10000 10 20`

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use weft_proxy::{Compiler, ProxyNode, change_batch};

#[path = "support/synth.rs"]
mod synth;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let endpoints: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let repeat: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let (svcs, mut slices) = synth::cluster(services, endpoints)?;
    let node = ProxyNode {
        name: "node-a".into(),
        ..Default::default()
    };
    let mut compiler = Compiler::new();
    let started = Instant::now();
    compiler.update(&svcs, &slices, &node);
    let first_ms = ms(started);
    let (mut update, mut hash, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    let middle = slices.len() / 2;
    let mut held = None;
    for _ in 0..repeat * 2 {
        match held.take() {
            None => held = Some(slices[middle].endpoints.pop().context("no endpoint")?),
            Some(endpoint) => slices[middle].endpoints.push(endpoint),
        }
        let started = Instant::now();
        let u = compiler.update(&svcs, &slices, &node);
        update.push(ms(started));
        let started = Instant::now();
        let _ = compiler.hash();
        hash.push(ms(started));
        let started = Instant::now();
        let _ = change_batch(&u.change, compiler.ruleset());
        batch.push(ms(started));
    }
    println!(
        "{}",
        json!({
            "services": services, "endpoints_per_service": endpoints,
            "first_pass_ms": first_ms,
            "update_ms_median": median(&mut update), "hash_ms_median": median(&mut hash),
            "change_batch_ms_median": median(&mut batch),
        })
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

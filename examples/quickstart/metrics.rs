//! Prometheus metrics for the quickstart, on a port of their own.
//!
//! With `METRICS_PORT` set (`0` picks a free port), the crate's metrics (feature `metrics`:
//! `cargo run --example quickstart --features metrics`) are served in Prometheus text at
//! `http://127.0.0.1:$METRICS_PORT/metrics`: loopback only, and never on the public port, so a
//! scraper is the only client that can read them.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

/// Upstream latency buckets (seconds): Scalekit answers in tens of milliseconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the Prometheus recorder and serves it when `METRICS_PORT` is set; does nothing
/// otherwise. Call it before anything records a metric.
pub async fn serve_from_env() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(port) = std::env::var("METRICS_PORT") else {
        return Ok(());
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("METRICS_PORT must be a port number, got {port:?}"))?;
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .install_recorder()?;
    axum_api_key::telemetry::describe();
    if !cfg!(feature = "metrics") {
        eprintln!(
            "METRICS_PORT is set but the crate was built without feature `metrics`: run with `--features metrics` to see its series"
        );
    }
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    // Without the exporter's own HTTP listener, histograms are drained by hand.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route("/metrics", get(move || async move { handle.render() }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

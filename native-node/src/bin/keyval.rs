//! `keyval`: one KeyVal server node. See SPEC.md for the flags and the contract.

use std::process::ExitCode;

use clap::Parser;
use native_node::config::{Args, NodeConfig};
use native_node::{startup, telemetry};
use tokio::sync::watch;

/// See `mimalloc` in Cargo.toml: cheaper per-request allocations than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap prints its own message and exits with status 2 on bad flags.
    let args = Args::parse();
    let cfg = match NodeConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyval: error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime: the OTLP exporter's HTTP client is a blocking one.
    let telemetry = match telemetry::init(cfg.log_format, cfg.otlp_endpoint.as_deref(), cfg.id) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("keyval: error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("keyval")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keyval: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let (shutdown_tx, _) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            startup::signal().await;
            // A leader hands leadership over first, for at most two election timeouts; the
            // node loop ending then stops everything else.
            tracing::info!("signal received: shutting down");
            let _ = stop_tx.send(true);
            // Keep the sender: a dropped one would read as a stop to the loop.
            std::future::pending::<()>().await;
        });
        startup::run(cfg, shutdown_tx, stop_rx).await
    });
    // Peer tasks may still be dialing; they hold nothing that needs flushing.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, not also a log record: the contract is a single clear line on failure.
            eprintln!("keyval: error: {e}");
            ExitCode::from(1)
        }
    }
}

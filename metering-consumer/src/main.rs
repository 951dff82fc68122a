//! `tollgate-metering`: flags → settings → the consumer loop, until SIGTERM / ctrl-c. `tollgate-metering
//! healthcheck` asks a running consumer's `/readyz` instead (exit 0 ready, 1 not).

use std::time::Duration;

use clap::Parser;
use tollgate_metering::settings::{Command, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    if let Some(Command::Healthcheck { timeout_ms }) = settings.command {
        return healthcheck(&settings, Duration::from_millis(timeout_ms));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match tollgate_metering::consumer::run(settings, shutdown()).await {
        Ok(()) => {
            tracing::info!("stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "metering consumer failed");
            std::process::ExitCode::from(2)
        }
    }
}

fn healthcheck(settings: &Settings, timeout: Duration) -> std::process::ExitCode {
    match tollgate_metering::http::probe(settings.http_addr, timeout) {
        Ok((200, body)) => {
            println!("ready: {body}");
            std::process::ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!("not ready ({status}): {body}");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            println!("cannot reach {}: {e}", settings.http_addr);
            std::process::ExitCode::from(1)
        }
    }
}
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: storing the current batch");
}

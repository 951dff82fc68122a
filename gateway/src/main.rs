//! `tollgate`: flags → config → serve. Subcommands: `serve` (default), `keys new`, `check`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_gateway::auth::generate_key;
use tollgate_gateway::config::{Config, ProcessEnv};
use tollgate_gateway::{telemetry, Gateway};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An OpenAI-compatible AI gateway with exact metering"
)]
struct Cli {
    /// Config file (TOML).
    #[arg(
        short,
        long,
        global = true,
        env = "TOLLGATE_CONFIG",
        default_value = "tollgate.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway (the default).
    Serve,
    /// Validate the config file and list every problem.
    Check,
    /// Manage virtual keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh virtual key and the SHA-256 to put in the config.
    New,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Keys {
            command: KeysCommand::New,
        } => {
            let (key, hash) = generate_key();
            println!("key:    {key}");
            println!("sha256: {}", hash.to_hex());
            println!(
                "\nGive the key to the client; put only the hash in the config:\n  sha256 = \"{}\"",
                hash.to_hex()
            );
            Ok(())
        }
        Command::Check => {
            let config = Config::load(&cli.config, &ProcessEnv)?;
            println!(
                "{}: ok ({} providers, {} models, {} keys)",
                cli.config.display(),
                config.providers.len(),
                config.models.len(),
                config.keys.len()
            );
            Ok(())
        }
        Command::Serve => serve(&cli.config),
    }
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path, &ProcessEnv)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Inside the runtime: the span exporter sends through it.
        let telemetry = telemetry::init(config.telemetry.as_ref())?;
        let served = run_gateway(&config).await;
        // Export the last spans (bounded by the exporter's timeout) before the runtime goes.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        served
    })
}

async fn run_gateway(config: &Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let gateway = Gateway::try_new(config)?;
    tracing::info!(
        listen = %config.server.listen,
        store = %config.store.path.display(),
        models = config.models.len(),
        "tollgate serving"
    );
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("tollgate stopped; usage flushed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

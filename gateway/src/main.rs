//! `tollgate`: flags → config → serve. Subcommands: `serve` (default), `keys new`, `check`, `usage`, `reprice`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_gateway::auth::generate_key;
use tollgate_gateway::config::{Config, ProcessEnv, Secret};
use tollgate_gateway::report::client::{self, Output, UsageRequest};
use tollgate_gateway::reprice::{self, clickhouse::ClickHouseTarget, Pricer, Selection};
use tollgate_gateway::{telemetry, Gateway};
use tollgate_schemas::price::PriceTable;

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
    /// Print a usage report from a running gateway (`GET /admin/usage`).
    Usage(Box<UsageArgs>),
    /// Recompute the cost of stored events under corrected prices and record the differences as
    /// correction rows (no stored event is edited).
    Reprice(RepriceArgs),
}

#[derive(clap::Args)]
struct UsageArgs {
    /// The gateway's base URL.
    #[arg(long, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Environment variable holding the admin key.
    #[arg(long, default_value = "TOLLGATE_ADMIN_KEY")]
    admin_key_env: String,
    /// Start: RFC 3339, YYYY-MM-DD or epoch milliseconds (default: 24 h before `to`).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Dimensions, comma-separated: tenant, team, key, end_user, model, provider, deployment, tag:<name>.
    #[arg(long)]
    by: Option<String>,
    /// Time bucket: minute, hour or day.
    #[arg(long)]
    bucket: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    end_user: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    deployment: Option<String>,
    /// A tag filter `name=value` (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// table, json or csv.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    format: String,
}

#[derive(clap::Args)]
struct RepriceArgs {
    /// Events started at or after this instant: RFC 3339 (2026-11-01T00:00:00Z) or Unix epoch milliseconds.
    #[arg(long, value_parser = reprice::parse_instant)]
    from: i64,
    /// Events started before this instant (same formats).
    #[arg(long, value_parser = reprice::parse_instant)]
    to: i64,
    /// A corrected price table in the shipped format (schemas/prices/seed.toml); its entries take precedence
    /// over the config's prices.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Only events of this public model name or upstream model id.
    #[arg(long)]
    model: Option<String>,
    /// Report what would be corrected; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// ClickHouse HTTP URL (as for tollgate-metering). Without it, the embedded store ([store] path).
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse database holding usage_events and cost_corrections.
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_DATABASE", default_value = "tollgate")]
    clickhouse_database: String,
    /// ClickHouse user.
    #[arg(long, env = "TOLLGATE_CLICKHOUSE_USER", default_value = "default")]
    clickhouse_user: String,
    /// ClickHouse password.
    #[arg(
        long,
        env = "TOLLGATE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    clickhouse_password: String,
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
        Command::Usage(args) => usage(*args),
        Command::Reprice(args) => reprice_command(&cli.config, args),
    }
}

fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let admin_key = std::env::var(&args.admin_key_env)
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| format!("set the admin key in {}", args.admin_key_env))?;
    let mut params: Vec<(String, String)> = [
        ("from", args.from),
        ("to", args.to),
        ("group_by", args.by),
        ("bucket", args.bucket),
        ("tenant", args.tenant),
        ("team", args.team),
        ("key", args.key),
        ("end_user", args.end_user),
        ("model", args.model),
        ("provider", args.provider),
        ("deployment", args.deployment),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
    .collect();
    params.extend(args.tag.into_iter().map(|t| ("tag".to_string(), t)));
    let request = UsageRequest {
        base_url: args.url,
        admin_key: Secret::new(admin_key),
        params,
        output: match args.format.as_str() {
            "json" => Output::Json,
            "csv" => Output::Csv,
            _ => Output::Table,
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(client::fetch(&request))?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn reprice_command(path: &std::path::Path, args: RepriceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from < args.to,
        "--from must be before --to (the range is [from, to))"
    );
    let config = Config::load(path, &ProcessEnv)?;
    let corrected = match &args.prices {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            Some(PriceTable::parse(&text).with_context(|| file.display().to_string())?)
        }
        None => None,
    };
    let pricer = Pricer::new(&config, corrected);
    let clickhouse = args.clickhouse_url.map(|url| ClickHouseTarget {
        url,
        database: args.clickhouse_database,
        user: args.clickhouse_user,
        password: args.clickhouse_password,
    });
    let selection = Selection {
        from_ms: args.from,
        to_ms: args.to,
        tenant: args.tenant,
        model: args.model,
    };
    anyhow::ensure!(
        clickhouse.is_some() || config.store.path.is_file(),
        "no usage store at {} (the config's [store] path); for ClickHouse pass --clickhouse-url",
        config.store.path.display()
    );
    let mut store = reprice::Store::open(&config, clickhouse.as_ref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(reprice::run(
        &mut store,
        &pricer,
        &selection,
        args.dry_run,
        reprice::PAGE_SIZE,
    ))?;
    print!("{summary}");
    Ok(())
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

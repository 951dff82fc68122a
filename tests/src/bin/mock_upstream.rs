//! `tollgate-mock-upstream --listen 127.0.0.1:9100`: the mock upstream as a process (Python SDK tests,
//! benchmarks, keyless demos). Prints `listening on <addr>` once ready.

use clap::Parser;
use tollgate_tests::mock_upstream::MockUpstream;

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let mock = MockUpstream::start_on(listener).await?;
    println!("listening on {}", mock.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

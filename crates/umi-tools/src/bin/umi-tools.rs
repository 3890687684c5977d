//! `umi-tools serve`: the demo tool server alone, without the models (`umi tools serve` in
//! the full CLI is the same command). `scripts/web.sh` builds this one: about a minute from
//! cold instead of half an hour for the whole CLI.

use clap::{Parser, Subcommand};
use umi_tools::server::ServeArgs;

/// The demo tools of umi over HTTP.
#[derive(Parser)]
#[command(name = "umi-tools", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo tools over HTTP (docs at /tools, OpenAPI at /openapi.json).
    Serve(ServeArgs),
}

fn main() {
    let Command::Serve(args) = Cli::parse().command;
    if let Err(e) = args.run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

//! The `tidings` command: argument parsing, logging set-up and exit codes. Everything else
//! lives in the library crates (`tidings serve` is `tidings_server::App`).

mod token;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tidings_server::App;
use tidings_server::config::{self, ServeArgs};

/// Exit code for invalid configuration (EX_USAGE), used before any port is bound.
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "tidings",
    version,
    about = "A real-time event hub: publish JSON events, subscribe over SSE."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Print a signed JWT carrying a grant.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    // clap parses the flags only: the environment is its own layer, read in `serve`.
    let matches = match Cli::command()
        .mut_subcommand("serve", config::without_env)
        .try_get_matches()
    {
        Ok(matches) => matches,
        // A flag's value that does not parse is invalid configuration, like any other.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            ) =>
        {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default();
            let reason = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("tidings: invalid configuration: {reason}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => token::run(args),
    }
}

fn serve(flags: ServeArgs) -> ExitCode {
    let config = match config::load(flags, std::env::vars_os()).and_then(|raw| raw.validate()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tidings: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    // Each connection is a file descriptor: take every one the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(message = "File descriptor limit raised.", limit = n),
        Err(e) => {
            tracing::warn!(message = "Could not raise the file descriptor limit.", error = %e)
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidings: failed to start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings: failed to {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: tidings_server::Config) -> anyhow::Result<()> {
    let app = App::build(config)?;
    let listeners = app.bind().await?;
    app.run(listeners, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
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
}

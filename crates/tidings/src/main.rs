//! The `tidings` command: argument parsing, logging set-up and exit codes. Everything else
//! lives in the library crates (`tidings serve` is `tidings_server::App`).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tidings_server::{App, RawConfig};

/// Exit code for invalid configuration (EX_USAGE), used before any port is bound.
const EXIT_CONFIG: u8 = 64;
/// `tidings store verify`: the store is damaged.
const EXIT_DAMAGED: u8 = 1;
/// `tidings store verify`: the store could not be checked at all (in use, missing, foreign).
const EXIT_UNVERIFIED: u8 = 2;

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
// Parsed once at start-up: the size of `Serve`'s settings costs nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the hub.
    Serve {
        /// A TOML config file; flags and TIDINGS_* variables override it.
        #[arg(long, env = "TIDINGS_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: RawConfig,
    },
    /// Work on the event store of a stopped server.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Read every stored event and report the seq ranges that cannot be read. Exits 0 when
    /// the store is intact, 1 when it is damaged, 2 when it cannot be checked (in use by a
    /// running server, missing, not a store).
    Verify {
        /// The data directory (`--data-dir`), or the `events.redb` file in it.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, settings } => serve(config, settings),
        Command::Store {
            command: StoreCommand::Verify { dir },
        } => verify(&dir),
    }
}

fn verify(dir: &std::path::Path) -> ExitCode {
    use std::io::Write as _;
    // A damaged page can make the database engine panic; the check catches each one and
    // counts it as damage, so the default hook's message per panic would only bury the report.
    std::panic::set_hook(Box::new(|_| {}));
    match tidings_store_redb::verify::verify(dir) {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            if write!(out, "{report}").and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DAMAGED)
            }
        }
        Err(e) => {
            eprintln!("tidings: cannot verify the store in {}: {e}", dir.display());
            ExitCode::from(EXIT_UNVERIFIED)
        }
    }
}

fn serve(file: Option<PathBuf>, flags: RawConfig) -> ExitCode {
    let raw = match file {
        None => Ok(flags),
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| format!("config file {}: {e}", path.display()))
            .and_then(|text| {
                RawConfig::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
            })
            .map(|from_file| flags.merge_under(from_file)),
    };
    let config = match raw.and_then(|raw| raw.validate().map_err(|e| e.to_string())) {
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

//! The `tidings` command: argument parsing, logging set-up and exit codes. Everything else
//! lives in the library crates (`tidings serve` is `tidings_server::App`).

mod logline;
mod logtime;
mod schema;
mod token;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use tidings_server::App;
use tidings_server::config::{self, ServeArgs};

mod cmd;

/// mimalloc instead of glibc's malloc: a publish makes about 56 small allocations (hyper's
/// request and response, axum's boxed futures, the event), and glibc's `malloc` and `free`
/// were 22% of a memory-mode publish's instructions under callgrind
/// (docs/performance-log.md, issue 16).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(ServeArgs),
    /// Validate a config file offline (no port bound, no store opened) and print the
    /// settings `serve --config FILE` would run with (its TIDINGS_* environment included),
    /// secrets redacted. Exits 0 when valid, 64 when not.
    CheckConfig {
        /// The TOML config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a signed JWT carrying a grant.
    Token(token::TokenArgs),
    /// Publish one event, or a stream of events with --ndjson.
    Publish(cmd::publish::Args),
    /// Tail events live; reconnects and resumes on its own.
    Subscribe(cmd::subscribe::Args),
    /// Work on an event catalogue of JSON Schemas, offline: check a payload, print
    /// TypeScript types.
    Schema(schema::SchemaArgs),
    /// Watch a directory tree and publish its file changes (create, modify, rename, delete).
    Watch(cmd::watch::Args),
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
        Command::CheckConfig { file } => check_config(&file),
        Command::Token(args) => token::run(args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Subscribe(args) => cmd::subscribe::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::Store {
            command: StoreCommand::Verify { dir },
        } => verify(&dir),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    use std::io::Write as _;
    match config::check(file, std::env::vars_os()) {
        Ok(effective) => {
            let mut out = std::io::stdout().lock();
            let header = format!(
                "# {} is valid. The settings `tidings serve --config` runs with (defaults \
                 filled in, TIDINGS_* variables applied, secrets {}):\n",
                file.display(),
                config::REDACTED
            );
            if out
                .write_all(header.as_bytes())
                .and_then(|()| out.write_all(effective.as_bytes()))
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tidings: invalid configuration: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
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

fn serve(flags: ServeArgs) -> ExitCode {
    let config = match config::load(flags, std::env::vars_os()).and_then(|raw| raw.validate()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tidings: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config);
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

/// Log lines go to stderr: text for people (`pretty`, coloured on a terminal) or one JSON
/// object per line (`json`: `timestamp`, `level`, `target`, and the event's fields flattened
/// beside `message`).
fn init_logging(config: &tidings_server::Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(logtime::CachedUtc)
        .with_writer(std::io::stderr);
    match config.log_format {
        // The connection lines are written by `logline` (the same text, a tenth of the cost).
        config::LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(logline::Lines::new())
            .init(),
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

async fn run(config: tidings_server::Config) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives once the hub says it is listening must start a
    // drain, not kill the process.
    let shutdown = shutdown_signal();
    let app = App::open(config).await?;
    let listeners = app.bind().await?;
    app.run(listeners, shutdown).await
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let (int, term) = signals;
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

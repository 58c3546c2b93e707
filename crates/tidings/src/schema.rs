//! `tidings schema`: offline work on an event catalogue of JSON Schemas (one `<type>.json`
//! per event type): `check` validates a payload as the hub would on publish, `ts` prints
//! TypeScript types for the TypeScript client.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use tidings_proto::Topic;
use tidings_server::config::catalogue_of_file;
use tidings_server::schema::{Catalogue, Schema, load_dir, ts};

/// `tidings schema check`: the data does not match.
const EXIT_MISMATCH: u8 = 1;
/// `tidings schema check`: nothing could be checked (see `CHECK_EXIT_CODES`).
const EXIT_UNCHECKED: u8 = 2;

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  the data matches the type's schema
  1  it does not (every failing rule is printed: JSON path, rule, schema location), or it is
     not JSON
  2  nothing was checked: the command line is wrong, a file cannot be read, a schema file is
     invalid, no schema names TYPE, or several do and --topic does not pick one";

/// Work on an event catalogue of JSON Schemas, offline.
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SchemaCommand {
    /// Check an event's data (a JSON file, `-` for stdin) against the schema of its type, as
    /// the hub does on publish.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Print TypeScript types for a directory of schemas: the data of each event type, a map
    /// from event name to it, the union of the events, and a typed Subscription view.
    Ts(TsArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The event's data, as JSON (`-`: read stdin).
    #[arg(value_name = "FILE.json")]
    file: PathBuf,
    /// The event type.
    #[arg(value_name = "TYPE")]
    event_type: String,
    /// A config file: its `[[schemas]]` and `schema_dirs`.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dir",
        conflicts_with = "dir"
    )]
    config: Option<PathBuf>,
    /// A directory of `<type>.json` schemas.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The topic the event is published to, which picks the `[[schemas]]` entry that applies
    /// (needed when several name TYPE).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
}

#[derive(Debug, clap::Args)]
struct TsArgs {
    /// A directory of `<type>.json` schemas, e.g. profiles/schemas/downloads.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The prefix of the generated names [default: the directory's name in PascalCase].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The module the client's types are imported from.
    #[arg(long, value_name = "MODULE", default_value = "tidings-client")]
    import_from: String,
}

pub(crate) fn run(args: SchemaArgs) -> ExitCode {
    match args.command {
        SchemaCommand::Check(args) => check(&args),
        SchemaCommand::Ts(args) => typescript(&args),
    }
}

fn unchecked(message: &str) -> ExitCode {
    eprintln!("tidings: {message}");
    ExitCode::from(EXIT_UNCHECKED)
}

fn check(args: &CheckArgs) -> ExitCode {
    let catalogue = match (&args.config, &args.dir) {
        (Some(config), _) => match catalogue_of_file(config) {
            Ok(c) => c,
            Err(e) => return unchecked(&e.to_string()),
        },
        (None, Some(dir)) => {
            match Catalogue::load(&[(vec![tidings_proto::Pattern::All], dir.clone())]) {
                Ok(c) => c,
                Err((_, e)) => return unchecked(&e.to_string()),
            }
        }
        (None, None) => return unchecked("give --config FILE or --dir DIR"),
    };
    let ty = &args.event_type;
    // Every schema that applies must pass, as on publish.
    let applicable: Vec<&Schema> = match &args.topic {
        Some(topic) => {
            let topic = match Topic::new(topic) {
                Ok(t) => t,
                Err(e) => return unchecked(&format!("--topic: {e}")),
            };
            let found: Vec<&Schema> = catalogue.schemas_for(&topic, ty).collect();
            if found.is_empty() {
                return unchecked(&format!("no schema for `{ty}` on topic `{topic}`"));
            }
            found
        }
        None => {
            let found = catalogue.candidates(ty);
            match found.as_slice() {
                [] => return unchecked(&format!("no schema for `{ty}`")),
                [(_, one)] => vec![*one],
                several => {
                    let topics: Vec<&str> = several.iter().map(|(p, _)| p.as_str()).collect();
                    return unchecked(&format!(
                        "`{ty}` has schemas for several selectors ({}): pick one with --topic",
                        topics.join(", ")
                    ));
                }
            }
        }
    };
    let text = match read_input(&args.file) {
        Ok(t) => t,
        Err(e) => return unchecked(&format!("cannot read {}: {e}", args.file.display())),
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tidings: {} is not JSON: {e}", args.file.display());
            return ExitCode::from(EXIT_MISMATCH);
        }
    };
    let mut failed = false;
    for schema in applicable {
        let mismatches = schema.mismatches(&value);
        if mismatches.is_empty() {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "ok: {} matches the `{ty}` schema ({})",
                args.file.display(),
                schema.file.display()
            )
            .ok();
            continue;
        }
        failed = true;
        eprintln!(
            "tidings: {} does not match the `{ty}` schema ({}):",
            args.file.display(),
            schema.file.display()
        );
        for m in mismatches {
            eprintln!("  {m}");
        }
    }
    if failed {
        ExitCode::from(EXIT_MISMATCH)
    } else {
        ExitCode::SUCCESS
    }
}

fn read_input(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)?;
    }
    Ok(text)
}

fn typescript(args: &TsArgs) -> ExitCode {
    let schemas = match load_dir(&args.dir) {
        Ok(s) => s,
        Err(e) => return unchecked(&e.to_string()),
    };
    let name = match &args.name {
        Some(n) => ts::pascal(n),
        None => {
            let dir = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ts::pascal(&base)
        }
    };
    let module = ts::module(&name, &args.import_from, &schemas);
    let mut out = std::io::stdout().lock();
    if out
        .write_all(module.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

//! The one place configuration sources are read and layered: the TOML file, then the
//! `TIDINGS_*` environment, then flags. Each source is parsed into a whole `RawConfig` and the
//! three are merged through serde, so a new setting is layered without being listed here.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Command, FromArgMatches as _};
use serde_json::Value;

use super::{ConfigError, RawConfig, bad};

/// The arguments of `tidings serve`: the config file and every setting as a flag.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML config file; flags and TIDINGS_* variables override it.
    #[arg(long, env = "TIDINGS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: RawConfig,
}

impl ServeArgs {
    /// The `serve` command's arguments, with their env names, as clap defines them.
    pub fn command() -> Command {
        ServeArgs::augment_args(Command::new("serve"))
    }
}

/// Takes the environment lookups out of clap's hands, writing each variable's name into the
/// help line instead (so `--help` still lists it, without its value, which may be a secret).
/// Parse the `serve` flags with a command passed through this: the environment is read by
/// `load` alone, as its own layer.
pub fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            return arg;
        };
        let note = format!("[env: {env}]");
        let help = arg
            .get_help()
            .map_or_else(|| note.clone(), |h| format!("{h} {note}"));
        let long_help = arg.get_long_help().map(|h| format!("{h}\n\n{note}"));
        let arg = arg.env(None).help(help);
        match long_help {
            Some(long) => arg.long_help(long),
            None => arg,
        }
    })
}

/// Builds the raw configuration: the file named by `--config` or `TIDINGS_CONFIG`, under the
/// `TIDINGS_*` variables in `env`, under `flags` (parsed with a `without_env` command).
pub fn load(
    flags: ServeArgs,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<RawConfig, ConfigError> {
    let env = from_env(env)?;
    let file = match flags.config.as_ref().or(env.config.as_ref()) {
        None => RawConfig::default(),
        Some(path) => {
            let setting = format!("config file {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| bad(&setting, e.to_string()))?;
            let mut raw = RawConfig::from_toml(&text).map_err(|e| bad(&setting, e.reason))?;
            // Paths in the file are relative to the file's own directory.
            let base = path.parent().unwrap_or(Path::new(""));
            super::schemas::resolve(&mut raw.schemas, &mut raw.schema_dirs, base);
            raw
        }
    };
    layered([file, env.settings, flags.settings])
}

/// The environment layer: each variable named by a setting's `env` becomes that setting's
/// flag, parsed by clap exactly as the flag would be. Empty variables count as unset.
fn from_env(env: impl IntoIterator<Item = (OsString, OsString)>) -> Result<ServeArgs, ConfigError> {
    let env: HashMap<OsString, OsString> = env.into_iter().collect();
    let cmd = ServeArgs::command();
    let bare = without_env(cmd.clone()).no_binary_name(true);
    let mut argv = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let Some(value) = env.get(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let Some(long) = arg.get_long() else {
            return Err(bad(&name, "has no flag to parse it with"));
        };
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(value);
        // Parsed alone first, so an error names the variable.
        bare.clone()
            .try_get_matches_from([&flag])
            .map_err(|e| bad(&name, clap_reason(&e)))?;
        argv.push(flag);
    }
    let matches = bare
        .try_get_matches_from(argv)
        .map_err(|e| bad("environment", clap_reason(&e)))?;
    ServeArgs::from_arg_matches(&matches).map_err(|e| bad("environment", clap_reason(&e)))
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// Merges layers, each over the ones before it: tables merge key by key, and a value a later
/// layer sets replaces the earlier one. Unset values (`None`, empty lists) leave it alone.
pub fn layered(layers: impl IntoIterator<Item = RawConfig>) -> Result<RawConfig, ConfigError> {
    let mut merged = Value::Object(serde_json::Map::new());
    for layer in layers {
        let value = serde_json::to_value(layer).map_err(|e| bad("configuration", e.to_string()))?;
        overlay(&mut merged, value);
    }
    serde_json::from_value(merged).map_err(|e| bad("configuration", e.to_string()))
}

fn overlay(lower: &mut Value, upper: Value) {
    match (lower, upper) {
        (Value::Object(lower), Value::Object(upper)) => {
            for (key, value) in upper {
                match lower.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None if !value.is_null() => {
                        lower.insert(key, value);
                    }
                    None => {}
                }
            }
        }
        (_, Value::Null) => {}
        (_, Value::Array(a)) if a.is_empty() => {}
        (slot, value) => *slot = value,
    }
}

#[cfg(test)]
mod tests;

//! Typed events: `[[schemas]]` (a directory of `<type>.json` JSON Schemas for the topics of a
//! selector, file only) and `schema_dirs` (directories for every topic: `--schema-dir`,
//! `TIDINGS_SCHEMA_DIRS`), compiled into the publish path's `Catalogue`. Relative directories
//! in the file are relative to the file's own directory (resolved by `layers::load`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use tidings_proto::Pattern;

use super::{ConfigError, bad, patterns};
use crate::schema::Catalogue;

/// `[[schemas]]`: one directory of schemas and the topics it applies to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemas {
    /// The selector: one pattern (`"downloads/*"`) or a list of them.
    #[serde(deserialize_with = "one_or_many")]
    pub topics: Vec<String>,
    /// The directory of `<type>.json` files, relative to the config file's directory.
    pub dir: PathBuf,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Makes the file's relative schema directories relative to `base` (the file's directory).
pub(super) fn resolve(schemas: &mut [RawSchemas], schema_dirs: &mut [PathBuf], base: &Path) {
    let rebase = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    schemas.iter_mut().for_each(|s| rebase(&mut s.dir));
    schema_dirs.iter_mut().for_each(rebase);
}

/// Reads and compiles every schema; an error names the setting and the file.
pub(super) fn catalogue(
    schemas: &[RawSchemas],
    schema_dirs: &[PathBuf],
) -> Result<Catalogue, ConfigError> {
    let mut entries: Vec<(Vec<Pattern>, PathBuf)> = Vec::new();
    let mut settings = Vec::new();
    for (i, dir) in schema_dirs.iter().enumerate() {
        entries.push((vec![Pattern::All], dir.clone()));
        settings.push(format!("schema_dirs[{i}]"));
    }
    for (i, s) in schemas.iter().enumerate() {
        let setting = format!("schemas[{i}]");
        if s.topics.is_empty() {
            return Err(bad(
                &format!("{setting}.topics"),
                "must name at least one pattern",
            ));
        }
        entries.push((
            patterns(&format!("{setting}.topics"), &s.topics)?,
            s.dir.clone(),
        ));
        settings.push(format!("{setting}.dir"));
    }
    Catalogue::load(&entries).map_err(|(i, e)| bad(&settings[i], e.to_string()))
}

/// The schemas a config file names (`[[schemas]]` and `schema_dirs`), read offline: for
/// `tidings schema check --config`. Nothing else of the file is validated.
pub fn catalogue_of_file(path: &Path) -> Result<Catalogue, ConfigError> {
    let setting = format!("config file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| bad(&setting, e.to_string()))?;
    let mut raw = super::RawConfig::from_toml(&text).map_err(|e| bad(&setting, e.reason))?;
    resolve(
        &mut raw.schemas,
        &mut raw.schema_dirs,
        path.parent().unwrap_or(Path::new("")),
    );
    catalogue(&raw.schemas, &raw.schema_dirs)
}

//! Typed events: a catalogue of JSON Schemas, one per event type, each directory of
//! `<type>.json` files scoped to a topic selector. Compiled once at start (a bad file fails
//! start-up, named), then checked on every publish before anything is stored: a payload that
//! does not match is refused with `schema_mismatch`, naming the failing JSON path and rule.
//! With no schema configured the check is one `is_empty` test.
//!
//! `ts` turns a directory's schemas into TypeScript types for the TypeScript client.

pub mod ts;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use tidings_proto::{EventType, Pattern, Topic};

/// Largest schema file read: a schema is a document written by people, not data.
const MAX_SCHEMA_BYTES: u64 = 1 << 20;
/// Longest rule message quoted in a refusal.
const MAX_MESSAGE_CHARS: usize = 300;

/// Every configured schema: cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Catalogue {
    sets: Arc<[SchemaSet]>,
}

/// The schemas of one directory and the topics they apply to.
#[derive(Debug)]
struct SchemaSet {
    patterns: Vec<Pattern>,
    dir: PathBuf,
    /// By event type; sorted, so listings and generated code are stable.
    schemas: BTreeMap<String, Schema>,
}

/// One compiled schema.
#[derive(Debug)]
pub struct Schema {
    /// The event type it describes (the file's name without `.json`).
    pub event_type: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The schema document.
    pub document: Value,
    validator: jsonschema::Validator,
}

/// A schema file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct SchemaError {
    /// The file (or directory) at fault.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// Why a payload was refused: the first failing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The event type whose schema failed.
    pub event_type: String,
    /// Where in the payload, as a JSON Pointer (`""` is the whole payload).
    pub instance_path: String,
    /// The rule (JSON Schema keyword) that failed, e.g. `required`, `type`.
    pub keyword: String,
    /// Where the rule is in the schema, as a JSON Pointer.
    pub schema_path: String,
    /// The validator's own words, without the payload's values.
    pub message: String,
    /// How many more rules failed.
    pub more: usize,
}

impl Mismatch {
    /// What failed, without the path: `value is not of type "integer" (rule `type` at
    /// #/properties/Downloaded/type of the `progress` schema)`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} (rule `{}` at #{} of the `{}` schema)",
            self.message, self.keyword, self.schema_path, self.event_type
        );
        if self.more > 0 {
            text.push_str(&format!("; {} more rule(s) failed", self.more));
        }
        text
    }
}

impl fmt::Display for Mismatch {
    /// The instance path (`/` for the whole payload), then `describe`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(f, "{path}: {}", self.describe())
    }
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.sets.iter().map(|s| {
                (
                    s.patterns
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    &s.dir,
                    s.schemas.keys().collect::<Vec<_>>(),
                )
            }))
            .finish()
    }
}

impl Catalogue {
    /// Loads each directory's schemas for its patterns, in order; an error comes with the
    /// index of the entry at fault.
    pub fn load(entries: &[(Vec<Pattern>, PathBuf)]) -> Result<Catalogue, (usize, SchemaError)> {
        let sets = entries
            .iter()
            .enumerate()
            .map(|(i, (patterns, dir))| {
                Ok(SchemaSet {
                    patterns: patterns.clone(),
                    dir: dir.clone(),
                    schemas: load_dir(dir).map_err(|e| (i, e))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Catalogue { sets: sets.into() })
    }

    /// No schema at all: publishes are not checked.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Every schema that applies to an event of `event_type` on `topic`.
    pub fn schemas_for<'a, 'q>(
        &'a self,
        topic: &'q Topic,
        event_type: &'q str,
    ) -> impl Iterator<Item = &'a Schema> + 'q
    where
        'a: 'q,
    {
        self.sets
            .iter()
            .filter(move |s| s.patterns.iter().any(|p| p.matches(topic)))
            .filter_map(move |s| s.schemas.get(event_type))
    }

    /// Every directory with a schema for `event_type`, with its patterns (for offline checks
    /// that are not given a topic).
    pub fn candidates<'a>(&'a self, event_type: &str) -> Vec<(String, &'a Schema)> {
        self.sets
            .iter()
            .filter_map(|s| {
                let patterns: Vec<String> = s.patterns.iter().map(ToString::to_string).collect();
                s.schemas
                    .get(event_type)
                    .map(|schema| (patterns.join(" "), schema))
            })
            .collect()
    }

    /// Checks a payload against every schema that applies to it.
    pub fn check(
        &self,
        topic: &Topic,
        event_type: &EventType,
        data: &RawValue,
    ) -> Result<(), Box<Mismatch>> {
        if self.is_empty() {
            return Ok(());
        }
        let mut schemas = self.schemas_for(topic, event_type.as_str()).peekable();
        if schemas.peek().is_none() {
            return Ok(());
        }
        // The payload came through serde_json as a `RawValue`: it is JSON.
        let value: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
        schemas.try_for_each(|s| s.check(&value))
    }
}

impl Schema {
    /// Checks one payload; the first failing rule, and how many others failed.
    pub fn check(&self, value: &Value) -> Result<(), Box<Mismatch>> {
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let mut all = self.mismatches(value).into_iter();
        match all.next() {
            None => Ok(()),
            Some(mut first) => {
                first.more = all.count();
                Err(Box::new(first))
            }
        }
    }

    /// Every rule `value` fails (empty when it matches).
    pub fn mismatches(&self, value: &Value) -> Vec<Mismatch> {
        self.validator
            .iter_errors(value)
            .map(|e| {
                let mut message = e.masked().to_string();
                if message.chars().count() > MAX_MESSAGE_CHARS {
                    message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
                }
                Mismatch {
                    event_type: self.event_type.clone(),
                    instance_path: e.instance_path().as_str().to_owned(),
                    keyword: e.kind().keyword().to_owned(),
                    schema_path: e.schema_path().as_str().to_owned(),
                    message,
                    more: 0,
                }
            })
            .collect()
    }
}

/// Reads and compiles every `<type>.json` in `dir` (other files are ignored).
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Schema>, SchemaError> {
    let fail = |file: &Path, reason: String| SchemaError {
        file: file.to_owned(),
        reason,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| fail(dir, format!("cannot read: {e}")))?;
    let mut schemas = BTreeMap::new();
    for entry in entries {
        let path = entry
            .map_err(|e| fail(dir, format!("cannot read: {e}")))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
            continue;
        }
        let schema = load_file(&path).map_err(|reason| fail(&path, reason))?;
        schemas.insert(schema.event_type.clone(), schema);
    }
    if schemas.is_empty() {
        return Err(fail(dir, "holds no `<type>.json` schema".to_owned()));
    }
    Ok(schemas)
}

fn load_file(path: &Path) -> Result<Schema, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("the file name is not UTF-8")?;
    EventType::new(stem).map_err(|e| format!("`{stem}` is not an event type: {e}"))?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_SCHEMA_BYTES + 1),
        &mut text,
    )
    .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_SCHEMA_BYTES {
        return Err(format!("larger than {MAX_SCHEMA_BYTES} bytes"));
    }
    let document: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let validator = jsonschema::validator_for(&document)
        .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
    Ok(Schema {
        event_type: stem.to_owned(),
        file: path.to_owned(),
        document,
        validator,
    })
}

#[cfg(test)]
mod tests;

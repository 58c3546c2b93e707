//! `[[coalesce]]`: coalescing rules (file only, like `[[endpoints]]`: a table array has no
//! flag or environment form), checked into the engine's `Coalescing`.

use serde::{Deserialize, Serialize};
use tidings_core::{CoalesceRule, Coalescing, MergeFormat, Policy};
use tidings_proto::EventType;

use super::units::{duration, positive};
use super::{ConfigError, bad, patterns};

/// `[[coalesce]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoalesce {
    /// Event types it coalesces [default: every type].
    #[serde(default)]
    pub types: Vec<String>,
    /// Topic selectors it applies to, e.g. `downloads/*` [default: every topic].
    #[serde(default)]
    pub topics: Vec<String>,
    /// `none`, `latest` or `merge` [default: none].
    #[serde(default)]
    pub policy: Option<String>,
    /// Window length [default: 250ms].
    #[serde(default)]
    pub window: Option<String>,
    /// JSON pointer into `data` giving an event's key when the publisher sent none, e.g.
    /// `/DownloadID` [default: none: only the `key` field].
    #[serde(default)]
    pub key: Option<String>,
    /// Types never coalesced away, e.g. `["complete", "error", "removed"]` [default: none].
    #[serde(default)]
    pub terminal: Vec<String>,
    /// Most keys (`latest`) or topics' paths (`merge`) held at once; at the ceiling a new
    /// key's event goes out uncoalesced, a `merge` window goes out early [default: 10000].
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// `merge`: type of the batch event [default: event].
    #[serde(default)]
    pub merge_type: Option<String>,
    /// `merge`: JSON pointer to the operation's name in `data` [default: /type].
    #[serde(default)]
    pub merge_op: Option<String>,
    /// `merge`: JSON pointer to the path (a rename's old path) [default: /from].
    #[serde(default)]
    pub merge_from: Option<String>,
    /// `merge`: JSON pointer to a rename's new path [default: /to].
    #[serde(default)]
    pub merge_to: Option<String>,
    /// `merge`: the names of create, modify, rename and delete, in that order
    /// [default: ["create", "modify", "rename", "delete"]].
    #[serde(default)]
    pub merge_names: Option<Vec<String>>,
}

fn event_types(setting: &str, raw: &[String]) -> Result<Vec<EventType>, ConfigError> {
    raw.iter()
        .map(|t| EventType::new(t).map_err(|e| bad(setting, format!("`{t}` {e}"))))
        .collect()
}

/// Checks every rule, in order (first match wins).
pub(super) fn rules(raw: Vec<RawCoalesce>) -> Result<Coalescing, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("coalesce[{i}].{field}");
        let merge_only = [
            ("merge_type", r.merge_type.is_some()),
            ("merge_op", r.merge_op.is_some()),
            ("merge_from", r.merge_from.is_some()),
            ("merge_to", r.merge_to.is_some()),
            ("merge_names", r.merge_names.is_some()),
        ];
        let policy = match r.policy.as_deref().unwrap_or("none") {
            "none" | "latest" => {
                if let Some((field, _)) = merge_only.iter().find(|m| m.1) {
                    return Err(bad(&at(field), "applies to policy = \"merge\" only"));
                }
                if r.policy.as_deref() == Some("latest") {
                    Policy::Latest
                } else {
                    Policy::None
                }
            }
            "merge" => {
                let d = MergeFormat::default();
                let names = match r.merge_names {
                    None => d.names.clone(),
                    Some(n) => <[String; 4]>::try_from(n).map_err(|_| {
                        bad(
                            &at("merge_names"),
                            "must name create, modify, rename and delete, in that order",
                        )
                    })?,
                };
                Policy::Merge(MergeFormat {
                    batch_type: match r.merge_type {
                        None => d.batch_type,
                        Some(t) => EventType::new(&t)
                            .map_err(|e| bad(&at("merge_type"), format!("`{t}` {e}")))?,
                    },
                    op: r.merge_op.unwrap_or(d.op),
                    from: r.merge_from.unwrap_or(d.from),
                    to: r.merge_to.unwrap_or(d.to),
                    names,
                })
            }
            other => {
                return Err(bad(
                    &at("policy"),
                    format!("`{other}` is not none, latest or merge"),
                ));
            }
        };
        let window = duration(&at("window"), r.window.as_deref(), "250ms")?;
        rules.push(CoalesceRule {
            types: event_types(&at("types"), &r.types)?,
            topics: patterns(&at("topics"), &r.topics)?,
            policy,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            key: r.key,
            terminal: event_types(&at("terminal"), &r.terminal)?,
            max_keys: positive(&at("max_keys"), r.max_keys, 10_000)?,
        });
    }
    Coalescing::new(rules).map_err(|e| match e.split_once(": ") {
        Some((setting, reason)) => bad(setting, reason),
        None => bad("coalesce", e),
    })
}

//! Coalescing at ingest: the `[[coalesce]]` rules (`CoalesceRule`), the key an event gets
//! from a JSON pointer into its data, and the `Coalescer`, the per-key windows of the
//! `latest` and `merge` policies, kept under the hub's lock and driven by the hub's `Clock`.
//!
//! Coalescing decides what is sequenced. An event a window holds gets no id until the window
//! lets it out (a `latest` trailing edge, a `merge` batch); an event a newer one superseded
//! never gets one. So history holds exactly what subscribers are sent, and a resume from any
//! delivered id is exact by construction (the replay→live handoff does the rest).
//!
//! The engine never sleeps: `Coalescer::next_deadline` says when a window closes and
//! `Coalescer::flush_due` lets out what is due; the server drives both (`Hub::flush_coalesced`).

pub mod merge;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::value::RawValue;
use tidings_proto::{EventType, Key, Pattern, Topic};

use crate::request::NewEvent;
use merge::{FileOp, Merged, OpKind};

/// What a rule does with the events it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Nothing is held; the rule only gives events their key (and makes them conflatable).
    None,
    /// Per key, the first event of a burst goes out at once, then at most one per window: the
    /// newest, when the window closes.
    Latest,
    /// File-change events keyed by path are held for a window and go out as one batch event.
    Merge(MergeFormat),
}

/// How `merge` reads a file operation from an event's data and writes the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeFormat {
    /// Type of the batch event [default: `event`].
    pub batch_type: EventType,
    /// JSON pointer to the operation's name in the data [default: `/type`].
    pub op: String,
    /// JSON pointer to the path (a rename's old path) [default: `/from`].
    pub from: String,
    /// JSON pointer to a rename's new path [default: `/to`].
    pub to: String,
    /// The names of create, modify, rename and delete, read and written
    /// [default: `create`, `modify`, `rename`, `delete`].
    pub names: [String; 4],
}

impl Default for MergeFormat {
    fn default() -> Self {
        MergeFormat {
            batch_type: EventType::new("event").expect("valid"),
            op: "/type".into(),
            from: "/from".into(),
            to: "/to".into(),
            names: ["create", "modify", "rename", "delete"].map(String::from),
        }
    }
}

impl MergeFormat {
    fn name(&self, kind: OpKind) -> &str {
        &self.names[kind as usize]
    }

    fn kind(&self, name: &str) -> Option<OpKind> {
        [
            OpKind::Create,
            OpKind::Modify,
            OpKind::Rename,
            OpKind::Delete,
        ]
        .into_iter()
        .find(|k| self.name(*k) == name)
    }

    /// The operation an event's data describes, if it describes one.
    fn read(&self, data: &RawValue) -> Option<FileOp> {
        let v: serde_json::Value = serde_json::from_str(data.get()).ok()?;
        let kind = self.kind(v.pointer(&self.op)?.as_str()?)?;
        let from = v.pointer(&self.from)?.as_str()?.to_owned();
        let to = match kind {
            OpKind::Rename => v.pointer(&self.to)?.as_str()?.to_owned(),
            _ => String::new(),
        };
        (!from.is_empty() && (kind != OpKind::Rename || !to.is_empty())).then_some(FileOp {
            kind,
            from,
            to,
        })
    }

    /// The batch's data: `[{"type": …, "from": …, "to": …}, …]` (fields in that order), `to`
    /// empty but for renames.
    fn write(&self, ops: &[FileOp]) -> Box<RawValue> {
        let string = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let mut text = String::from("[");
        for (i, op) in ops.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!(
                "{{\"type\":{},\"from\":{},\"to\":{}}}",
                string(self.name(op.kind)),
                string(&op.from),
                string(&op.to)
            ));
        }
        text.push(']');
        RawValue::from_string(text).expect("valid JSON by construction")
    }
}

/// One `[[coalesce]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoalesceRule {
    /// Event types it coalesces (empty: every type).
    pub types: Vec<EventType>,
    /// Topics it applies to (empty: every topic).
    pub topics: Vec<Pattern>,
    /// What it does.
    pub policy: Policy,
    /// Window length in ms.
    pub window_ms: u64,
    /// JSON pointer into `data` giving an event's key when the publisher sent none.
    pub key: Option<String>,
    /// Types never coalesced away: they flush their key's held event first, then go out.
    pub terminal: Vec<EventType>,
    /// Most keys (`latest`) or paths (`merge`, over all topics) held at once by this rule. At
    /// the ceiling a `latest` event for a new key goes out at once, uncoalesced; a `merge`
    /// topic's window goes out early (or, if other topics hold every path, the operation goes
    /// out at once as a batch of one). Nothing is dropped.
    pub max_keys: usize,
}

impl CoalesceRule {
    fn applies(&self, topic: &Topic, ty: &EventType) -> bool {
        (self.types.is_empty() || self.types.contains(ty) || self.terminal.contains(ty))
            && (self.topics.is_empty() || self.topics.iter().any(|p| p.matches(topic)))
    }
}

/// The rules, checked once; cheap to test an event against when none can apply.
#[derive(Debug, Clone, Default)]
pub struct Coalescing {
    rules: Vec<CoalesceRule>,
    /// Every type some rule names, unless a rule takes every type.
    types: HashSet<EventType>,
    any_type: bool,
}

impl Coalescing {
    /// The rules, first match wins. Fails (naming the rule) on a key pointer that is not a
    /// JSON pointer or a zero window for a policy that holds events.
    pub fn new(rules: Vec<CoalesceRule>) -> Result<Coalescing, String> {
        let mut types = HashSet::new();
        let mut any_type = false;
        for (i, r) in rules.iter().enumerate() {
            let pointers = r.key.iter().chain(match &r.policy {
                Policy::Merge(f) => vec![&f.op, &f.from, &f.to],
                _ => vec![],
            });
            for p in pointers {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(format!(
                        "coalesce[{i}]: `{p}` is not a JSON pointer (it starts with `/`)"
                    ));
                }
            }
            if r.policy != Policy::None && r.window_ms == 0 {
                return Err(format!("coalesce[{i}].window: must be more than 0"));
            }
            if r.max_keys == 0 {
                return Err(format!("coalesce[{i}].max_keys: must be more than 0"));
            }
            any_type |= r.types.is_empty();
            types.extend(r.types.iter().chain(&r.terminal).cloned());
        }
        Ok(Coalescing {
            rules,
            types,
            any_type,
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[CoalesceRule] {
        &self.rules
    }

    fn rule_for(&self, e: &NewEvent) -> Option<usize> {
        if !self.any_type && !self.types.contains(&e.event_type) {
            return None;
        }
        self.rules
            .iter()
            .position(|r| r.applies(&e.topic, &e.event_type))
    }

    /// Gives each event its key (from the rule's pointer, when the publisher sent none) and
    /// decides what the coalescer is to do with it. `None` when no event matches a rule (the
    /// cheap path: one set probe per event). Runs before the hub's lock.
    pub(crate) fn prepare(&self, events: &mut [NewEvent]) -> Option<Vec<Plan>> {
        if self.rules.is_empty() {
            return None;
        }
        let mut plans: Option<Vec<Plan>> = None;
        let n = events.len();
        for (i, e) in events.iter_mut().enumerate() {
            let Some(r) = self.rule_for(e) else { continue };
            let rule = &self.rules[r];
            if e.key.is_none()
                && let Some(pointer) = &rule.key
            {
                e.key = key_at(&e.data, pointer);
            }
            let terminal = rule.terminal.contains(&e.event_type);
            let plan = match &rule.policy {
                Policy::None => Plan::Pass {
                    conflate: e.key.is_some() && !terminal,
                },
                Policy::Latest => match (&e.key, terminal) {
                    (Some(key), false) => Plan::Latest {
                        rule: r,
                        key: key.clone(),
                    },
                    (Some(key), true) => Plan::FlushKey {
                        rule: r,
                        key: key.clone(),
                    },
                    (None, _) => Plan::Pass { conflate: false },
                },
                Policy::Merge(format) => match (terminal, format.read(&e.data)) {
                    (false, Some(op)) => Plan::Merge { rule: r, op },
                    // A terminal, or an event that is no file operation: what the window
                    // holds for the topic goes first, so nothing is reordered.
                    _ => Plan::FlushTopic { rule: r },
                },
            };
            plans.get_or_insert_with(|| vec![Plan::Pass { conflate: false }; n])[i] = plan;
        }
        plans
    }
}

/// The key at `pointer` in `data`: a string as it is, a number or boolean as written. `None`
/// when it is missing, another kind of value, or not a valid key (the event is then unkeyed
/// and goes out uncoalesced).
fn key_at(data: &RawValue, pointer: &str) -> Option<Key> {
    let v: serde_json::Value = serde_json::from_str(data.get()).ok()?;
    let text = match v.pointer(pointer)? {
        serde_json::Value::String(s) => s.clone(),
        n @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => n.to_string(),
        _ => return None,
    };
    Key::new(&text).ok()
}

/// What the coalescer does with one event (decided before the lock by `Coalescing::prepare`).
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Out at once; `conflate`: a lagging subscriber may replace it with a newer one of its key.
    Pass { conflate: bool },
    /// `latest`, under `key`.
    Latest { rule: usize, key: Key },
    /// A `latest` terminal: what is held for `key` first, then this.
    FlushKey { rule: usize, key: Key },
    /// A `merge` file operation.
    Merge { rule: usize, op: FileOp },
    /// What the `merge` window of the topic holds first, then this.
    FlushTopic { rule: usize },
}

/// An event the coalescer lets out, to be sequenced in this order.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) event: NewEvent,
    pub(crate) origin: Option<Key>,
    /// A lagging subscriber may replace it with a newer event of its key.
    pub(crate) conflate: bool,
    /// Its index in the publish being ingested; `None` for an event of an earlier publish (a
    /// held event let out now) or a `merge` batch.
    pub(crate) input: Option<usize>,
}

impl Out {
    /// The stored record of this event with `id` and `time` (ms since the epoch).
    pub(crate) fn into_record(self, id: tidings_proto::EventId, time: u64) -> crate::SharedEvent {
        crate::EventRecord::with_conflation(
            tidings_proto::Event {
                id,
                topic: self.event.topic,
                event_type: self.event.event_type,
                key: self.event.key,
                origin: self.origin,
                time,
                data: self.event.data,
            },
            self.conflate,
        )
    }
}

#[derive(Debug)]
struct Held {
    event: NewEvent,
    origin: Option<Key>,
    /// The ingest it came from (`Coalescer::ingests`) and its index there.
    ingest: u64,
    input: usize,
}

/// A `latest` key's window.
#[derive(Debug)]
struct Slot {
    until: u64,
    held: Option<Held>,
}

/// A `merge` topic's window.
#[derive(Debug)]
struct Batch {
    until: u64,
    merged: Merged,
    /// The publishers' client id, while every operation had the same one.
    origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Unset,
    One(Option<Key>),
    Mixed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Key(Topic, Key),
    Topic(Topic),
}

/// The windows of every rule.
#[derive(Debug)]
pub(crate) struct Coalescer {
    rules: Vec<CoalesceRule>,
    slots: HashMap<(usize, Topic, Key), Slot>,
    batches: HashMap<(usize, Topic), Batch>,
    /// Keys (`latest`) or paths (`merge`, over all topics) held per rule, for the ceiling.
    held: Vec<usize>,
    /// Per rule, window ends in order (every window of a rule has the same length and time
    /// never goes back here, so pushing at the back keeps them sorted). An entry whose window
    /// was closed early is stale and skipped.
    timers: Vec<VecDeque<(u64, Target)>>,
    /// Latest time seen: the clock may step back, windows do not.
    now: u64,
    ingests: u64,
    /// Events superseded or folded into a batch (never sequenced themselves).
    pub(crate) coalesced: u64,
}

impl Coalescer {
    pub(crate) fn new(rules: &Coalescing) -> Coalescer {
        let n = rules.rules.len();
        Coalescer {
            rules: rules.rules.clone(),
            slots: HashMap::new(),
            batches: HashMap::new(),
            held: vec![0; n],
            timers: vec![VecDeque::new(); n],
            now: 0,
            ingests: 0,
            coalesced: 0,
        }
    }

    fn tick(&mut self, now: u64) -> u64 {
        self.now = self.now.max(now);
        self.now
    }

    /// When the next window closes (ms on the hub's clock), if any is open.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.timers
            .iter()
            .filter_map(|t| t.front())
            .map(|t| t.0)
            .min()
    }

    /// Keys and topics held now, over all rules.
    pub(crate) fn held(&self) -> usize {
        self.held.iter().sum()
    }

    /// Takes one publish's events (with their plans) and returns what goes out now, in order.
    pub(crate) fn ingest(
        &mut self,
        now: u64,
        events: Vec<NewEvent>,
        plans: Vec<Plan>,
        origin: &Option<Key>,
    ) -> Vec<Out> {
        let now = self.tick(now);
        self.ingests += 1;
        let ingest = self.ingests;
        let mut out = Vec::with_capacity(events.len());
        for (input, (event, plan)) in events.into_iter().zip(plans).enumerate() {
            let pass = |event: NewEvent, conflate: bool| Out {
                event,
                origin: origin.clone(),
                conflate,
                input: Some(input),
            };
            match plan {
                Plan::Pass { conflate } => out.push(pass(event, conflate)),
                Plan::FlushKey { rule, key } => {
                    let id = (rule, event.topic.clone(), key);
                    if let Some(slot) = self.slots.remove(&id) {
                        self.held[rule] -= 1;
                        if let Some(h) = slot.held {
                            out.push(held_out(h, ingest));
                        }
                    }
                    out.push(pass(event, false));
                }
                Plan::Latest { rule, key } => {
                    let id = (rule, event.topic.clone(), key);
                    let window = self.rules[rule].window_ms;
                    match self.slots.get_mut(&id) {
                        Some(slot) if slot.until > now => {
                            if slot.held.is_some() {
                                self.coalesced += 1;
                            }
                            slot.held = Some(Held {
                                event,
                                origin: origin.clone(),
                                ingest,
                                input,
                            });
                        }
                        Some(slot) => {
                            // Its window closed and the timer has not run yet: close it here.
                            // What it held goes out (its trailing edge) and this waits in the
                            // next window; after a quiet window this is a leading edge.
                            slot.until = now + window;
                            self.timers[rule].push_back((now + window, Target::Key(id.1, id.2)));
                            match slot.held.take() {
                                Some(h) => {
                                    out.push(held_out(h, ingest));
                                    slot.held = Some(Held {
                                        event,
                                        origin: origin.clone(),
                                        ingest,
                                        input,
                                    });
                                }
                                None => out.push(pass(event, true)),
                            }
                        }
                        None if self.held[rule] >= self.rules[rule].max_keys => {
                            out.push(pass(event, true));
                        }
                        None => {
                            self.held[rule] += 1;
                            self.timers[rule]
                                .push_back((now + window, Target::Key(id.1.clone(), id.2.clone())));
                            self.slots.insert(
                                id,
                                Slot {
                                    until: now + window,
                                    held: None,
                                },
                            );
                            out.push(pass(event, true));
                        }
                    }
                }
                Plan::FlushTopic { rule } => {
                    if let Some(b) = self.batches.remove(&(rule, event.topic.clone())) {
                        self.held[rule] -= b.merged.len();
                        self.emit_batch(rule, &event.topic, b, &mut out);
                    }
                    out.push(pass(event, false));
                }
                Plan::Merge { rule, op } => {
                    let id = (rule, event.topic.clone());
                    let (window, max) = (self.rules[rule].window_ms, self.rules[rule].max_keys);
                    // Let out a window that closed (timer not run yet) or one that would fold
                    // `op` out of order; then fold `op` into a fresh one.
                    let early = self
                        .batches
                        .get(&id)
                        .is_some_and(|b| b.until <= now || b.merged.conflicts(&op));
                    // At the ceiling (paths held by all of this rule's windows), this topic's
                    // window goes out early; if other topics hold them all, `op` goes out at
                    // once as a batch of one. Nothing is lost either way.
                    let full = self.held[rule] >= max;
                    if (early || full)
                        && let Some(b) = self.batches.remove(&id)
                    {
                        self.held[rule] -= b.merged.len();
                        self.emit_batch(rule, &id.1, b, &mut out);
                    }
                    if self.held[rule] >= max {
                        let alone = Batch {
                            until: now,
                            merged: {
                                let mut m = Merged::default();
                                m.apply(&op);
                                m
                            },
                            origin: Origin::One(origin.clone()),
                        };
                        self.emit_batch(rule, &id.1, alone, &mut out);
                        continue;
                    }
                    let batch = self.batches.entry(id.clone()).or_insert_with(|| {
                        self.timers[rule].push_back((now + window, Target::Topic(id.1.clone())));
                        Batch {
                            until: now + window,
                            merged: Merged::default(),
                            origin: Origin::Unset,
                        }
                    });
                    let before = batch.merged.len();
                    batch.merged.apply(&op);
                    self.held[rule] += batch.merged.len() - before;
                    batch.origin = match &batch.origin {
                        Origin::Unset => Origin::One(origin.clone()),
                        Origin::One(o) if o == origin => Origin::One(o.clone()),
                        _ => Origin::Mixed,
                    };
                    self.coalesced += 1;
                }
            }
        }
        out
    }

    /// Lets out every window closed at `now`: `latest` keys' newest held events (each opening
    /// the key's next window) and `merge` batches.
    pub(crate) fn flush_due(&mut self, now: u64) -> Vec<Out> {
        let now = self.tick(now);
        let mut out = Vec::new();
        for rule in 0..self.timers.len() {
            while self.timers[rule].front().is_some_and(|t| t.0 <= now) {
                let (deadline, target) = self.timers[rule].pop_front().expect("front checked");
                self.close(rule, deadline, target, now, &mut out);
            }
        }
        out
    }

    /// Lets out everything held (shutdown).
    pub(crate) fn flush_all(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        for rule in 0..self.timers.len() {
            while let Some((deadline, target)) = self.timers[rule].pop_front() {
                self.close(rule, deadline, target, u64::MAX, &mut out);
            }
        }
        out
    }

    fn close(&mut self, rule: usize, deadline: u64, target: Target, now: u64, out: &mut Vec<Out>) {
        match target {
            Target::Key(topic, key) => {
                let id = (rule, topic, key);
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                if slot.until != deadline {
                    return;
                }
                match slot.held.take() {
                    Some(h) if now != u64::MAX => {
                        // Trailing edge; the key stays in a window so it sends at most one
                        // event per window.
                        out.push(held_out(h, 0));
                        let until = now + self.rules[rule].window_ms;
                        slot.until = until;
                        self.timers[rule].push_back((until, Target::Key(id.1, id.2)));
                    }
                    held => {
                        if let Some(h) = held {
                            out.push(held_out(h, 0));
                        }
                        self.slots.remove(&id);
                        self.held[rule] -= 1;
                    }
                }
            }
            Target::Topic(topic) => {
                let id = (rule, topic);
                if self.batches.get(&id).is_some_and(|b| b.until == deadline)
                    && let Some(b) = self.batches.remove(&id)
                {
                    self.held[rule] -= b.merged.len();
                    self.emit_batch(rule, &id.1, b, out);
                }
            }
        }
    }

    fn emit_batch(&self, rule: usize, topic: &Topic, batch: Batch, out: &mut Vec<Out>) {
        let Policy::Merge(format) = &self.rules[rule].policy else {
            return;
        };
        let ops = batch.merged.finish();
        if ops.is_empty() {
            return;
        }
        out.push(Out {
            event: NewEvent {
                topic: topic.clone(),
                event_type: format.batch_type.clone(),
                key: None,
                data: format.write(&ops),
            },
            origin: match batch.origin {
                Origin::One(o) => o,
                _ => None,
            },
            conflate: false,
            input: None,
        });
    }
}

fn held_out(h: Held, ingest: u64) -> Out {
    Out {
        event: h.event,
        origin: h.origin,
        conflate: true,
        input: (h.ingest == ingest).then_some(h.input),
    }
}

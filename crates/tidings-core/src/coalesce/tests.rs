//! Tests of the `merge` algebra (each rule of the issue, and a property test against a model
//! file system) and of key pointers.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::merge::{FileOp, Merged, OpKind};
use super::*;

fn fold(ops: &[FileOp]) -> Vec<FileOp> {
    let mut m = Merged::default();
    for op in ops {
        assert!(!m.conflicts(op), "{op:?} should fold");
        m.apply(op);
    }
    m.finish()
}

fn create(p: &str) -> FileOp {
    FileOp::on(OpKind::Create, p)
}
fn modify(p: &str) -> FileOp {
    FileOp::on(OpKind::Modify, p)
}
fn delete(p: &str) -> FileOp {
    FileOp::on(OpKind::Delete, p)
}
fn rename(a: &str, b: &str) -> FileOp {
    FileOp::rename(a, b)
}

#[test]
fn create_then_delete_cancels_out() {
    assert_eq!(fold(&[create("/a"), modify("/a"), delete("/a")]), vec![]);
}

#[test]
fn several_modifies_become_one() {
    assert_eq!(
        fold(&[modify("/a"), modify("/a"), modify("/a")]),
        vec![modify("/a")]
    );
}

#[test]
fn create_then_modify_stays_a_create() {
    assert_eq!(fold(&[create("/a"), modify("/a")]), vec![create("/a")]);
}

#[test]
fn rename_chains_fold() {
    assert_eq!(
        fold(&[rename("/a", "/b"), rename("/b", "/c")]),
        vec![rename("/a", "/c")]
    );
    // Back where it started, unchanged: nothing happened.
    assert_eq!(fold(&[rename("/a", "/b"), rename("/b", "/a")]), vec![]);
}

#[test]
fn modify_then_delete_becomes_delete() {
    assert_eq!(fold(&[modify("/a"), delete("/a")]), vec![delete("/a")]);
    // Also under another name.
    assert_eq!(
        fold(&[modify("/a"), rename("/a", "/b"), delete("/b")]),
        vec![delete("/a")]
    );
}

#[test]
fn a_rename_after_a_create_is_a_create_at_the_new_path() {
    assert_eq!(
        fold(&[create("/a"), rename("/a", "/b")]),
        vec![create("/b")]
    );
}

#[test]
fn a_renamed_and_modified_file_is_a_rename_then_a_modify() {
    assert_eq!(
        fold(&[modify("/a"), rename("/a", "/b"), modify("/b")]),
        vec![rename("/a", "/b"), modify("/b")]
    );
}

#[test]
fn a_swap_through_a_temporary_name_is_not_folded_out_of_order() {
    let mut m = Merged::default();
    m.apply(&rename("/a", "/t"));
    m.apply(&rename("/b", "/a"));
    assert!(m.conflicts(&rename("/t", "/b")));
}

/// A file as the model sees it: which file it was when the window opened (`None`: created in
/// the window), and whether its content changed.
type Files = BTreeMap<String, (Option<String>, bool)>;

fn run(files: &mut Files, op: &FileOp) {
    match op.kind {
        OpKind::Create => {
            files.insert(op.from.clone(), (None, true));
        }
        OpKind::Modify => {
            if let Some(f) = files.get_mut(&op.from) {
                f.1 = true;
            }
        }
        OpKind::Delete => {
            files.remove(&op.from);
        }
        OpKind::Rename => {
            if let Some(f) = files.remove(&op.from) {
                files.insert(op.to.clone(), f);
            }
        }
    }
}

const PATHS: [&str; 5] = ["/a", "/b", "/c", "/d/x", "/d/y"];

/// Valid operations against `files` only (a create or a rename's target on a free path, the
/// rest on a file: a file store refuses a rename onto an existing name), picked by the random
/// numbers in `picks`.
fn valid_ops(initial: &Files, picks: &[(u8, u8, u8)]) -> Vec<FileOp> {
    let mut files = initial.clone();
    let mut ops = Vec::new();
    for &(k, a, b) in picks {
        let present: Vec<&String> = files.keys().collect();
        let free: Vec<&str> = PATHS
            .iter()
            .copied()
            .filter(|p| !files.contains_key(*p))
            .collect();
        let op = match k % 4 {
            0 if !free.is_empty() => create(free[a as usize % free.len()]),
            1 if !present.is_empty() => modify(present[a as usize % present.len()]),
            2 if !present.is_empty() => delete(present[a as usize % present.len()]),
            3 if !present.is_empty() => {
                let from = present[a as usize % present.len()].clone();
                if free.is_empty() {
                    continue;
                }
                let to = free[b as usize % free.len()];
                rename(&from, to)
            }
            _ => continue,
        };
        run(&mut files, &op);
        ops.push(op);
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The merged operations take the files to the same state as the raw ones: the same paths,
    /// each holding the same file, changed or not. Each window's output names every entity
    /// at most once per kind, and a create never meets a delete of the same path in it
    /// (create then delete cancels out).
    #[test]
    fn merged_ops_reach_the_same_files(
        start in proptest::collection::btree_set(0usize..PATHS.len(), 0..PATHS.len()),
        picks in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..40),
    ) {
        let initial: Files = start
            .iter()
            .map(|&i| (PATHS[i].to_owned(), (Some(PATHS[i].to_owned()), false)))
            .collect();
        let ops = valid_ops(&initial, &picks);
        let mut raw = initial.clone();
        for op in &ops {
            run(&mut raw, op);
        }
        // Fold window by window, as the coalescer does when an operation conflicts.
        let mut out = Vec::new();
        let mut m = Merged::default();
        let mut windows = 0;
        for op in &ops {
            if m.conflicts(op) {
                let w = std::mem::take(&mut m).finish();
                out.extend(w);
                windows += 1;
            }
            m.apply(op);
        }
        let last = m.finish();
        let mut seen = std::collections::HashSet::new();
        for op in &last {
            prop_assert!(seen.insert((op.kind, op.from.clone())), "{op:?} twice in {last:?}");
        }
        out.extend(last);
        let mut merged = initial.clone();
        for op in &out {
            run(&mut merged, op);
        }
        prop_assert_eq!(&merged, &raw, "ops {:?} merged to {:?}", ops, out);
        // Folding never makes more operations than it was given.
        prop_assert!(out.len() <= ops.len() + windows);
    }
}

#[test]
fn keys_come_from_the_pointer_when_the_publisher_sent_none() {
    let rules = Coalescing::new(vec![CoalesceRule {
        types: vec![EventType::new("progress").unwrap()],
        topics: vec![],
        policy: Policy::None,
        window_ms: 0,
        key: Some("/DownloadID".into()),
        terminal: vec![EventType::new("complete").unwrap()],
        max_keys: 10,
    }])
    .unwrap();
    let ev = |ty: &str, key: Option<&str>, data: &str| NewEvent {
        topic: Topic::new("downloads").unwrap(),
        event_type: EventType::new(ty).unwrap(),
        key: key.map(|k| Key::new(k).unwrap()),
        data: RawValue::from_string(data.to_owned()).unwrap(),
    };
    let mut events = vec![
        ev(
            "progress",
            None,
            r#"{"DownloadID":"abc-123","Downloaded":5}"#,
        ),
        ev("progress", Some("mine"), r#"{"DownloadID":"abc-123"}"#),
        ev("progress", None, r#"{"DownloadID":42}"#),
        ev("progress", None, r#"{"Other":1}"#),
        ev("complete", None, r#"{"DownloadID":"abc-123"}"#),
        ev("started", None, r#"{"DownloadID":"abc-123"}"#),
    ];
    let plans = rules.prepare(&mut events).expect("rules apply");
    let keys: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.key.as_ref().map(Key::as_str))
        .collect();
    assert_eq!(
        keys,
        [
            Some("abc-123"),
            Some("mine"),
            Some("42"),
            None,
            Some("abc-123"),
            None
        ]
    );
    let conflate: Vec<bool> = plans
        .iter()
        .map(|p| matches!(p, Plan::Pass { conflate: true }))
        .collect();
    // Keyed non-terminals are conflatable; the terminal, the unkeyed and the unmatched are not.
    assert_eq!(conflate, [true, true, true, false, false, false]);
    // No rule at all: nothing to do, nothing parsed.
    assert!(Coalescing::default().prepare(&mut events).is_none());
}

#[test]
fn rules_are_checked() {
    let rule = |key: &str, window_ms| CoalesceRule {
        types: vec![],
        topics: vec![],
        policy: Policy::Latest,
        window_ms,
        key: Some(key.into()),
        terminal: vec![],
        max_keys: 10,
    };
    assert!(Coalescing::new(vec![rule("/id", 250)]).is_ok());
    let e = Coalescing::new(vec![rule("id", 250)]).unwrap_err();
    assert!(
        e.contains("coalesce[0]") && e.contains("JSON pointer"),
        "{e}"
    );
    let e = Coalescing::new(vec![rule("/id", 0)]).unwrap_err();
    assert!(e.contains("coalesce[0].window"), "{e}");
}

#[test]
fn a_merge_batch_has_the_configured_shape() {
    let f = MergeFormat::default();
    let data = f.write(&[create("/a"), rename("/b", "/c")]);
    assert_eq!(
        data.get(),
        r#"[{"type":"create","from":"/a","to":""},{"type":"rename","from":"/b","to":"/c"}]"#
    );
    let op = f
        .read(&RawValue::from_string(r#"{"type":"rename","from":"/x","to":"/y"}"#.into()).unwrap());
    assert_eq!(op, Some(rename("/x", "/y")));
    assert_eq!(
        f.read(&RawValue::from_string(r#"{"type":"chmod","from":"/x"}"#.into()).unwrap()),
        None
    );
}

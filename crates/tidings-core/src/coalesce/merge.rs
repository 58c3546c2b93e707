//! The file-change algebra of the `merge` policy: a window's operations on paths, folded into
//! the fewest operations that take the same files to the same final state.
//!
//! Each file the window touches is one entity: the path it had when the window opened
//! (`before`, `None` if it was created in the window), the path it has now (`after`, `None`
//! once deleted) and whether its content changed. What comes out per entity, in the order
//! the entities were first touched:
//!
//! | before | after | out |
//! |---|---|---|
//! | none | none | nothing (create then delete cancels out) |
//! | none | `b` | create `b` (modifies and renames fold into the create) |
//! | `a` | none | delete `a` (modifies and renames fold into the delete) |
//! | `a` | `b ≠ a` | rename `a`→`b` (chains fold), then modify `b` if changed |
//! | `a` | `a` | modify `a` if changed (several modifies are one) |
//!
//! Folding may not change the meaning of the order: an entity that moves onto the old path
//! of an entity that comes later would be overwritten by that entity's output. `conflicts`
//! tells the caller to emit the window so far first (a swap through a temporary name does
//! that).

use std::collections::HashMap;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A file appeared at `from`.
    Create,
    /// The file at `from` changed.
    Modify,
    /// The file at `from` moved to `to`.
    Rename,
    /// The file at `from` went away.
    Delete,
}

/// One file operation: `to` is the new path of a rename, empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileOp {
    /// What happened.
    pub kind: OpKind,
    /// The path it happened to (a rename's old path).
    pub from: String,
    /// A rename's new path; empty for the other kinds.
    pub to: String,
}

impl FileOp {
    /// An operation on one path.
    pub fn on(kind: OpKind, path: &str) -> FileOp {
        FileOp {
            kind,
            from: path.to_owned(),
            to: String::new(),
        }
    }

    /// A rename.
    pub fn rename(from: &str, to: &str) -> FileOp {
        FileOp {
            kind: OpKind::Rename,
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entity {
    before: Option<String>,
    after: Option<String>,
    modified: bool,
}

/// The folded operations of one window.
#[derive(Debug, Default, Clone)]
pub struct Merged {
    entities: Vec<Entity>,
    /// Current path → entity, for the entities that still exist.
    by_path: HashMap<String, usize>,
    /// Path at the window's start → entity.
    by_before: HashMap<String, usize>,
}

impl Merged {
    /// Entities touched so far (what the window's key ceiling counts).
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Whether folding `op` in would make the output's order wrong (see the module docs):
    /// emit what is held first.
    pub fn conflicts(&self, op: &FileOp) -> bool {
        if op.kind != OpKind::Rename || op.from == op.to {
            return false;
        }
        // A mover not seen yet is appended last, after every entity it could clash with.
        let Some(&mover) = self.by_path.get(&op.from) else {
            return false;
        };
        // An entity that started at the target and comes out after the mover would act on
        // the mover's file instead of its own.
        self.by_before.get(&op.to).is_some_and(|&j| j > mover)
    }

    fn entity_at(&mut self, path: &str) -> usize {
        if let Some(&i) = self.by_path.get(path) {
            return i;
        }
        let i = self.entities.len();
        self.entities.push(Entity {
            before: Some(path.to_owned()),
            after: Some(path.to_owned()),
            modified: false,
        });
        self.by_path.insert(path.to_owned(), i);
        self.by_before.entry(path.to_owned()).or_insert(i);
        i
    }

    /// Folds `op` in.
    pub fn apply(&mut self, op: &FileOp) {
        match op.kind {
            OpKind::Create => {
                if let Some(&i) = self.by_path.get(&op.from) {
                    // Created over a file that exists: its content changed.
                    self.entities[i].modified = true;
                    return;
                }
                let i = self.entities.len();
                self.entities.push(Entity {
                    before: None,
                    after: Some(op.from.clone()),
                    modified: false,
                });
                self.by_path.insert(op.from.clone(), i);
            }
            OpKind::Modify => {
                let i = self.entity_at(&op.from);
                self.entities[i].modified = true;
            }
            OpKind::Delete => {
                let i = self.entity_at(&op.from);
                self.by_path.remove(&op.from);
                self.entities[i].after = None;
            }
            OpKind::Rename => {
                if op.from == op.to {
                    return;
                }
                let i = self.entity_at(&op.from);
                self.by_path.remove(&op.from);
                if let Some(j) = self.by_path.remove(&op.to) {
                    // Moved over a file: that file is gone.
                    self.entities[j].after = None;
                }
                self.entities[i].after = Some(op.to.clone());
                self.by_path.insert(op.to.clone(), i);
            }
        }
    }

    /// The folded operations, in order.
    pub fn finish(self) -> Vec<FileOp> {
        let mut out = Vec::new();
        for e in self.entities {
            match (e.before, e.after) {
                (None, None) => {}
                (None, Some(b)) => out.push(FileOp::on(OpKind::Create, &b)),
                (Some(a), None) => out.push(FileOp::on(OpKind::Delete, &a)),
                (Some(a), Some(b)) if a != b => {
                    out.push(FileOp::rename(&a, &b));
                    if e.modified {
                        out.push(FileOp::on(OpKind::Modify, &b));
                    }
                }
                (Some(a), Some(_)) => {
                    if e.modified {
                        out.push(FileOp::on(OpKind::Modify, &a));
                    }
                }
            }
        }
        out
    }
}

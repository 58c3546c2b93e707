//! `tidings watch DIR --topic-root URI`: a real source of file changes. It watches a directory
//! tree (the `notify` crate: inotify on Linux, recursive) and publishes each change of a file
//! or folder as one event: type `create`, `modify`, `rename` or `delete`, data
//! `{"type","from","to"}` (the element of Cloudreve's `event` batches; `to` is the new URI of
//! a rename and empty otherwise; a URI is the topic root, `/`, and the path relative to DIR),
//! topic the URI of the folder `from` is in. One topic per folder: a subscriber of a folder's
//! subtree (`cloudreve://my/docs`, `cloudreve://my/docs/*`) gets the changes in it, and the
//! files profile's `merge` rule, whose windows are per topic, folds a folder's changes into
//! one of Cloudreve's batches (renames chain, create then delete cancels out).
//!
//! Bursts: the watcher thread hands events over a bounded queue (it blocks when the queue is
//! full, leaving the rest in the kernel's queue), and they are published in batches of at
//! most `--batch` (a change waits in a batch at most 200 ms), one batch in flight: memory
//! stays bounded however many files change. A folder that appears (created, or moved in) is
//! scanned, since files created in it before its watch was added have no event of their own.
//!
//! The directory disappearing (deleted, or moved away) is reported and ends the command with
//! exit code 1, after what was seen before is published.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher as _};
use serde_json::json;
use tidings_client::{Backoff, Client, NewEvent};
use tokio::sync::mpsc;

use super::{HubArgs, block_on, fail};

/// Watcher events queued between the watcher thread and the publisher.
const QUEUE: usize = 4096;
/// How long a burst may keep a batch open once the queue runs dry.
const LINGER: Duration = Duration::from_millis(20);
/// The longest a change waits in an open batch while changes keep coming.
const MAX_HOLD: Duration = Duration::from_millis(200);
/// How long a rename's first half waits for its second before it counts as a move out of the
/// tree (a delete).
const RENAME_WAIT: Duration = Duration::from_millis(50);
/// How often the watched directory itself is looked at.
const ROOT_CHECK: Duration = Duration::from_millis(500);

/// The watched directory disappeared.
const EXIT_GONE: u8 = 1;

const EXIT_CODES: &str = "\
Exit codes:
  0   stopped by SIGINT or SIGTERM, after publishing what was seen
  1   the watched directory disappeared (deleted or moved away), or cannot be watched
  2   the command line is wrong
  64  a flag's value is invalid
  65  the hub refused an event (4xx)
  77  the hub refused the credential (401) or the grant (403)";

/// Watch a directory tree and publish its file changes.
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    #[command(flatten)]
    hub: HubArgs,
    /// The directory tree to watch.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The URI of DIR itself; a file's URI is this, `/`, and its path under DIR (with
    /// `cloudreve://my`, DIR/photos/a.jpg is `cloudreve://my/photos/a.jpg`), and a change is
    /// published to the topic of its folder (`cloudreve://my/photos`).
    #[arg(long, value_name = "URI")]
    topic_root: String,
    /// Most events per publish.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
}

/// An event's data: the element of Cloudreve's batches, in its order.
#[derive(serde::Serialize)]
struct Element<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    from: &'a str,
    to: &'a str,
}

/// One change, before it becomes an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Create(PathBuf),
    Modify(PathBuf),
    Rename(PathBuf, PathBuf),
    Delete(PathBuf),
}

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(async move {
        let client = match args.hub.client(None) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        let root = match std::fs::canonicalize(&args.dir) {
            Ok(r) if r.is_dir() => r,
            Ok(r) => {
                eprintln!("tidings: {} is not a directory", r.display());
                return ExitCode::from(EXIT_GONE);
            }
            Err(e) => {
                eprintln!("tidings: cannot watch {}: {e}", args.dir.display());
                return ExitCode::from(EXIT_GONE);
            }
        };
        let topic_root = args.topic_root.trim_end_matches('/').to_owned();
        if let Err(e) = NewEvent::new(&format!("{topic_root}/x"), "create", &json!({}))
            .and_then(|_| NewEvent::new(&topic_root, "create", &json!({})))
        {
            return fail(&e);
        }
        let mut watch = Watch {
            client,
            root,
            topic_root,
            batch: Vec::new(),
            max_batch: usize::from(args.batch),
            deleted: HashSet::new(),
            created: HashSet::new(),
            modified: HashSet::new(),
            opened: None,
            warned_retry: false,
        };
        watch.run().await
    })
}

struct Watch {
    client: Client,
    root: PathBuf,
    topic_root: String,
    batch: Vec<NewEvent>,
    max_batch: usize,
    /// Topics deleted / created / modified in the open batch (see `push`).
    deleted: HashSet<String>,
    created: HashSet<String>,
    modified: HashSet<String>,
    /// When the open batch got its first change.
    opened: Option<tokio::time::Instant>,
    warned_retry: bool,
}

/// How the loop ended.
enum End {
    Signal,
    Gone(String),
    Failed(ExitCode),
}

impl Watch {
    async fn run(&mut self) -> ExitCode {
        let (tx, mut rx) = mpsc::channel::<notify::Result<notify::Event>>(QUEUE);
        let watcher = notify::recommended_watcher(move |res| {
            // Blocks when the queue is full: the rest waits in the kernel's queue. An error
            // only means the publisher has stopped.
            tx.blocking_send(res).ok();
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                eprintln!("tidings: cannot watch {}: {e}", self.root.display());
                return ExitCode::from(EXIT_GONE);
            }
        };
        if let Err(e) = watcher.watch(&self.root, RecursiveMode::Recursive) {
            eprintln!("tidings: cannot watch {}: {e}", self.root.display());
            return ExitCode::from(EXIT_GONE);
        }
        let identity = match std::fs::metadata(&self.root) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                eprintln!("tidings: cannot watch {}: {e}", self.root.display());
                return ExitCode::from(EXIT_GONE);
            }
        };
        eprintln!(
            "tidings: watching {} as {}",
            self.root.display(),
            self.topic_root
        );
        let end = self.events(&mut rx, identity).await;
        drop(watcher);
        // What was seen before the end is published whatever ended it.
        if !matches!(end, End::Failed(_))
            && let Err(code) = self.flush().await
        {
            return code;
        }
        match end {
            End::Signal => ExitCode::SUCCESS,
            End::Gone(why) => {
                eprintln!(
                    "tidings: the watched directory {} {why}; stopping",
                    self.root.display()
                );
                ExitCode::from(EXIT_GONE)
            }
            End::Failed(code) => code,
        }
    }

    async fn events(
        &mut self,
        rx: &mut mpsc::Receiver<notify::Result<notify::Event>>,
        identity: (u64, u64),
    ) -> End {
        let mut shutdown = std::pin::pin!(shutdown_signal());
        let mut check = tokio::time::interval(ROOT_CHECK);
        // The first half of a rename (its tracker and path), until its second half arrives.
        let mut moved_from: Option<(usize, PathBuf)> = None;
        loop {
            // Wait long for the first event of a burst; once a batch or a rename half is
            // open, briefly.
            let wait = if moved_from.is_some() {
                RENAME_WAIT
            } else if !self.batch.is_empty() {
                LINGER
            } else {
                Duration::from_secs(3600)
            };
            let next = tokio::select! {
                () = &mut shutdown => return End::Signal,
                _ = check.tick() => {
                    if let Some(why) = gone(&self.root, identity) {
                        return End::Gone(why);
                    }
                    continue;
                }
                next = tokio::time::timeout(wait, rx.recv()) => next,
            };
            let event = match next {
                Err(_idle) => {
                    // The burst is over: a lone first half moved out of the tree.
                    if let Some((_, from)) = moved_from.take()
                        && let Err(code) = self.push(Change::Delete(from)).await
                    {
                        return End::Failed(code);
                    }
                    if let Err(code) = self.flush().await {
                        return End::Failed(code);
                    }
                    continue;
                }
                Ok(None) => return End::Gone("cannot be watched any more".to_owned()),
                Ok(Some(Err(e))) => {
                    if let Some(why) = gone(&self.root, identity) {
                        return End::Gone(why);
                    }
                    eprintln!("tidings: watching {}: {e}", self.root.display());
                    return End::Gone("cannot be watched any more".to_owned());
                }
                Ok(Some(Ok(event))) => event,
            };
            if event.need_rescan() {
                eprintln!(
                    "tidings: the kernel's event queue overflowed: changes under {} were lost \
                     (raise fs.inotify.max_queued_events)",
                    self.root.display()
                );
            }
            if event.paths.iter().any(|p| p == &self.root)
                && let Some(why) = gone(&self.root, identity)
            {
                return End::Gone(why);
            }
            if let Err(code) = self.handle(event, &mut moved_from).await {
                return End::Failed(code);
            }
            // A steady trickle never lets the queue run dry: bound the wait in the batch.
            if self.opened.is_some_and(|t| t.elapsed() >= MAX_HOLD)
                && let Err(code) = self.flush().await
            {
                return End::Failed(code);
            }
        }
    }

    /// Turns one watcher event into changes.
    async fn handle(
        &mut self,
        event: notify::Event,
        moved_from: &mut Option<(usize, PathBuf)>,
    ) -> Result<(), ExitCode> {
        let tracker = event.tracker();
        // A pending first half that this event does not complete was a move out.
        if let Some((t, _)) = moved_from.as_ref()
            && !(matches!(event.kind, EventKind::Modify(ModifyKind::Name(_)))
                && tracker == Some(*t))
            && let Some((_, from)) = moved_from.take()
        {
            self.push(Change::Delete(from)).await?;
        }
        match event.kind {
            EventKind::Create(kind) => {
                for path in event.paths {
                    let folder = kind == CreateKind::Folder || path.is_dir();
                    self.push(Change::Create(path.clone())).await?;
                    if folder {
                        self.scan(&path).await?;
                    }
                }
            }
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                for path in event.paths {
                    if !path.is_dir() {
                        self.push(Change::Modify(path)).await?;
                    }
                }
            }
            EventKind::Modify(ModifyKind::Name(mode)) => match (mode, tracker) {
                (RenameMode::From, Some(t)) => {
                    if let Some(path) = event.paths.into_iter().next() {
                        *moved_from = Some((t, path));
                    }
                }
                // A watched folder reporting its own move: its parent reports it too.
                (RenameMode::From, None) => {}
                (RenameMode::To, _) => {
                    let paired = moved_from
                        .as_ref()
                        .is_some_and(|(t, _)| Some(*t) == tracker);
                    if !paired && let Some(path) = event.paths.into_iter().next() {
                        // Moved in from outside the tree.
                        self.push(Change::Create(path.clone())).await?;
                        if path.is_dir() {
                            self.scan(&path).await?;
                        }
                    }
                }
                (RenameMode::Both, _) => {
                    *moved_from = None;
                    let mut paths = event.paths.into_iter();
                    if let (Some(from), Some(to)) = (paths.next(), paths.next()) {
                        self.push(Change::Rename(from, to)).await?;
                    }
                }
                _ => {}
            },
            EventKind::Remove(_) => {
                for path in event.paths {
                    self.push(Change::Delete(path)).await?;
                }
            }
            // Reads, opens, closes and metadata (permissions, times) change no content.
            _ => {}
        }
        Ok(())
    }
    /// Publishes a `create` for everything already in a folder that just appeared.
    async fn scan(&mut self, folder: &Path) -> Result<(), ExitCode> {
        let mut pending = vec![folder.to_owned()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(path.clone());
                }
                self.push(Change::Create(path)).await?;
            }
        }
        Ok(())
    }

    /// The topic (URI) of a path under the root; `None` (with a warning) for a name that is
    /// not UTF-8.
    fn uri(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut uri = self.topic_root.clone();
        for part in rel.components() {
            let Some(part) = part.as_os_str().to_str() else {
                eprintln!(
                    "tidings: skipping {}: the name is not UTF-8",
                    path.display()
                );
                return None;
            };
            uri.push('/');
            uri.push_str(part);
        }
        Some(uri)
    }

    /// Adds one change to the open batch, publishing the batch first when it is full.
    async fn push(&mut self, change: Change) -> Result<(), ExitCode> {
        if self.batch.len() >= self.max_batch {
            self.flush().await?;
        }
        let (ty, from, to) = match &change {
            Change::Create(p) => ("create", p, None),
            Change::Modify(p) => ("modify", p, None),
            Change::Delete(p) => ("delete", p, None),
            Change::Rename(a, b) => ("rename", a, Some(b)),
        };
        let Some(from_uri) = self.uri(from) else {
            return Ok(());
        };
        let to_uri = match to {
            Some(to) => match self.uri(to) {
                Some(u) => u,
                // Renamed to a name that cannot be a topic: for subscribers it is gone.
                None => return Box::pin(self.push(Change::Delete(from.clone()))).await,
            },
            None => String::new(),
        };
        // Within one batch: one delete per path (a folder is reported by its parent and by
        // itself), one create per path (a scanned folder's files may have events too), and
        // no modify right after a modify.
        let first = match ty {
            "delete" => self.deleted.insert(from_uri.clone()),
            "create" => self.created.insert(from_uri.clone()),
            "modify" => self.modified.insert(from_uri.clone()),
            _ => true,
        };
        if !first {
            return Ok(());
        }
        if ty != "delete" {
            self.deleted.remove(&from_uri);
        }
        if ty != "create" {
            self.created.remove(&from_uri);
        }
        if ty != "modify" {
            self.modified.remove(&from_uri);
        }
        let data = Element {
            ty,
            from: &from_uri,
            to: &to_uri,
        };
        // The folder's topic: the URI without its last segment (the root for DIR's own entries).
        let folder = match from_uri.rsplit_once('/') {
            Some((folder, _)) if from_uri.len() > self.topic_root.len() => folder,
            _ => self.topic_root.as_str(),
        };
        match NewEvent::new(folder, ty, &data) {
            Ok(e) => {
                self.opened.get_or_insert_with(tokio::time::Instant::now);
                self.batch.push(e);
            }
            Err(e) => eprintln!("tidings: skipping {}: {e}", from.display()),
        }
        Ok(())
    }

    /// Publishes the open batch; transient failures are retried with backoff, holding the
    /// batch (and so, through the bounded queue, the watcher).
    async fn flush(&mut self) -> Result<(), ExitCode> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
        loop {
            match self.client.publish_batch(&self.batch).await {
                Ok(_) => {
                    if self.warned_retry {
                        eprintln!("tidings: the hub is back; publishing again");
                        self.warned_retry = false;
                    }
                    self.batch.clear();
                    self.opened = None;
                    self.deleted.clear();
                    self.created.clear();
                    self.modified.clear();
                    return Ok(());
                }
                Err(e) if e.is_permanent() => return Err(fail(&e)),
                Err(e) => {
                    if !self.warned_retry {
                        eprintln!("tidings: publishing failed ({e}); retrying");
                        self.warned_retry = true;
                    }
                    tokio::time::sleep(backoff.next_delay(jitter())).await;
                }
            }
        }
    }
}

/// Why the watched directory is no longer the one being watched, if it is not.
fn gone(root: &Path, identity: (u64, u64)) -> Option<String> {
    match std::fs::metadata(root) {
        Err(_) => Some("disappeared (deleted or moved away)".to_owned()),
        Ok(m) if !m.is_dir() || (m.dev(), m.ino()) != identity => {
            Some("was replaced by another file or directory".to_owned())
        }
        Ok(_) => None,
    }
}

/// A number in [0, 1) for the backoff's jitter, from the clock's nanoseconds.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
}

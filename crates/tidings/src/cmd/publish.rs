//! `tidings publish`: one event from the arguments (data from the command line or stdin),
//! or, with `--ndjson`, a stream of events from stdin published in order, in batches, with
//! back-pressure (stdin is read at most two batches ahead of the hub's acknowledgements).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tidings_client::{Client, NewEvent};
use tokio::sync::mpsc;

use super::{EXIT_DATA, HubArgs, block_on, fail};

/// Largest batch body sent, well under the hub's default 1 MiB body limit.
const MAX_BATCH_BYTES: usize = 512 << 10;

/// Publish one event, or a stream of events with --ndjson.
#[derive(Debug, clap::Args)]
#[command(after_help = super::EXIT_CODES)]
pub(crate) struct Args {
    #[command(flatten)]
    hub: HubArgs,
    /// The topic to publish to.
    #[arg(required_unless_present = "ndjson", conflicts_with = "ndjson")]
    topic: Option<String>,
    /// The event type.
    #[arg(value_name = "TYPE", required_unless_present = "ndjson")]
    event_type: Option<String>,
    /// The payload, JSON; read from stdin when absent.
    data: Option<String>,
    /// The entity the event is about.
    #[arg(long, conflicts_with = "ndjson")]
    key: Option<String>,
    /// Read events from stdin, one JSON object per line: {"topic","type","data","key"?}.
    /// They are published in order, in batches; the ids are printed one per line.
    #[arg(long)]
    ndjson: bool,
    /// Events per batch with --ndjson (the hub allows 1000 by default).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
}

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(async move {
        let client = match args.hub.client(None) {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        if args.ndjson {
            return ndjson(&client, usize::from(args.batch)).await;
        }
        let (Some(topic), Some(ty)) = (&args.topic, &args.event_type) else {
            unreachable!("clap requires TOPIC and TYPE without --ndjson");
        };
        one(&client, topic, ty, args.data, args.key.as_deref()).await
    })
}

async fn one(
    client: &Client,
    topic: &str,
    ty: &str,
    data: Option<String>,
    key: Option<&str>,
) -> ExitCode {
    let data = match data {
        Some(d) => d,
        None => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("tidings: failed to read the data from stdin: {e}");
                return ExitCode::from(EXIT_DATA);
            }
            text
        }
    };
    let event = NewEvent::new(topic, ty, &serde_json::Value::Null)
        .and_then(|e| e.with_json(&data))
        .and_then(|e| match key {
            Some(k) => e.key(k),
            None => Ok(e),
        });
    let event = match event {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    match client.publish(&event).await {
        Ok(id) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout is the reader's choice; the event is published. An event a
            // coalescing window holds has no id yet: an empty line.
            writeln!(out, "{}", id.map(|id| id.to_string()).unwrap_or_default()).ok();
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// What the stdin reader hands over.
enum Input {
    Batch(Vec<NewEvent>),
    /// A line that is not an event: its number and why. Nothing after it is read.
    Invalid(u64, String),
}

async fn ndjson(client: &Client, batch: usize) -> ExitCode {
    // Two batches in flight at most: reading stops while the hub is slower than stdin.
    let (tx, mut rx) = mpsc::channel::<Input>(2);
    let reader = std::thread::spawn(move || read_stdin(batch, &tx));
    let progress = Progress::new();
    let mut published = 0u64;
    let mut code = ExitCode::SUCCESS;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(input) = rx.recv().await {
        match input {
            Input::Batch(events) => match client.publish_batch(&events).await {
                Ok(ids) => {
                    for id in &ids {
                        writeln!(out, "{}", id.map(|id| id.to_string()).unwrap_or_default()).ok();
                    }
                    out.flush().ok();
                    published += ids.len() as u64;
                    progress.tick(published);
                }
                Err(e) => {
                    progress.done(published);
                    eprintln!(
                        "tidings: stopped after {published} events; the next {} were not published",
                        events.len()
                    );
                    code = fail(&e);
                    break;
                }
            },
            Input::Invalid(line, why) => {
                progress.done(published);
                eprintln!(
                    "tidings: stdin line {line}: {why}; the {published} events before it were published"
                );
                code = ExitCode::from(EXIT_DATA);
                break;
            }
        }
    }
    // Dropping the receiver stops the reader at its next send.
    drop(rx);
    if code == ExitCode::SUCCESS {
        progress.done(published);
    }
    if reader.join().is_err() {
        eprintln!("tidings: the stdin reader failed");
        return ExitCode::FAILURE;
    }
    code
}

/// Reads stdin line by line into batches of at most `batch` events and
/// `MAX_BATCH_BYTES`; blank lines are skipped.
fn read_stdin(batch: usize, tx: &mpsc::Sender<Input>) {
    let stdin = std::io::stdin().lock();
    let mut events = Vec::with_capacity(batch);
    let mut bytes = 0;
    for (n, line) in stdin.lines().enumerate() {
        let line_no = n as u64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                flush(tx, &mut events);
                tx.blocking_send(Input::Invalid(line_no, format!("unreadable: {e}")))
                    .ok();
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let event = match serde_json::from_str::<NewEvent>(&line) {
            Ok(e) => e,
            Err(e) => {
                flush(tx, &mut events);
                let why = e.to_string();
                let why = why.split(" at line").next().unwrap_or(&why).to_owned();
                tx.blocking_send(Input::Invalid(line_no, why)).ok();
                return;
            }
        };
        if bytes + line.len() > MAX_BATCH_BYTES && !events.is_empty() {
            if !flush(tx, &mut events) {
                return;
            }
            bytes = 0;
        }
        bytes += line.len();
        events.push(event);
        if events.len() >= batch {
            if !flush(tx, &mut events) {
                return;
            }
            bytes = 0;
        }
    }
    flush(tx, &mut events);
}

/// Sends the pending batch, if any; false when the publisher has stopped.
fn flush(tx: &mpsc::Sender<Input>, events: &mut Vec<NewEvent>) -> bool {
    if events.is_empty() {
        return true;
    }
    let batch = std::mem::take(events);
    tx.blocking_send(Input::Batch(batch)).is_ok()
}

/// Progress on stderr: a live counter on a terminal, a line every 10 s otherwise, and a
/// summary at the end.
struct Progress {
    start: Instant,
    last: std::cell::Cell<Instant>,
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            start: now,
            last: std::cell::Cell::new(now),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn tick(&self, published: u64) {
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.last.get().elapsed() < every {
            return;
        }
        self.last.set(Instant::now());
        if self.terminal {
            eprint!("\rtidings: {published} events published");
        } else {
            eprintln!("tidings: {published} events published");
        }
    }

    fn done(&self, published: u64) {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            published as f64 / secs
        } else {
            0.0
        };
        let clear = if self.terminal { "\r\x1b[K" } else { "" };
        eprintln!("{clear}tidings: {published} events published in {secs:.1} s ({rate:.0}/s)");
    }
}

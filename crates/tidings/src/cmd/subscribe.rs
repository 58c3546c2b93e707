//! `tidings subscribe`: a live tail of the hub, as a coloured human view (time received,
//! topic, type, compact data) or as NDJSON. It reconnects and resumes by itself, and says
//! so on stderr. It reads the JSON-lines framing, which carries each event's topic.

use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::value::RawValue;
use tidings_client::{DisconnectCause, Event, Framing, Item, Reset, Since, SubscribeOptions};

use super::{HubArgs, block_on, fail};

/// Tail events live; reconnects and resumes on its own.
#[derive(Debug, clap::Args)]
#[command(after_help = super::EXIT_CODES)]
pub(crate) struct Args {
    #[command(flatten)]
    hub: HubArgs,
    /// Selectors: `*` (everything, the default), `downloads/*` (a prefix), or a topic.
    #[arg(value_name = "SEL")]
    selectors: Vec<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Start after this event id, or at `earliest` retained event [default: now].
    #[arg(long, value_name = "ID|earliest", value_parser = parse_since)]
    since: Option<String>,
    /// A stable client id (sent as X-Client-Id).
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// `pretty`: a human tail, coloured on a terminal; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value = "pretty")]
    output: Output,
    /// Exit after this many events.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
}

/// `earliest` or an event id (`<8 hex digits>-<sequence>`).
fn parse_since(value: &str) -> Result<String, String> {
    if value == "earliest" || value.parse::<tidings_client::EventId>().is_ok() {
        return Ok(value.to_owned());
    }
    Err("expected `earliest` or an event id like `5f1c09a2-42`".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Pretty,
    Json,
}

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(tail(args))
}

async fn tail(args: Args) -> ExitCode {
    let client = match args.hub.client(args.client_id.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let since = match args.since.as_deref() {
        None => Since::Now,
        Some("earliest") => Since::Earliest,
        Some(id) => Since::After(id.to_owned()),
    };
    let options = SubscribeOptions::new(&args.selectors)
        .types(&args.types)
        .since(since)
        .framing(Framing::Ndjson);
    let colour = args.output == Output::Pretty
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let view = View {
        output: args.output,
        colour,
    };
    let stream = client.subscribe_with(options).ready_chunks(1024);
    let mut stream = std::pin::pin!(stream);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut seen = 0u64;
    while let Some(items) = stream.next().await {
        for item in items {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    out.flush().ok();
                    return fail(&e);
                }
            };
            let written = match item {
                Item::Event(e) => {
                    seen += 1;
                    view.event(&mut out, &e)
                }
                Item::Reset(r) => view.reset(&mut out, &r),
                Item::Connected(c) => {
                    match (c.opened_before, &c.resumed_from) {
                        (0, _) => eprintln!("tidings: connected to {}", client.url()),
                        (_, Some(id)) => eprintln!("tidings: reconnected, resuming after {id}"),
                        (_, None) => eprintln!("tidings: reconnected"),
                    }
                    Ok(())
                }
                Item::Disconnected(d) => {
                    match &d.cause {
                        DisconnectCause::ReconnectRequired(reason) => {
                            eprintln!(
                                "tidings: the hub asked to reconnect ({reason}); reconnecting now"
                            );
                        }
                        cause => eprintln!(
                            "tidings: disconnected: {cause}; reconnecting in {:.1} s",
                            d.retry_in.as_secs_f64()
                        ),
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(e) = written {
                return closed_stdout(&e);
            }
            if args.count.is_some_and(|n| seen >= n) {
                return match out.flush() {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => closed_stdout(&e),
                };
            }
        }
        if let Err(e) = out.flush() {
            return closed_stdout(&e);
        }
    }
    ExitCode::SUCCESS
}

/// A reader that went away (`| head`) ends the tail normally; other write errors fail.
fn closed_stdout(e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return ExitCode::SUCCESS;
    }
    eprintln!("tidings: failed to write to stdout: {e}");
    ExitCode::FAILURE
}

/// How items are written.
struct View {
    output: Output,
    colour: bool,
}

/// The JSON-lines shape of an event: the hub's own NDJSON frame.
#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    data: &'a RawValue,
}

const TIME: Style = Style::new().dimmed();
const TOPIC: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
const TYPE: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
const NOTICE: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));

impl View {
    fn event(&self, out: &mut impl Write, e: &Event) -> std::io::Result<()> {
        match self.output {
            Output::Json => {
                let data: &RawValue =
                    serde_json::from_str(&e.data).map_err(std::io::Error::other)?;
                let frame = JsonEvent {
                    id: Some(&e.id),
                    topic: e.topic.as_deref(),
                    event_type: &e.event_type,
                    key: e.key.as_deref(),
                    data,
                };
                serde_json::to_writer(&mut *out, &frame).map_err(std::io::Error::other)?;
                out.write_all(b"\n")
            }
            Output::Pretty => {
                self.time(out)?;
                let topic = e.topic.as_deref().unwrap_or("-");
                self.styled(out, TOPIC, topic)?;
                out.write_all(b" ")?;
                self.styled(out, TYPE, &e.event_type)?;
                writeln!(out, " {}", e.data)
            }
        }
    }

    fn reset(&self, out: &mut impl Write, r: &Reset) -> std::io::Result<()> {
        match self.output {
            Output::Json => {
                let data = serde_json::json!({"reason": r.reason, "cursor": r.cursor});
                let data = serde_json::value::to_raw_value(&data).map_err(std::io::Error::other)?;
                let frame = JsonEvent {
                    id: Some(&r.cursor),
                    topic: None,
                    event_type: "reset",
                    key: None,
                    data: &data,
                };
                serde_json::to_writer(&mut *out, &frame).map_err(std::io::Error::other)?;
                out.write_all(b"\n")
            }
            Output::Pretty => {
                self.time(out)?;
                let text = format!(
                    "reset ({}): events were missed; continuing after {}",
                    r.reason, r.cursor
                );
                self.styled(out, NOTICE, &text)?;
                out.write_all(b"\n")
            }
        }
    }

    /// The time received, UTC, `HH:MM:SS.mmm `.
    fn time(&self, out: &mut impl Write) -> std::io::Result<()> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let day_ms = ms % 86_400_000;
        let text = format!(
            "{:02}:{:02}:{:02}.{:03}",
            day_ms / 3_600_000,
            day_ms / 60_000 % 60,
            day_ms / 1000 % 60,
            day_ms % 1000
        );
        self.styled(out, TIME, &text)?;
        out.write_all(b" ")
    }

    fn styled(&self, out: &mut impl Write, style: Style, text: &str) -> std::io::Result<()> {
        if self.colour {
            write!(out, "{style}{text}{style:#}")
        } else {
            out.write_all(text.as_bytes())
        }
    }
}

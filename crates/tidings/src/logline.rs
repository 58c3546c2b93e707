//! The text of the per-connection log lines (`Connection opened.`, `Connection closed.`):
//! the same bytes tracing-subscriber's `Full` format writes without colours, written here
//! field by field with plain string writes. Every subscribe connection logs two of these,
//! and the library's formatter spent about 10,000 instructions on one (callgrind: its field
//! visitor formats each field name through `nu_ansi_term` and every value through
//! `core::fmt` even with colours off), a third of a whole connect. Every other line, and
//! every line on a colour terminal, is the library's own.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::logtime::CachedUtc;

/// The target of the connection lines (`tidings_server::tracked` logs them).
const CONNECTION_TARGET: &str = "tidings_server::tracked";

/// The text event format: connection lines by hand, the rest by the library's `Full` format.
#[derive(Debug)]
pub(crate) struct Lines {
    full: Format<Full, CachedUtc>,
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines {
            full: tracing_subscriber::fmt::format().with_timer(CachedUtc),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != CONNECTION_TARGET
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.full.format_event(ctx, writer, event);
        }
        // As `Full` writes it: time, the level padded to five, the target, the fields.
        if CachedUtc.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(level(meta.level()))?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// ` INFO ` and the others, with the separators around them.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    }
}

/// Writes `name=value` pairs separated by spaces, the message first as it is: what the
/// library's default field visitor writes with colours off.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// The separator, and the name (`r#type` is written `type`); `None` for a field the
    /// library leaves out (`log.*`, the `log` crate's metadata).
    fn start(&mut self, field: &Field) -> Option<&'static str> {
        let name = field.name();
        if name.starts_with("log.") {
            return None;
        }
        if self.first {
            self.first = false;
        } else {
            self.result = self.result.and_then(|()| self.out.write_char(' '));
        }
        Some(name.strip_prefix("r#").unwrap_or(name))
    }

    fn name(&mut self, name: &str) {
        self.result = self.result.and_then(|()| {
            self.out.write_str(name)?;
            self.out.write_char('=')
        });
    }

    /// `name=value` for an integer field, its digits through `itoa`.
    fn integer(&mut self, field: &Field, value: impl itoa::Integer) {
        if self.result.is_err() {
            return;
        }
        let Some(name) = self.start(field) else {
            return;
        };
        self.name(name);
        let mut buf = itoa::Buffer::new();
        self.result = self
            .result
            .and_then(|()| self.out.write_str(buf.format(value)));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let Some(name) = self.start(field) else {
            return;
        };
        if name == "message" {
            self.result = write_escaped(self.out, value);
            return;
        }
        self.name(name);
        // `{:?}` of a `str`, without `core::fmt` when nothing needs escaping.
        self.result = self.result.and_then(|()| {
            if value
                .bytes()
                .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
            {
                self.out.write_char('"')?;
                self.out.write_str(value)?;
                self.out.write_char('"')
            } else {
                write!(self.out, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_err() {
            return;
        }
        let Some(name) = self.start(field) else {
            return;
        };
        self.name(name);
        let text = if value { "true" } else { "false" };
        self.result = self.result.and_then(|()| self.out.write_str(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let Some(name) = self.start(field) else {
            return;
        };
        if name == "message" {
            // A formatted message: escaped as the library escapes it.
            self.result = write!(Escaping(self.out), "{value:?}");
            return;
        }
        self.name(name);
        self.result = self.result.and_then(|()| write!(self.out, "{value:?}"));
    }
}

/// Writes a message with terminal control characters escaped (ESC, BEL, BS, FF, DEL and the
/// C1 controls), as the library's `EscapeGuard` does; a message without them in one write.
fn write_escaped(out: &mut Writer<'_>, text: &str) -> fmt::Result {
    if text
        .bytes()
        .all(|b| (b' '..0x7f).contains(&b) || b == b'\t' || b == b'\n' || b == b'\r')
    {
        return out.write_str(text);
    }
    Escaping(out).write_str(text)
}

/// A writer escaping terminal control characters on the way through.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                ch if ('\u{80}'..='\u{9f}').contains(&ch) => {
                    write!(self.0, "\\u{{{:x}}}", ch as u32)?;
                }
                ch => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Log output collected in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `emit` logs, through our format and through the library's own.
    fn both(emit: impl Fn()) -> (String, String) {
        let ours = Captured::default();
        let theirs = Captured::default();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(ours.clone())
            .event_format(Lines::new())
            .finish();
        tracing::subscriber::with_default(sub, &emit);
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(CachedUtc)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(sub, &emit);
        let text = |c: Captured| String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
        (text(ours), text(theirs))
    }

    /// Each line without its timestamp (both formats read the clock).
    fn untimed(text: &str) -> Vec<&str> {
        text.lines().map(|l| &l[27..]).collect()
    }

    #[test]
    fn connection_lines_are_the_library_s_text() {
        let remote: Option<std::net::SocketAddr> = "127.0.0.9:4711".parse().ok();
        let endpoint: Arc<str> = Arc::from("events");
        let client_id: Option<&str> = Some("dl-1");
        let (ours, theirs) = both(|| {
            tracing::info!(
                target: CONNECTION_TARGET,
                message = "Connection opened.",
                conn = 7u64,
                endpoint = %endpoint,
                transport = "sse",
                remote = remote.map(tracing::field::display),
                selector = %"topic=a/*,b type=x",
                client_id = client_id,
                none = None::<&str>,
                quoted = "say \"hi\"\n",
                negative = -3i64,
                flag = true,
                r#type = "t",
                debug = ?("x", 1),
            );
            tracing::warn!(target: CONNECTION_TARGET, "formatted {} \x1b[31m\u{9b}", 5);
            tracing::info!(target: CONNECTION_TARGET, message = "bell \x07 and C1 \u{85}");
            tracing::info!(target: "tidings_server::other", answer = 42u64, "another line");
        });
        assert_eq!(untimed(&ours), untimed(&theirs), "{ours}\n{theirs}");
        assert_eq!(ours.lines().count(), 4);
        assert!(
            ours.contains("  INFO tidings_server::tracked: Connection opened. conn=7 endpoint=events transport=\"sse\" remote=127.0.0.9:4711"),
            "{ours}"
        );
        assert!(ours.contains("\\x1b[31m"), "{ours}");
    }

    #[test]
    fn a_span_around_the_line_is_the_library_s_to_write() {
        let (ours, theirs) = both(|| {
            let span = tracing::info_span!("drain", node = 2u64);
            let _in = span.enter();
            tracing::info!(target: CONNECTION_TARGET, message = "Connection closed.", conn = 1u64);
        });
        assert_eq!(untimed(&ours), untimed(&theirs), "{ours}\n{theirs}");
        assert!(ours.contains("drain{node=2}: "), "{ours}");
    }
}

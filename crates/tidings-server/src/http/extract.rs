//! Reading what the edge needs from requests: the credential, the `Host` check against DNS
//! rebinding, and a publish body within its deadline and the budget of body bytes in flight.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST};
use http_body_util::BodyExt as _;
use tidings_proto::ErrorCode;
use tokio::sync::Semaphore;

use super::error::HttpError;
use crate::state::{AppState, Edge};

/// The token of `Authorization: Bearer <token>`, if the header is present.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| HttpError::new(ErrorCode::Unauthorized, "Authorization: not valid text"))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(HttpError::new(
            ErrorCode::Unauthorized,
            "Authorization: expected `Bearer <token>`",
        ));
    }
    Ok(Some(token.trim()))
}

/// Whether the hub answers to the request's `Host` (and the authority of an absolute-form
/// target, which takes its place). Against DNS rebinding: a page on `evil.example` that
/// makes its name resolve to 127.0.0.1 reaches an open hub with `Host: evil.example`, and a
/// same-origin check (Origin against Host) passes. Loopback names are always answered;
/// `allowed_hosts` adds names; without it, an open hub answers nothing else and a hub with
/// tokens answers any name. A request without `Host` does not come from a browser.
pub(crate) fn host(
    headers: &HeaderMap,
    authority: Option<&str>,
    app: &AppState,
) -> Result<(), HttpError> {
    let allowed = &app.edge.allowed_hosts;
    if allowed.is_empty() && !app.auth.is_open() {
        return Ok(());
    }
    let named = headers
        .get_all(HOST)
        .iter()
        .map(|v| v.to_str().ok())
        .chain(authority.map(Some));
    for name in named {
        if !name
            .and_then(host_name)
            .is_some_and(|n| answers(allowed, n))
        {
            return Err(HttpError::new(
                ErrorCode::ForbiddenHost,
                "Host: not a name this hub answers to (loopback names, or one given with \
                 --allowed-host)",
            ));
        }
    }
    Ok(())
}

/// The name of a `Host` value without its port: `localhost:1700` → `localhost`,
/// `[::1]:1700` → `[::1]`. `None` if it is not a plausible host.
fn host_name(value: &str) -> Option<&str> {
    let value = value.trim();
    let name = if value.starts_with('[') {
        let end = value.find(']')?;
        let (name, rest) = value.split_at(end + 1);
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        name
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => value,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Compared without a lowercased copy (the check runs on every request of an open hub); the
/// address parsers take either case.
fn is_loopback_name(name: &str) -> bool {
    const SUFFIX: &[u8] = b".localhost";
    let bytes = name.as_bytes();
    if name.eq_ignore_ascii_case("localhost")
        || (bytes.len() >= SUFFIX.len()
            && bytes[bytes.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
    {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn answers(allowed: &[String], name: &str) -> bool {
    is_loopback_name(name)
        || allowed.iter().any(|a| {
            if a == "*" {
                return true;
            }
            if let Some(suffix) = a.strip_prefix("*.") {
                return name.len() > suffix.len() + 1
                    && name
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()));
            }
            host_name(a).is_some_and(|a| a.eq_ignore_ascii_case(name))
        })
}

/// Bytes of the body budget held by one request; given back when dropped.
#[derive(Debug)]
pub(crate) struct BodyBytes<'a> {
    budget: &'a Semaphore,
    held: usize,
}

impl BodyBytes<'_> {
    /// Takes `n` more bytes of the budget, or says the hub is overloaded.
    fn take(&mut self, n: usize) -> Result<(), HttpError> {
        let overloaded = || {
            HttpError::new(
                ErrorCode::Overloaded,
                "body: too many publish bodies are being received; retry shortly",
            )
        };
        let n32 = u32::try_from(n).map_err(|_| overloaded())?;
        if n32 == 0 {
            return Ok(());
        }
        self.budget
            .try_acquire_many(n32)
            .map_err(|_| overloaded())?
            .forget();
        self.held += n;
        Ok(())
    }
}

impl Drop for BodyBytes<'_> {
    fn drop(&mut self) {
        self.budget.add_permits(self.held);
    }
}

/// Reads a whole request body of at most `max` bytes within `edge.body_timeout`, holding its
/// size from `edge`'s budget of body bytes in flight (so a crowd of stalled uploads cannot
/// hold more memory than that). A declared `Content-Length` is taken from the budget before
/// anything is read; a chunked body takes it as it arrives. Over the budget the answer is
/// 503 `overloaded` at once, not a wait: a waiting request would hold its connection and its
/// partial body, which is what the budget is there to bound.
pub(crate) async fn body<'a>(
    body: Body,
    declared: Option<u64>,
    max: usize,
    edge: &'a Edge,
) -> Result<(Bytes, BodyBytes<'a>), HttpError> {
    let too_large = || {
        HttpError::new(
            ErrorCode::BodyTooLarge,
            format!("body: larger than the limit of {max} bytes"),
        )
    };
    let mut held = BodyBytes {
        budget: &edge.body_bytes,
        held: 0,
    };
    let declared = match declared {
        Some(n) if n > max as u64 => return Err(too_large()),
        Some(n) => Some(n as usize),
        None => None,
    };
    if let Some(n) = declared {
        held.take(n)?;
    }
    let deadline = tokio::time::Instant::now() + edge.body_timeout;
    // A body that arrives as one frame (a small publish: hyper hands over the bytes it read
    // with the head) is kept as that frame, without a copy; a second frame starts the copy.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut body = body;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| {
                HttpError::new(
                    ErrorCode::BodyTimeout,
                    format!(
                        "body: not received within {} ms",
                        edge.body_timeout.as_millis()
                    ),
                )
            })?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| {
            HttpError::new(ErrorCode::InvalidParameter, "body: the upload broke off")
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = first.as_ref().map_or(buf.len(), Bytes::len) + data.len();
        if len > max {
            return Err(too_large());
        }
        if len > held.held {
            held.take(len - held.held)?;
        }
        if buf.is_empty() && first.is_none() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            buf.reserve(declared.unwrap_or(len).max(len));
            buf.extend_from_slice(&first);
        }
        buf.extend_from_slice(&data);
    }
    Ok((first.unwrap_or_else(|| buf.freeze()), held))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:1700"), Some("localhost"));
        assert_eq!(host_name("[::1]:1700"), Some("[::1]"));
        assert_eq!(host_name("[::1]"), Some("[::1]"));
        assert_eq!(host_name("Example.COM."), Some("Example.COM"));
        assert_eq!(host_name("a:b"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name(":80"), None);
        assert_eq!(host_name(""), None);
    }

    #[test]
    fn loopback_names_and_allowed_names_are_answered() {
        for name in [
            "localhost",
            "LOCALHOST",
            "app.localhost",
            "127.0.0.1",
            "127.3.4.5",
            "[::1]",
        ] {
            assert!(answers(&[], name), "{name}");
        }
        for name in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!answers(&[], name), "{name}");
        }
        let allowed = ["hub.example.com:443".to_owned(), "*.example.org".to_owned()];
        assert!(answers(&allowed, "HUB.example.com"));
        assert!(answers(&allowed, "a.example.org"));
        assert!(!answers(&allowed, "example.org"));
        assert!(!answers(&allowed, "evilexample.org"));
        assert!(answers(&["*".to_owned()], "anything"));
        for name in [
            "Localhost",
            "App.LocalHost",
            ".localhost",
            "[::FFFF:127.0.0.1]",
        ] {
            assert!(is_loopback_name(name), "{name}");
        }
        for name in [
            "localhostx",
            "xlocalhost",
            "[::ffff:10.0.0.1]",
            "127.0.0.1x",
        ] {
            assert!(!is_loopback_name(name), "{name}");
        }
    }

    fn edge() -> Edge {
        Edge::new(Duration::from_secs(5), 1 << 20, Vec::new())
    }

    /// A body in `frames`, as hyper would hand it over.
    fn framed(frames: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> =
            frames.iter().map(|f| Ok(Bytes::from_static(f))).collect();
        Body::from_stream(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_of_one_frame_is_kept_and_of_several_is_joined_within_the_limit() {
        let edge = edge();
        let one: &'static [u8] = b"{\"topic\":\"a\"}";
        let (bytes, held) = body(framed(&[one]), Some(one.len() as u64), 64, &edge)
            .await
            .unwrap();
        assert_eq!(bytes.as_ptr(), one.as_ptr(), "one frame is not copied");
        assert_eq!(held.held, one.len());
        drop(held);
        let (bytes, held) = body(framed(&[b"[1,", b"", b"2,", b"3]"]), None, 64, &edge)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"[1,2,3]");
        assert_eq!(held.held, 7);
        drop(held);
        let (bytes, _) = body(framed(&[]), None, 64, &edge).await.unwrap();
        assert!(bytes.is_empty());
        // The limit counts every frame, the first one kept aside included.
        let e = body(framed(&[b"0123", b"4567", b"89"]), None, 9, &edge)
            .await
            .unwrap_err();
        assert_eq!(e.0.error.code, ErrorCode::BodyTooLarge);
        let e = body(framed(&[b"0123456789"]), None, 9, &edge)
            .await
            .unwrap_err();
        assert_eq!(e.0.error.code, ErrorCode::BodyTooLarge);
        // Everything held was given back.
        assert_eq!(edge.body_bytes.available_permits(), 1 << 20);
    }
}

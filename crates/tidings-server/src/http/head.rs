//! The response head, decided in one place for both connection paths: the headers of a
//! streaming answer and of a JSON answer (which hyper's path sets on its `Response`s and the
//! lean path takes from here too), and the serialization of a head for the lean path, which
//! writes its own bytes: status line in the client's HTTP version, `date`, those headers,
//! the framing, and `connection: close` (the lean path never keeps a connection alive).
//! Header features for every answer (CORS, request ids) belong here.

use std::time::SystemTime;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CACHE_CONTROL, CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use crate::endpoint::Cors;

/// Request headers a cross-origin page may send to any route (besides the CORS-safelisted
/// ones): the credential, a publish body's type, the resume cursor and idempotency. Each route
/// group adds its own (an endpoint its client-id header, `/publish` `X-Client-Id` and the
/// cookie-publish header).
const CORS_REQUEST_HEADERS: [&str; 4] = [
    "authorization",
    "content-type",
    "last-event-id",
    "idempotency-key",
];
/// How long a browser may cache a preflight answer.
const CORS_MAX_AGE: &str = "600";

/// Tells a buffering proxy (nginx) to pass a stream's bytes on at once. Parsed once: a name
/// given as `&str` is parsed again on every insert.
static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// The headers of a streaming answer (SSE or NDJSON) of `content_type`.
pub(crate) fn stream(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
}

/// The headers of a JSON answer (errors, publish acknowledgements).
pub(crate) fn json(headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
}

/// The CORS headers of an answer to a request from `origin` under `cors`: the origin echoed
/// with `access-control-allow-credentials: true` when it is allowed, nothing when it is not
/// (the browser then keeps the answer from the page), and `vary: origin` whenever CORS is
/// on, so a shared cache never hands one origin's answer to another.
pub(crate) fn cors(headers: &mut HeaderMap, cors: &Cors, origin: Option<&HeaderValue>) {
    if !cors.is_on() {
        return;
    }
    headers.append(VARY, HeaderValue::from_static("origin"));
    let Some(origin) = origin.filter(|o| o.to_str().is_ok_and(|o| cors.allows(o))) else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), or `None` if the request is not one. An allowed origin
/// asking for allowed headers gets 204 with the methods and headers it may use; anything else
/// gets 403 without CORS headers, so the browser does not send the real request. `extra` are
/// the route's own further allowed request headers.
pub(crate) fn preflight(
    request: &HeaderMap,
    method: &Method,
    cors: &Cors,
    extra: &[HeaderName],
) -> Option<(StatusCode, HeaderMap)> {
    if method != Method::OPTIONS || !request.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let origin = request.get(ORIGIN)?;
    let mut headers = HeaderMap::new();
    let asked_method_ok = request
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| matches!(m, "GET" | "POST"));
    let asked_headers_ok = request
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .all(|v| {
            v.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .all(|h| {
                        let h = h.to_ascii_lowercase();
                        CORS_REQUEST_HEADERS.contains(&h.as_str())
                            || extra.iter().any(|e| e.as_str() == h)
                    })
            })
        });
    let allowed = origin.to_str().is_ok_and(|o| cors.allows(o));
    if !(allowed && asked_method_ok && asked_headers_ok) {
        if cors.is_on() {
            headers.insert(VARY, HeaderValue::from_static("origin"));
        }
        return Some((StatusCode::FORBIDDEN, headers));
    }
    self::cors(&mut headers, cors, Some(origin));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    let mut allow = CORS_REQUEST_HEADERS.join(", ");
    for extra in extra {
        allow.push_str(", ");
        allow.push_str(extra.as_str());
    }
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allow);
    }
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE),
    );
    Some((StatusCode::NO_CONTENT, headers))
}

/// How the lean path delimits the body after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `transfer-encoding: chunked` (HTTP/1.1 clients only).
    Chunked,
    /// `content-length: n`.
    Length(usize),
    /// The end of the body is the end of the connection (an HTTP/1.0 stream).
    UntilClose,
}

/// The bytes of a response head for the lean path. An HTTP/1.0 client is answered in
/// HTTP/1.0 and never gets chunked framing (it could not decode it); every answer says
/// `connection: close`, because the lean path closes after it, except an SSE stream whose
/// `headers` say `connection: keep-alive` (an endpoint with `keep_alive_header`, as the
/// download manager's document lists): its chunked body ends where it says, and the server
/// then closes.
pub(crate) fn encode(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    framing: Framing,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    date(&mut out);
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Chunked if version != Version::HTTP_10 => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Framing::Chunked | Framing::UntilClose => {}
        Framing::Length(n) => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
        }
    }
    if headers.contains_key(http::header::CONNECTION) {
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(b"connection: close\r\n\r\n");
    }
    out
}

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

thread_local! {
    /// The second last formatted on this thread and its `date` text.
    static DATE: std::cell::Cell<(u64, [u8; DATE_LEN])> =
        const { std::cell::Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// Appends the `date` header's value for now, formatted once per second per thread (as hyper
/// caches its own): every lean answer has one, and formatting it cost an allocation and
/// about 1,000 instructions a connect.
fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (cached, mut text) = DATE.get();
    if cached != secs {
        use std::io::Write as _;
        let mut w = &mut text[..];
        if write!(w, "{}", httpdate::HttpDate::from(now)).is_err() || !w.is_empty() {
            // Not the fixed length (a year past 9999): as the library writes it, uncached.
            out.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            return;
        }
        DATE.set((secs, text));
    }
    out.extend_from_slice(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(status: StatusCode, version: Version, framing: Framing) -> String {
        let mut h = HeaderMap::new();
        stream(&mut h, "text/event-stream");
        String::from_utf8(encode(status, version, &h, framing)).unwrap()
    }

    /// The cached `date` is the library's text for the current second, twice in a row.
    #[test]
    fn the_cached_date_is_http_date_of_now() {
        for _ in 0..3 {
            let (mut first, mut second) = (Vec::new(), Vec::new());
            date(&mut first);
            let theirs = httpdate::fmt_http_date(SystemTime::now());
            date(&mut second);
            if theirs.as_bytes() == first.as_slice() && first == second {
                return;
            }
        }
        panic!("the cached date never matched the library's within a second");
    }

    #[test]
    fn a_head_has_date_and_says_it_closes() {
        let t = text(StatusCode::OK, Version::HTTP_11, Framing::Chunked);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\ndate: "), "{t}");
        assert!(t.contains(" GMT\r\n"), "{t}");
        assert!(t.contains("\r\ncontent-type: text/event-stream\r\n"), "{t}");
        assert!(t.contains("\r\ncache-control: no-cache\r\n"), "{t}");
        assert!(t.contains("\r\nx-accel-buffering: no\r\n"), "{t}");
        assert!(
            t.ends_with("\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{t}"
        );
    }

    #[test]
    fn an_http_10_client_gets_http_10_and_no_chunks() {
        let t = text(StatusCode::OK, Version::HTTP_10, Framing::Chunked);
        assert!(t.starts_with("HTTP/1.0 200 OK\r\n"), "{t}");
        assert!(!t.contains("chunked"), "{t}");
        assert!(t.ends_with("\r\nconnection: close\r\n\r\n"), "{t}");
        let t = text(
            StatusCode::SERVICE_UNAVAILABLE,
            Version::HTTP_10,
            Framing::Length(12),
        );
        assert!(t.starts_with("HTTP/1.0 503 Service Unavailable\r\n"), "{t}");
        assert!(t.contains("\r\ncontent-length: 12\r\n"), "{t}");
    }

    fn app_cors() -> Cors {
        Cors::new(vec!["https://app.example".into()])
    }

    #[test]
    fn cors_echoes_only_an_allowed_origin_and_always_varies() {
        let allowed = HeaderValue::from_static("https://app.example");
        let mut h = HeaderMap::new();
        cors(&mut h, &app_cors(), Some(&allowed));
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[VARY], "origin");
        for other in ["https://app.example.evil", "http://app.example", "null"] {
            let mut h = HeaderMap::new();
            cors(&mut h, &app_cors(), Some(&HeaderValue::from_static(other)));
            assert!(!h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN), "{other}");
            assert_eq!(h[VARY], "origin");
        }
        let mut h = HeaderMap::new();
        cors(&mut h, &Cors::default(), Some(&allowed));
        assert!(h.is_empty(), "CORS off: no headers at all");
    }

    #[test]
    fn preflights_allow_the_listed_headers_for_allowed_origins_only() {
        let ask = |origin: &'static str, method: &'static str, headers: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(ORIGIN, HeaderValue::from_static(origin));
            h.insert(
                ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static(method),
            );
            if !headers.is_empty() {
                h.insert(
                    ACCESS_CONTROL_REQUEST_HEADERS,
                    HeaderValue::from_static(headers),
                );
            }
            let extra = [
                HeaderName::from_static("x-cr-client-id"),
                HeaderName::from_static("x-tidings-publish"),
            ];
            preflight(&h, &Method::OPTIONS, &app_cors(), &extra)
        };
        let (status, h) = ask(
            "https://app.example",
            "GET",
            "Authorization, Last-Event-ID, X-Cr-Client-Id",
        )
        .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let allow = h[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for name in [
            "authorization",
            "last-event-id",
            "x-cr-client-id",
            "x-tidings-publish",
        ] {
            assert!(allow.contains(name), "{allow}");
        }
        let (status, _) = ask(
            "https://app.example",
            "POST",
            "content-type, x-tidings-publish",
        )
        .unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        for (origin, method, headers) in [
            ("https://evil.example", "GET", ""),
            ("https://app.example", "DELETE", ""),
            ("https://app.example", "POST", "x-unknown"),
            // Only the route's own client-id header is allowed.
            ("https://app.example", "GET", "x-client-id"),
        ] {
            let (status, h) = ask(origin, method, headers).unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{origin} {method} {headers}");
            assert!(!h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        }
        // Not a preflight: a plain OPTIONS, or a GET.
        assert!(preflight(&HeaderMap::new(), &Method::OPTIONS, &app_cors(), &[]).is_none());
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static("https://app.example"));
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        assert!(preflight(&h, &Method::GET, &app_cors(), &[]).is_none());
    }
}

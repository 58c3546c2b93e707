//! The response head, decided in one place for both connection paths: the headers of a
//! streaming answer and of a JSON answer (which hyper's path sets on its `Response`s and the
//! lean path takes from here too), and the serialization of a head for the lean path, which
//! writes its own bytes: status line in the client's HTTP version, `date`, those headers,
//! the framing, and `connection: close` (the lean path never keeps a connection alive).
//! Header features for every answer (CORS, request ids) belong here.

use std::time::SystemTime;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode, Version};

/// The headers of a streaming answer (SSE or NDJSON) of `content_type`.
pub(crate) fn stream(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The headers of a JSON answer (errors, publish acknowledgements).
pub(crate) fn json(headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
/// `connection: close`, because the lean path closes after it.
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
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
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
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(status: StatusCode, version: Version, framing: Framing) -> String {
        let mut h = HeaderMap::new();
        stream(&mut h, "text/event-stream");
        String::from_utf8(encode(status, version, &h, framing)).unwrap()
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
}

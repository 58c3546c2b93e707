//! Client ids at the edge: read from a subscribe request (the endpoint's header, or the
//! `clientId` query parameter for browsers) or a publish (`X-Client-Id`, or an event's
//! `origin` field), and checked: a UUID where the endpoint requires one, otherwise printable
//! ASCII of at most `MAX_CLIENT_ID_BYTES`. A bad one is a 400 `invalid_client_id` naming where
//! it came from; the value itself is not echoed (it may be a secret-looking token).

use http::HeaderMap;
use tidings_proto::{ErrorCode, Key};

use super::error::HttpError;

/// Longest client id.
pub(crate) const MAX_CLIENT_ID_BYTES: usize = 64;

/// Checks a client id that came from `source` (a header or field name, for the error).
pub(crate) fn parse(value: &[u8], source: &str, uuid: bool) -> Result<Key, HttpError> {
    let bad = |why: &str| HttpError::new(ErrorCode::InvalidClientId, format!("{source}: {why}"));
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if uuid {
        if !is_uuid(value) {
            return Err(bad(
                "must be a UUID (8-4-4-4-12 hexadecimal digits, e.g. 3f7c3393-eecf-4c2a-9a6b-0123456789ab)",
            ));
        }
    } else {
        if value.len() > MAX_CLIENT_ID_BYTES {
            return Err(bad(&format!(
                "is {} bytes, longer than {MAX_CLIENT_ID_BYTES}",
                value.len()
            )));
        }
        if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(bad("must be printable ASCII without spaces"));
        }
    }
    let text = std::str::from_utf8(value).map_err(|_| bad("must be printable ASCII"))?;
    Key::new(text).map_err(|e| bad(&e.to_string()))
}

/// The canonical textual form: 8-4-4-4-12 hex digits, either case.
fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The client id of a subscribe request: `header` wins over the `clientId` parameter. Both
/// are checked: a bad parameter is refused even beside a good header.
pub(crate) fn of_subscribe(
    headers: &HeaderMap,
    header: &http::HeaderName,
    query: Option<&str>,
    uuid: bool,
) -> Result<Option<Key>, HttpError> {
    let from_query = query
        .map(|q| parse(q.as_bytes(), "clientId", uuid))
        .transpose()?;
    match headers.get(header) {
        Some(v) => parse(v.as_bytes(), header.as_str(), uuid).map(Some),
        None => Ok(from_query),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_printable_ids() {
        let id = "3f7c3393-eecf-4c2a-9a6b-0123456789AB";
        assert!(parse(id.as_bytes(), "X-Cr-Client-Id", true).is_ok());
        for bad in [
            "3f7c3393eecf4c2a9a6b0123456789ab",
            "3f7c3393-eecf-4c2a-9a6b-0123456789ag",
            "",
        ] {
            let e = parse(bad.as_bytes(), "X-Cr-Client-Id", true).unwrap_err();
            assert_eq!(e.0.error.code, ErrorCode::InvalidClientId);
            assert!(
                e.0.error.message.starts_with("X-Cr-Client-Id: "),
                "{}",
                e.0.error.message
            );
        }
        assert!(parse(b"tab-1", "clientId", false).is_ok());
        assert!(parse(&[b'a'; 64], "clientId", false).is_ok());
        assert!(parse(&[b'a'; 65], "clientId", false).is_err());
        assert!(parse(b"a b", "clientId", false).is_err());
        assert!(parse("é".as_bytes(), "clientId", false).is_err());
        assert!(parse(b"a\x7f", "clientId", false).is_err());
    }

    #[test]
    fn the_header_wins_but_a_bad_parameter_is_refused_beside_it() {
        let name = http::HeaderName::from_static("x-client-id");
        let mut headers = HeaderMap::new();
        headers.insert(&name, http::HeaderValue::from_static("from-header"));
        let id = of_subscribe(&headers, &name, Some("from-query"), false).unwrap();
        assert_eq!(id.unwrap().as_str(), "from-header");
        let e = of_subscribe(&headers, &name, Some("a b"), false).unwrap_err();
        assert_eq!(e.0.error.code, ErrorCode::InvalidClientId);
        assert!(
            e.0.error.message.starts_with("clientId: "),
            "{}",
            e.0.error.message
        );
    }
}

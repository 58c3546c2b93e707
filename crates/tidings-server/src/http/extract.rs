//! Reading credentials from requests.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tidings_proto::ErrorCode;

use super::error::HttpError;

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

//! Reading credentials and cursors from requests.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tidings_auth::Grant;
use tidings_proto::ErrorCode;

use super::error::HttpError;
use crate::state::AppState;

/// The grant of the caller, from `Authorization: Bearer <token>`.
pub(crate) fn grant(state: &AppState, headers: &HeaderMap) -> Result<Arc<Grant>, HttpError> {
    let bearer = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                HttpError::new(ErrorCode::Unauthorized, "Authorization: not valid text")
            })?;
            let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(HttpError::new(
                    ErrorCode::Unauthorized,
                    "Authorization: expected `Bearer <token>`",
                ));
            }
            Some(token.trim())
        }
    };
    Ok(state.auth.authenticate(bearer)?)
}

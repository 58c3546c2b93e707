//! `POST /tickets`: trades the caller's credential for a one-time connect ticket, for a
//! browser `EventSource` that cannot send `Authorization`. An optional body
//! `{"topics": [selectors]}` narrows it; each selector must lie inside the caller's subscribe
//! grant. The ticket carries subscribe rights only, and the caller's credential id and expiry.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use serde::{Deserialize, Serialize};
use tidings_auth::{Caller, Grant};
use tidings_proto::{ErrorCode, Pattern, Selector};

use super::error::HttpError;
use super::extract;
use crate::state::AppState;

/// Largest `POST /tickets` body.
const MAX_BODY: usize = 16 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// The answer.
#[derive(Serialize)]
pub(crate) struct TicketResponse {
    ticket: String,
    expires_in: u64,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TicketResponse>, HttpError> {
    // A ticket is minted from a bearer token (header) or the cookie: minting changes nothing
    // a cross-site page could use, since it cannot read the answer without CORS.
    let presented = match extract::bearer(&headers)? {
        Some(token) => Some(token),
        None => state.credentials.cookie(&headers),
    };
    let caller = state.identify(presented)?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (bytes, _held) = extract::body(body, declared, MAX_BODY, &state.edge).await?;
    let topics = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let request: TicketRequest = serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::new(ErrorCode::MalformedJson, format!("body: {e}")))?;
        request.topics
    };
    let ticket_caller = narrow(&caller, topics, state.hub.limits().max_patterns)?;
    let ticket = state.credentials.tickets().issue(ticket_caller)?;
    Ok(Json(TicketResponse {
        ticket,
        expires_in: state.credentials.tickets().ttl_secs(),
    }))
}

/// The caller a ticket stands for: subscribe rights only, narrowed to `topics` if given.
fn narrow(
    caller: &Caller,
    topics: Option<Vec<String>>,
    max_patterns: usize,
) -> Result<Caller, HttpError> {
    let subscribe = match topics {
        None => caller.grant.subscribe.clone(),
        Some(topics) => {
            if topics.is_empty() || topics.len() > max_patterns {
                return Err(HttpError::new(
                    ErrorCode::InvalidTopic,
                    format!("topics: give 1 to {max_patterns} selectors"),
                ));
            }
            let patterns = topics
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Pattern::parse(t).map_err(|e| {
                        HttpError::new(ErrorCode::InvalidTopic, format!("topics[{i}] `{t}`: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let selector = Selector {
                patterns,
                types: vec![],
            };
            if let Err(p) = caller.grant.check_subscribe(&selector) {
                return Err(HttpError::new(
                    ErrorCode::Forbidden,
                    format!("topics: `{p}` is not within what this credential may subscribe to"),
                ));
            }
            selector.patterns
        }
    };
    Ok(Caller {
        grant: Arc::new(Grant {
            name: caller.grant.name.clone(),
            publish: vec![],
            subscribe,
            admin: false,
        }),
        id: caller.id,
        expires_at: caller.expires_at,
    })
}

//! Per-connection delivery: turning a `Subscription` into the bytes of one wire format. Every
//! transport takes the same `Step`s from the engine and encodes each event once per format
//! (cached on the event), writing everything ready for a connection at once.

pub(crate) mod frame;
pub(crate) mod poll;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod ws;

use tidings_proto::EventId;
use tidings_proto::api::{ReconnectNotice, ResetNotice};

use tidings_core::{CloseReason, ResetReason};

pub(crate) fn reset_notice(reason: ResetReason, resume_after: EventId) -> ResetNotice {
    ResetNotice {
        reason: reason.as_str().to_owned(),
        cursor: resume_after.to_string(),
    }
}

/// The payload of `subscribed` / `resumed`: the client id, and the id the stream continues
/// after.
pub(crate) fn session_notice(client_id: &str, cursor: EventId) -> serde_json::Value {
    serde_json::json!({ "clientId": client_id, "cursor": cursor.to_string() })
}

/// The payload of the `snapshot` handoff: the id the stream continues after.
pub(crate) fn snapshot_notice(cursor: EventId) -> serde_json::Value {
    serde_json::json!({ "cursor": cursor.to_string() })
}

/// The notice a stream ends with. History that cannot be read is said as `store_unavailable`,
/// the code a publish or long-poll gets for the same cause.
pub(crate) fn reconnect_notice(reason: CloseReason) -> ReconnectNotice {
    let reason = match reason {
        CloseReason::StoreFailed => tidings_proto::ErrorCode::StoreUnavailable.as_str(),
        other => other.as_str(),
    };
    ReconnectNotice {
        reason: reason.to_owned(),
    }
}

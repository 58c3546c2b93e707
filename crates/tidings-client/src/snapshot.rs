//! `GET /snapshot`: the current state under a selector (the newest event per key) with the
//! cursor a subscription continues from.

use crate::client::{Client, MAX_ERROR_BYTES, read_capped};
use crate::error::{Error, ErrorKind};
use crate::subscribe::{Event, Since, selector_path};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Largest snapshot answer read (the hub's own ceiling, `snapshot.max_bytes`, is 8 MiB by
/// default; its JSON adds the ids, topics and keys).
const MAX_SNAPSHOT_BYTES: usize = 64 << 20;

/// The current state under a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The last stored event the snapshot reflects: subscribe with
    /// [`Since::After`]`(cursor)` to continue from exactly there.
    pub cursor: String,
    /// The newest event of each key, oldest first (each with its topic and key).
    pub events: Vec<Event>,
}

impl Snapshot {
    /// Where a subscription continues from this snapshot.
    pub fn since(&self) -> Since {
        Since::After(self.cursor.clone())
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    cursor: String,
    #[serde(borrow)]
    events: Vec<AnswerEvent<'a>>,
}

#[derive(Deserialize)]
struct AnswerEvent<'a> {
    id: String,
    topic: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl Client {
    /// The newest event per key under `selectors` (and of `types`, when given), with the
    /// cursor to subscribe from (`GET /snapshot`). An answer larger than the hub's
    /// `snapshot.max_bytes` is refused with `snapshot_too_large`: narrow the selector.
    pub async fn snapshot<S: AsRef<str>, T: AsRef<str>>(
        &self,
        selectors: impl IntoIterator<Item = S>,
        types: impl IntoIterator<Item = T>,
    ) -> Result<Snapshot, Error> {
        let selectors: Vec<S> = selectors.into_iter().collect();
        let types: Vec<T> = types.into_iter().collect();
        let path = selector_path("/snapshot", &selectors, &types, &[])?;
        let resp = self
            .request(reqwest::Method::GET, &path)
            .timeout(self.inner.request_timeout)
            .send()
            .await
            .map_err(Error::from_reqwest)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = read_capped(resp, MAX_ERROR_BYTES, true).await?;
            return Err(Error::from_answer(status, &body));
        }
        let body = read_capped(resp, MAX_SNAPSHOT_BYTES, false).await?;
        let answer: Answer<'_> = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                "the snapshot answer is not `{\"cursor\":…,\"events\":[…]}`",
            )
            .with_source(e)
        })?;
        Ok(Snapshot {
            cursor: answer.cursor,
            events: answer
                .events
                .into_iter()
                .map(|e| Event {
                    id: e.id,
                    event_type: e.event_type,
                    topic: Some(e.topic),
                    key: e.key,
                    data: e.data.get().to_owned(),
                })
                .collect(),
        })
    }
}

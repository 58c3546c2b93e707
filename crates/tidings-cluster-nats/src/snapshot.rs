//! A cluster's snapshot: the latest event per `(topic, key)` under a selector, read from the
//! stream's last message per subject (a keyed event's subject ends with its key's token,
//! `subject::keyed`), exact as of one stream sequence, as every node reads the same stream.
//!
//! Why `through` is exact: the read first notes the stream's last sequence `L`, then creates
//! a consumer delivering the last message of each subject under the selector's filter; its
//! pending count at creation is that set, delivered first and in stream order. Let `S` be
//! the highest of `L` and the sequences read. Every event up to `S` was in the stream when
//! the consumer was created (`L` before it, and the stream hands out sequences in order), so
//! the last message of its subject at that moment, at or after it, was read; and nothing
//! read is after `S`. So the rows are the table exactly as of `S`, as on one node.
//!
//! The rules (`SnapshotRules`) apply at read time: an event of a delete type is its key's
//! last message, so the key has no row; `max_keys` keeps the rows updated last among those
//! the read matched (one node bounds the whole table instead). A row lives as long as the
//! stream keeps its message: the stream's retention applies to rows too, unlike on one node.

use std::collections::VecDeque;

use async_nats::jetstream::{consumer, stream};
use futures_util::StreamExt as _;
use tidings_core::store::{SnapshotRead, SnapshotRules, select};
use tidings_core::{SharedEvent, StoreError};
use tidings_proto::{Epoch, Selector};

use crate::{FETCH_MAX, envelope, io, one_shot, subject};

/// Reads the snapshot of `selector` (at most `max_bytes` of rows, else `overflow`).
pub(crate) async fn read(
    stream: stream::Stream,
    prefix: String,
    epoch: Epoch,
    rules: SnapshotRules,
    selector: Selector,
    max_bytes: usize,
) -> Result<SnapshotRead, StoreError> {
    let last = stream
        .get_info()
        .await
        .map_err(|e| io("read the stream", e))?
        .state
        .last_sequence;
    let config = one_shot(
        subject::filter(&prefix, &selector),
        consumer::DeliverPolicy::LastPerSubject,
    );
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| io("open a snapshot consumer", e))?;
    let name = consumer.cached_info().name.clone();
    let pending = consumer.cached_info().num_pending;
    let result = collect(
        &consumer, pending, &prefix, epoch, &rules, &selector, max_bytes,
    )
    .await;
    tokio::spawn(async move { drop(stream.delete_consumer(&name).await) });
    let (through, rows, overflow) = result?;
    if overflow {
        return Ok(SnapshotRead {
            through: through.max(last),
            events: Vec::new(),
            overflow: true,
        });
    }
    Ok(select(through.max(last), rows.into(), &selector, max_bytes))
}

/// Reads the `pending` messages of the consumer's first set: the highest sequence read, the
/// rows kept, and whether they passed `max_bytes`.
async fn collect(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    pending: u64,
    prefix: &str,
    epoch: Epoch,
    rules: &SnapshotRules,
    selector: &Selector,
    max_bytes: usize,
) -> Result<(u64, VecDeque<SharedEvent>, bool), StoreError> {
    let mut through = 0;
    let mut read = 0u64;
    // In stream order, so the front is the row updated longest ago.
    let mut rows: VecDeque<SharedEvent> = VecDeque::new();
    let mut bytes = 0usize;
    while read < pending {
        let want = usize::try_from(pending - read).map_or(FETCH_MAX, |n| n.min(FETCH_MAX));
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| io("read the snapshot", e))?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| io("read the snapshot", e))?;
            got += 1;
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            through = through.max(seq);
            let Some(event) =
                envelope::decode(prefix, epoch, seq, msg.subject.as_str(), &msg.payload)
            else {
                continue;
            };
            if event.event.key.is_none()
                || rules.deletes(&event.event.event_type)
                || !selector.matches(&event.event.topic, &event.event.event_type)
            {
                continue;
            }
            bytes = bytes.saturating_add(event.size());
            rows.push_back(event);
            if rows.len() > rules.max_keys
                && let Some(oldest) = rows.pop_front()
            {
                bytes -= oldest.size();
            }
            if bytes > max_bytes {
                // Only `max_keys` could take rows out again, and it keeps the newest: a read
                // already past the bound with room for more keys is refused whole.
                if rows.len() < rules.max_keys {
                    return Ok((through, VecDeque::new(), true));
                }
            }
        }
        read += got;
        if got == 0 {
            // Messages the set counted were removed meanwhile (retention): what is read is
            // still exact as of the stream's last sequence before the consumer.
            break;
        }
    }
    Ok((through, rows, bytes > max_bytes))
}

//! Errors of the engine's two operations, each mapped to a stable wire code.

use tidings_proto::ErrorCode;

use crate::store::StoreError;

/// Why a publish was refused. Nothing of a refused batch is stored or delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The batch is empty.
    #[error("a publish needs at least one event")]
    Empty,
    /// More events than `Limits::max_batch_events`.
    #[error("batch has {count} events; the limit is {max}")]
    BatchTooLarge {
        /// Events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One event's data is over `Limits::max_data_bytes`.
    #[error("{field} is {size} bytes; the limit is {max}")]
    EventTooLarge {
        /// Which field, e.g. `events[3].data`.
        field: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The idempotency key is too long.
    #[error("Idempotency-Key is {size} bytes; the limit is {max}")]
    IdempotencyKeyTooLong {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The idempotency key was used before for a different batch.
    #[error("Idempotency-Key was already used for a different batch")]
    IdempotencyConflict,
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The store failed; nothing of this batch was delivered.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PublishError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            PublishError::Empty => ErrorCode::InvalidEvent,
            PublishError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            PublishError::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            PublishError::IdempotencyKeyTooLong { .. } => ErrorCode::InvalidParameter,
            PublishError::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            PublishError::ShuttingDown => ErrorCode::ShuttingDown,
            PublishError::Store(_) => ErrorCode::StoreUnavailable,
        }
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubscribeError {
    /// No patterns.
    #[error("topic: at least one selector is required")]
    NoPatterns,
    /// Too many patterns or types.
    #[error("{field}: {count} given; the limit is {max}")]
    TooMany {
        /// `topic` or `type`.
        field: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl SubscribeError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SubscribeError::NoPatterns | SubscribeError::TooMany { .. } => ErrorCode::InvalidTopic,
            SubscribeError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    /// The rows under the selector take more than `Limits::snapshot_max_bytes`.
    #[error(
        "topic: the snapshot of this selector is larger than {max} bytes; narrow topic or type"
    )]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The selector is not acceptable (as for a subscription).
    #[error(transparent)]
    Selector(#[from] SubscribeError),
    /// The store could not read the table.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SnapshotError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SnapshotError::TooLarge { .. } => ErrorCode::SnapshotTooLarge,
            SnapshotError::Selector(e) => e.code(),
            SnapshotError::Store(_) => ErrorCode::StoreUnavailable,
        }
    }
}

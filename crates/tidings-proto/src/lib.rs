//! The Tidings wire contract, shared by the server and every client: validated topics and
//! selectors, event ids with their epoch, the event itself, the SSE codec and the stable error
//! codes. Pure: serde and bytes, no I/O, no async runtime.
#![deny(missing_docs)]

pub mod api;
pub mod error;
pub mod event;
pub mod json;
pub mod sse;
pub mod topic;

pub use error::{ApiError, ErrorCode};
pub use event::{Cursor, Epoch, Event, EventId, ParseIdError};
pub use topic::{EventType, Key, Pattern, Selector, Topic, ValidationError};

//! The HTTP edge: routes, request parsing, auth extraction and error answers.

pub(crate) mod error;
mod extract;
mod health;
pub(crate) mod publish;
pub(crate) mod router;
pub(crate) mod subscribe;

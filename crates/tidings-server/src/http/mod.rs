//! The HTTP edge: routes, request parsing, auth extraction and error answers.

pub(crate) mod admin;
pub(crate) mod client_id;
mod dashboard;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod front;
pub(crate) mod head;
mod health;
mod openapi;
mod ops;
pub(crate) mod publish;
pub(crate) mod router;
mod snapshot;
pub(crate) mod subscribe;
mod tickets;

#[cfg(test)]
mod tests;

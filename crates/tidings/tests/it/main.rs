//! End-to-end tests of the `tidings` binary: each module starts real server processes and
//! talks to them over HTTP and raw sockets.

mod auth;
mod config;
mod durability;
mod jwt;
mod publish;
mod resume;
mod robustness;
mod slow;
mod subscribe;
mod support;
mod transports;

//! End-to-end tests of the `tidings` binary: each module starts real server processes and
//! talks to them over HTTP and raw sockets.

mod auth;
mod autobahn;
mod browser;
mod cli;
mod client;
mod cluster;
mod cluster_faults;
mod cluster_partition;
mod coalescing;
mod config;
mod credentials;
mod dashboard;
mod durability;
mod edge;
mod embedded;
mod envelope;
mod jwt;
mod openapi;
mod ops;
mod profiles;
mod profiles_browser;
mod publish;
mod reconnect;
mod resume;
mod robustness;
mod schema;
mod security;
mod sessions;
mod slow;
mod snapshot;
mod store;
mod subscribe;
mod support;
mod transports;
mod watch;

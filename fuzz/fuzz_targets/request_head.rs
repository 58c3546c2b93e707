//! Fuzz target: the lean path's request-head reader and classifier, and the subscribe
//! preparation of every head it takes (`tidings_server::fuzzing::request_head`).
#![no_main]

libfuzzer_sys::fuzz_target!(|head: &[u8]| tidings_server::fuzzing::request_head(head));

//! Fuzz target: the publish body parser, JSON to validated events
//! (`tidings_server::fuzzing::publish_body`).
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| tidings_server::fuzzing::publish_body(body));

//! Fuzz target: the config loader, TOML text to a validated `Config`
//! (`tidings_server::fuzzing::config_toml`). Bytes that are not UTF-8 are not a file the
//! loader could be given (it reads a `String`), so they are skipped.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        tidings_server::fuzzing::config_toml(text);
    }
});

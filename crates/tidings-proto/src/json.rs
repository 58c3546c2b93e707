//! JSON helpers: compacting an already-validated JSON text without reordering or reparsing it
//! into a tree, so payloads pass through byte for byte apart from insignificant whitespace.

use serde_json::value::RawValue;

/// Parses `text` as one JSON value and returns it compacted (whitespace outside strings
/// removed). Key order, number spelling and string escapes are kept exactly.
pub fn compact(text: &str) -> Result<Box<RawValue>, serde_json::Error> {
    let raw: &RawValue = serde_json::from_str(text)?;
    Ok(compact_raw(raw))
}

/// Compacts a value already known to be valid JSON.
pub fn compact_raw(raw: &RawValue) -> Box<RawValue> {
    let text = raw.get();
    if !text
        .bytes()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    RawValue::from_string(out).expect("removing whitespace outside strings keeps JSON valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_without_touching_strings_or_order() {
        let c = compact("{ \"B\" : [1, 2.50 ,\n\"a b\\\" c\"],\t\"A\": {} }").unwrap();
        assert_eq!(c.get(), r#"{"B":[1,2.50,"a b\" c"],"A":{}}"#);
        assert_eq!(compact(" 7 ").unwrap().get(), "7");
        assert!(compact("{").is_err());
        assert!(compact("1 2").is_err());
    }
}

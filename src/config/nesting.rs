//! How deep free-form input (`context`) may nest: one limit, checked at the front door, so
//! that what is accepted can be written into the records and read back by `session show`,
//! finalize and compress. Pure: it looks at parsed values and at input text, nothing else.

use serde_json::Value;

/// The most levels of arrays/objects `context` may nest (`{}` is 1, a scalar 0). The records
/// wrap it in up to three more (pack, operation list, operation document), and serde_json reads
/// at most 127: 64 keeps every record, result and payload that quotes it well within that.
pub const MAX_CONTEXT_DEPTH: usize = 64;

/// Levels of arrays/objects in `v`. Values come from serde_json, which parses at most 127
/// levels, so the recursion is bounded.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The refusal of a `context` nested deeper than `MAX_CONTEXT_DEPTH`.
pub fn check_context(context: &Value) -> Result<(), String> {
    let d = depth(context);
    if d > MAX_CONTEXT_DEPTH {
        return Err(too_deep("context", Some(d)));
    }
    Ok(())
}

fn too_deep(key: &str, levels: Option<usize>) -> String {
    let how = match levels {
        Some(d) => format!("nested {d} levels deep"),
        None => "nested too deep to parse".into(),
    };
    format!(
        "key '{key}': {how}; at most {MAX_CONTEXT_DEPTH} levels of lists/dicts are allowed (the records must stay readable)"
    )
}

/// serde_json's refusal of input nested past its limit, explained with the top-level key it
/// happened under (None for any other error, or when the key cannot be told).
pub fn explain_parse_error(text: &[u8], e: &serde_json::Error) -> Option<String> {
    if !e.to_string().starts_with("recursion limit exceeded") {
        return None;
    }
    let at = offset_of(text, e.line(), e.column())?;
    top_level_key_at(&text[..at.min(text.len())]).map(|k| too_deep(&k, None))
}

/// The byte offset of a 1-based line and column.
fn offset_of(text: &[u8], line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].iter().position(|&b| b == b'\n')? + 1;
    }
    Some(start + column)
}

/// The key of the top-level object under which the end of `prefix` lies: a small scan that
/// knows strings, escapes and nesting, enough for text serde_json got this far into.
fn top_level_key_at(prefix: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut key: Option<String> = None;
    let mut expect_key = false;
    let mut i = 0;
    while i < prefix.len() {
        match prefix[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < prefix.len() && prefix[i] != b'"' {
                    i += if prefix[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    let raw = &prefix[start..i.min(prefix.len())];
                    key = serde_json::from_slice::<String>(&[b"\"", raw, b"\""].concat()).ok();
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && prefix[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    key.filter(|_| depth > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_counts_lists_and_dicts() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": []}]})), 4);
        assert_eq!(depth(&nested(64)), 64);
        assert!(check_context(&nested(64)).is_ok());
        let e = check_context(&nested(65)).unwrap_err();
        assert!(e.starts_with("key 'context': nested 65 levels deep"), "{e}");
        assert!(e.contains("at most 64"), "{e}");
    }

    #[test]
    fn a_parse_past_serde_jsons_limit_names_the_top_level_key() {
        let deep = nested(200).to_string();
        for text in [
            format!(r#"{{"max_attempts": 3, "context": {deep}}}"#),
            format!("{{\n \"na\\\"me\": \"x,{{[\",\n \"context\":\n {deep}}}"),
        ] {
            let e = serde_json::from_str::<Value>(&text).unwrap_err();
            let msg = explain_parse_error(text.as_bytes(), &e).expect("explained");
            assert!(msg.starts_with("key 'context': nested too deep"), "{msg}");
        }
        let e = serde_json::from_str::<Value>("{\"a\": [1,}").unwrap_err();
        assert_eq!(explain_parse_error(b"{\"a\": [1,}", &e), None);
    }
}

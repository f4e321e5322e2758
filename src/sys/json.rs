//! JSON as slipway's files use it: `//` keys are comments, and a value read by serde names
//! the key that was wrong (treefiles, the health and update settings).

use serde_json::Value;

/// Remove every key starting with `//`, at any depth (JSON has no comments).
pub fn strip_comments(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with("//"));
            m.values_mut().for_each(strip_comments);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_comments),
        _ => {}
    }
}

/// A value serde could not read: where (`packages[2]`, `None` for the whole value) and why.
#[derive(Debug)]
pub struct KeyError {
    pub path: Option<String>,
    pub error: serde_json::Error,
}

/// `v` read into `T`; the error says which key.
pub fn deserialize<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, KeyError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        KeyError {
            path: (path != ".").then_some(path),
            error: e.into_inner(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        a: Vec<u32>,
    }

    #[test]
    fn comments_go_at_any_depth_and_errors_name_the_key() {
        let mut v = serde_json::json!({"//": "c", "a": [1, 2], "n": [{"// x": 1, "y": 2}]});
        strip_comments(&mut v);
        assert_eq!(v, serde_json::json!({"a": [1, 2], "n": [{"y": 2}]}));
        let e = deserialize::<S>(serde_json::json!({"a": [1, "two"]})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("a[1]"));
        assert!(e.error.to_string().contains("invalid type"), "{}", e.error);
        let e = deserialize::<S>(serde_json::json!([])).unwrap_err();
        assert_eq!(e.path, None);
    }
}

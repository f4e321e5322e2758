//! JSON values as the GVariants commit metadata holds.

use ostree::glib;
use ostree::glib::prelude::*;
use serde_json::Value;

/// A treefile `add-commit-metadata` value as a GVariant: strings `s`, booleans `b`,
/// integers `x`, other numbers `d`, arrays of strings `as`. Anything else is refused.
pub fn json_to_variant(v: &Value) -> Option<glib::Variant> {
    Some(match v {
        Value::String(s) => s.to_variant(),
        Value::Bool(b) => b.to_variant(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_variant(),
            None => n.as_f64()?.to_variant(),
        },
        Value::Array(a) => {
            let strs: Option<Vec<String>> =
                a.iter().map(|x| x.as_str().map(String::from)).collect();
            strs?.to_variant()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_map_to_variants() {
        assert_eq!(
            json_to_variant(&Value::from("x")).unwrap().type_().as_str(),
            "s"
        );
        assert_eq!(
            json_to_variant(&Value::from(3)).unwrap().type_().as_str(),
            "x"
        );
        assert_eq!(
            json_to_variant(&Value::from(true))
                .unwrap()
                .type_()
                .as_str(),
            "b"
        );
        assert_eq!(
            json_to_variant(&serde_json::json!(["a", "b"]))
                .unwrap()
                .type_()
                .as_str(),
            "as"
        );
        assert!(json_to_variant(&serde_json::json!({"a": 1})).is_none());
        assert!(json_to_variant(&serde_json::json!([1])).is_none());
    }
}

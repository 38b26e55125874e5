//! A command's arguments, read with errors that name the field.

use serde_json::{Map, Value};

/// The arguments of a command, with errors that name the field.
pub(super) struct Args<'a>(Option<&'a Map<String, Value>>);

impl<'a> Args<'a> {
    pub(super) fn new(v: &'a Value) -> Result<Args<'a>, String> {
        match v {
            Value::Null => Ok(Args(None)),
            Value::Object(m) => Ok(Args(Some(m))),
            _ => Err("`args` must be an object".into()),
        }
    }

    pub(super) fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(k)).filter(|v| !v.is_null())
    }

    pub(super) fn str(&self, k: &str) -> Result<&'a str, String> {
        self.str_opt(k)?.ok_or_else(|| format!("`{k}` is missing"))
    }

    pub(super) fn str_opt(&self, k: &str) -> Result<Option<&'a str>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    }

    pub(super) fn u64(&self, k: &str) -> Result<u64, String> {
        self.u64_opt(k)?.ok_or_else(|| format!("`{k}` is missing"))
    }

    pub(super) fn u64_opt(&self, k: &str) -> Result<Option<u64>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a whole number, 0 or more")),
        }
    }

    pub(super) fn bool_opt(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("`{k}` must be true or false")),
        }
    }

    pub(super) fn array(&self, k: &str) -> Result<&'a [Value], String> {
        match self.get(k) {
            None => Err(format!("`{k}` is missing")),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(format!("`{k}` must be an array")),
        }
    }

    pub(super) fn object_opt(&self, k: &str) -> Result<Option<&'a Map<String, Value>>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(format!("`{k}` must be an object")),
        }
    }
}

/// At most 64 characters of something a sender wrote, for an error.
pub(super) fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Length of `s` as a JSON string.
pub(super) fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len(), |j| j.len())
}

//! A command's arguments, read with errors that name the field.

use serde_json::{Map, Value};

/// A command's argument is missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// `args` is not a JSON object.
    #[error("`args` must be an object")]
    NotAnObject,
    /// A field that is needed is absent (or null).
    #[error("`{field}` is missing")]
    Missing {
        /// The field.
        field: String,
    },
    /// A field of the wrong type.
    #[error("`{field}` must be {want}")]
    WrongType {
        /// The field.
        field: String,
        /// What it must be: `a string`, `true or false`…
        want: &'static str,
    },
}

impl ArgError {
    /// `field` is missing.
    pub(super) fn missing(field: &str) -> ArgError {
        ArgError::Missing {
            field: field.to_string(),
        }
    }

    /// `field` is not `want` (`a string`, `an object`…).
    pub(super) fn wrong(field: impl Into<String>, want: &'static str) -> ArgError {
        ArgError::WrongType {
            field: field.into(),
            want,
        }
    }
}

/// The arguments of a command, with errors that name the field.
pub(super) struct Args<'a>(Option<&'a Map<String, Value>>);

impl<'a> Args<'a> {
    pub(super) fn new(v: &'a Value) -> Result<Args<'a>, ArgError> {
        match v {
            Value::Null => Ok(Args(None)),
            Value::Object(m) => Ok(Args(Some(m))),
            _ => Err(ArgError::NotAnObject),
        }
    }

    pub(super) fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(k)).filter(|v| !v.is_null())
    }

    pub(super) fn str(&self, k: &str) -> Result<&'a str, ArgError> {
        self.str_opt(k)?.ok_or_else(|| ArgError::missing(k))
    }

    pub(super) fn str_opt(&self, k: &str) -> Result<Option<&'a str>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ArgError::wrong(k, "a string")),
        }
    }

    pub(super) fn u64(&self, k: &str) -> Result<u64, ArgError> {
        self.u64_opt(k)?.ok_or_else(|| ArgError::missing(k))
    }

    pub(super) fn u64_opt(&self, k: &str) -> Result<Option<u64>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| ArgError::wrong(k, "a whole number, 0 or more")),
        }
    }

    pub(super) fn bool_opt(&self, k: &str) -> Result<Option<bool>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ArgError::wrong(k, "true or false")),
        }
    }

    pub(super) fn array(&self, k: &str) -> Result<&'a [Value], ArgError> {
        match self.get(k) {
            None => Err(ArgError::missing(k)),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(ArgError::wrong(k, "an array")),
        }
    }

    pub(super) fn object_opt(&self, k: &str) -> Result<Option<&'a Map<String, Value>>, ArgError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ArgError::wrong(k, "an object")),
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

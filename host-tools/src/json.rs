//! Just enough JSON to print `bench --json`: values built in code, written
//! with correct string escaping. No parsing.

use std::fmt::{self, Write};

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer, written exactly.
    Int(u64),
    /// A number; not finite numbers are written as `null`.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Value>),
    /// An object, keys in the order given.
    Obj(Vec<(String, Value)>),
}

impl Value {
    /// An object from `(key, value)` pairs.
    pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Self::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A string, or `null` for `None`.
    pub fn opt_str(s: Option<&str>) -> Self {
        s.map_or(Self::Null, |s| Self::Str(s.to_owned()))
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Num(x) if x.is_finite() => write!(f, "{x}"),
            Self::Num(_) => f.write_str("null"),
            Self::Str(s) => write_str(f, s),
            Self::Arr(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Self::Obj(pairs) => {
                f.write_char('{')?;
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn writes_valid_json() {
        let v = Value::obj([
            ("name", Value::Str("a \"b\"\n\u{1}".into())),
            ("n", Value::Int(3)),
            ("x", Value::Num(1.5)),
            ("nan", Value::Num(f64::NAN)),
            ("list", Value::Arr(vec![Value::Bool(true), Value::Null])),
        ]);
        assert_eq!(
            v.to_string(),
            r#"{"name":"a \"b\"\n\u0001","n":3,"x":1.5,"nan":null,"list":[true,null]}"#
        );
    }
}

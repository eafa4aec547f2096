//! Column values as the runtime binds and reads them, whatever the backend.

use crate::schema::LogicalType;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One column value, typed by [`LogicalType`] (or `Null`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A [`LogicalType::Bool`].
    Bool(bool),
    /// A [`LogicalType::I32`].
    I32(i32),
    /// A [`LogicalType::I64`].
    I64(i64),
    /// A [`LogicalType::F64`].
    F64(f64),
    /// A [`LogicalType::Text`].
    Text(String),
    /// A [`LogicalType::Bytes`].
    Bytes(Vec<u8>),
    /// A [`LogicalType::Timestamp`].
    Timestamp(DateTime<Utc>),
    /// A [`LogicalType::Uuid`].
    Uuid(Uuid),
    /// A [`LogicalType::Json`].
    Json(serde_json::Value),
}

impl Value {
    /// The kind of value, as named in errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "bool",
            Self::I32(_) => "i32",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
            Self::Text(_) => "text",
            Self::Bytes(_) => "bytes",
            Self::Timestamp(_) => "timestamp",
            Self::Uuid(_) => "uuid",
            Self::Json(_) => "json",
        }
    }
}

/// A value did not have the type its column or field expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ValueError {
    /// What the field expects.
    pub expected: String,
    /// What the value was.
    pub found: String,
}

impl ValueError {
    fn new(expected: impl Into<String>, found: &Value) -> Self {
        let found = match found {
            Value::Null => "null".to_owned(),
            Value::I32(v) => format!("i32 {v}"),
            Value::I64(v) => format!("i64 {v}"),
            other => other.kind().to_owned(),
        };
        Self { expected: expected.into(), found }
    }
}

/// A Rust type that can be stored in one column.
///
/// Implemented for `bool`, the integers up to `i64` (`u64` does not fit every
/// backend), `f32`, `f64`, `String`, `Vec<u8>`, `chrono::DateTime<Utc>`,
/// `uuid::Uuid` and `Option` of these. Any serde type can be stored as JSON
/// with `#[column(json)]` on the field instead.
///
/// ```
/// use statefold::{Column, LogicalType, Value};
/// assert_eq!(<Option<i64> as Column>::TYPE, LogicalType::I64);
/// assert!(<Option<i64> as Column>::NULLABLE);
/// assert_eq!(7_u8.to_value(), Value::I32(7));
/// assert!(u8::from_value(Value::I32(300)).is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a statefold column",
    label = "unsupported column type",
    note = "columns hold bool, i8, i16, i32, i64, u8, u16, u32, f32, f64, String, Vec<u8>, chrono::DateTime<Utc>, uuid::Uuid, or an Option of one of these",
    note = "to store any serde type as JSON, mark the field `#[column(json)]`"
)]
pub trait Column: Sized {
    /// The storage type.
    const TYPE: LogicalType;
    /// Whether the type itself admits `NULL` (`Option<T>`).
    const NULLABLE: bool = false;
    /// This value as a [`Value`].
    fn to_value(&self) -> Value;
    /// Reads a value back.
    ///
    /// # Errors
    /// When the value has another type or is out of range.
    fn from_value(value: Value) -> Result<Self, ValueError>;
}

macro_rules! int_column {
    ($($t:ty => $variant:ident($wide:ty)),* $(,)?) => {$(
        #[diagnostic::do_not_recommend]
        impl Column for $t {
            const TYPE: LogicalType = LogicalType::$variant;
            fn to_value(&self) -> Value {
                Value::$variant(<$wide>::from(*self))
            }
            fn from_value(value: Value) -> Result<Self, ValueError> {
                let wide = match value {
                    Value::I32(v) => i64::from(v),
                    Value::I64(v) => v,
                    ref other => return Err(ValueError::new(stringify!($t), other)),
                };
                <$t>::try_from(wide).map_err(|_| ValueError::new(stringify!($t), &Value::I64(wide)))
            }
        }
    )*};
}

int_column!(
    i8 => I32(i32),
    i16 => I32(i32),
    i32 => I32(i32),
    u8 => I32(i32),
    u16 => I32(i32),
    i64 => I64(i64),
    u32 => I64(i64),
);

#[diagnostic::do_not_recommend]
impl Column for f64 {
    const TYPE: LogicalType = LogicalType::F64;
    fn to_value(&self) -> Value {
        Value::F64(*self)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::F64(v) => Ok(v),
            other => Err(ValueError::new("f64", &other)),
        }
    }
}

#[diagnostic::do_not_recommend]
impl Column for f32 {
    const TYPE: LogicalType = LogicalType::F64;
    fn to_value(&self) -> Value {
        Value::F64(f64::from(*self))
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            // Every stored value came from an f32, so narrowing is exact.
            #[allow(clippy::cast_possible_truncation)]
            Value::F64(v) => Ok(v as f32),
            other => Err(ValueError::new("f32", &other)),
        }
    }
}

macro_rules! owned_column {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        #[diagnostic::do_not_recommend]
        impl Column for $t {
            const TYPE: LogicalType = LogicalType::$variant;
            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }
            fn from_value(value: Value) -> Result<Self, ValueError> {
                match value {
                    Value::$variant(v) => Ok(v),
                    other => Err(ValueError::new(stringify!($t), &other)),
                }
            }
        }
    )*};
}

owned_column!(
    bool => Bool,
    String => Text,
    Vec<u8> => Bytes,
    DateTime<Utc> => Timestamp,
    Uuid => Uuid,
);

// Not recommended either: an unsupported `Option<T>` is then reported as
// itself, not as its `T` by way of this impl.
#[diagnostic::do_not_recommend]
impl<T: Column> Column for Option<T> {
    const TYPE: LogicalType = T::TYPE;
    const NULLABLE: bool = true;
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Column::to_value)
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// Encodes a `#[column(json)]` field.
///
/// # Errors
/// When serde cannot represent the value as JSON (a map with non-string keys).
pub fn json_to_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, serde_json::Error> {
    Ok(match serde_json::to_value(value)? {
        serde_json::Value::Null => Value::Null,
        json => Value::Json(json),
    })
}

/// Decodes a `#[column(json)]` field.
///
/// # Errors
/// When the value is not JSON or does not match `T`.
pub fn json_from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    let json = match value {
        Value::Null => serde_json::Value::Null,
        Value::Json(json) => json,
        // Backends without a JSON type hand back text.
        Value::Text(text) => serde_json::from_str(&text)
            .map_err(|e| ValueError { expected: "json".into(), found: format!("text that is not JSON ({e})") })?,
        other => return Err(ValueError::new("json", &other)),
    };
    serde_json::from_value(json).map_err(|e| ValueError {
        expected: std::any::type_name::<T>().into(),
        found: format!("json that does not match ({e})"),
    })
}

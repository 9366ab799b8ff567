//! Typed parameters (`virTypedParameter`): named values used for job statistics,
//! tunables and domain stats.

/// A typed parameter's value; the variant order follows `VIR_TYPED_PARAM_*` (1..7).
#[derive(Debug, Clone, PartialEq)]
pub enum TypedValue {
    /// 1: int.
    Int(i32),
    /// 2: unsigned int.
    UInt(u32),
    /// 3: long long.
    LLong(i64),
    /// 4: unsigned long long.
    ULLong(u64),
    /// 5: double.
    Double(f64),
    /// 6: boolean.
    Boolean(bool),
    /// 7: string.
    String(String),
}

impl TypedValue {
    /// The `VIR_TYPED_PARAM_*` discriminant.
    pub fn type_code(&self) -> i32 {
        match self {
            TypedValue::Int(_) => 1,
            TypedValue::UInt(_) => 2,
            TypedValue::LLong(_) => 3,
            TypedValue::ULLong(_) => 4,
            TypedValue::Double(_) => 5,
            TypedValue::Boolean(_) => 6,
            TypedValue::String(_) => 7,
        }
    }
}

/// A named typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedParam {
    /// The field name, e.g. `weight` or `data_processed`.
    pub name: String,
    /// The value.
    pub value: TypedValue,
}

impl TypedParam {
    /// A parameter.
    pub fn new(name: impl Into<String>, value: TypedValue) -> TypedParam {
        TypedParam {
            name: name.into(),
            value,
        }
    }
}

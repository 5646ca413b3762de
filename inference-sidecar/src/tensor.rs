//! Typed tensors as the Open Inference Protocol carries them: a datatype name, a shape and the
//! elements in row-major order, decoded from JSON or from little-endian binary data and encoded
//! back. Pure: no I/O, no ONNX Runtime.

use serde_json::Value;

/// Errors while decoding tensor data from a request.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    /// The datatype name is not an Open Inference Protocol datatype.
    #[error("unknown datatype {0:?}")]
    UnknownDatatype(String),
    /// The datatype exists in the protocol but this server does not serve it.
    #[error("datatype {0} is not supported by this server")]
    UnsupportedDatatype(&'static str),
    /// A dimension is negative.
    #[error("shape {0:?} has a negative dimension")]
    NegativeDimension(Vec<i64>),
    /// The element count implied by the shape overflows.
    #[error("shape {0:?} is too large")]
    ShapeTooLarge(Vec<i64>),
    /// The number of elements does not match the shape.
    #[error("shape {shape:?} needs {expected} elements, got {got}")]
    ElementCount {
        /// the declared shape
        shape: Vec<i64>,
        /// elements the shape needs
        expected: usize,
        /// elements present
        got: usize,
    },
    /// Binary data whose length is not a multiple of the element size, or does not match the shape.
    #[error("binary data of {got} bytes does not match {expected} bytes for shape {shape:?}")]
    ByteLength {
        /// the declared shape
        shape: Vec<i64>,
        /// bytes the shape needs
        expected: usize,
        /// bytes present
        got: usize,
    },
    /// A JSON element has the wrong type or is out of range for the datatype.
    #[error("element {index} ({value}) is not a valid {datatype}")]
    BadElement {
        /// flat index of the element
        index: usize,
        /// the JSON text of the element (truncated)
        value: String,
        /// the datatype expected
        datatype: &'static str,
    },
    /// A BOOL byte other than 0 or 1.
    #[error("BOOL byte {0} is neither 0 nor 1")]
    BadBool(u8),
}

impl TensorError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownDatatype(_) => "unknown_datatype",
            Self::UnsupportedDatatype(_) => "unsupported_datatype",
            Self::NegativeDimension(_) | Self::ShapeTooLarge(_) => "bad_shape",
            Self::ElementCount { .. } | Self::ByteLength { .. } => "length_mismatch",
            Self::BadElement { .. } | Self::BadBool(_) => "bad_element",
        }
    }
}

macro_rules! datatypes {
    ($($variant:ident => $name:literal, $ty:ty;)*) => {
        /// The element type of a tensor, named as the Open Inference Protocol names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DataType {
            $(#[doc = $name] $variant,)*
        }

        impl DataType {
            /// Every datatype this server serves.
            pub const ALL: &'static [DataType] = &[$(DataType::$variant,)*];

            /// The protocol name (`FP32`, `INT64`, ...).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Size of one element in bytes.
            pub fn byte_size(self) -> usize {
                match self { $(Self::$variant => std::mem::size_of::<$ty>(),)* }
            }
        }

        /// The elements of a tensor, typed, in row-major order.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $(#[doc = $name] $variant(Vec<$ty>),)*
        }

        impl TensorData {
            /// The datatype of the elements.
            pub fn datatype(&self) -> DataType {
                match self { $(Self::$variant(_) => DataType::$variant,)* }
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                match self { $(Self::$variant(v) => v.len(),)* }
            }

            /// Whether there are no elements.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// A zero-filled tensor body (used for warm-up inputs).
            pub fn zeros(datatype: DataType, len: usize) -> Self {
                match datatype { $(DataType::$variant => Self::$variant(vec![<$ty>::default(); len]),)* }
            }

            /// Appends the little-endian bytes of every element to `out`.
            pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
                match self {
                    $(Self::$variant(v) => {
                        out.reserve(v.len() * std::mem::size_of::<$ty>());
                        for x in v { out.extend_from_slice(&LeBytes::to_le(*x)); }
                    })*
                }
            }

            /// Appends `other` to `self`; `false` (and no change) when the datatypes differ.
            pub fn extend_from(&mut self, other: &TensorData) -> bool {
                match (self, other) {
                    $((Self::$variant(a), Self::$variant(b)) => { a.extend_from_slice(b); true })*
                    _ => false,
                }
            }

            /// The elements `range`, as a new tensor body.
            pub fn slice(&self, range: std::ops::Range<usize>) -> Option<Self> {
                match self { $(Self::$variant(v) => v.get(range).map(|s| Self::$variant(s.to_vec())),)* }
            }

            fn from_le(datatype: DataType, bytes: &[u8]) -> Result<Self, TensorError> {
                Ok(match datatype {
                    $(DataType::$variant => {
                        let mut v = Vec::with_capacity(bytes.len() / std::mem::size_of::<$ty>());
                        for chunk in bytes.chunks_exact(std::mem::size_of::<$ty>()) {
                            v.push(<$ty as LeBytes>::from_le(chunk)?);
                        }
                        Self::$variant(v)
                    })*
                })
            }

            fn from_json_elements(datatype: DataType, flat: &[&Value]) -> Result<Self, TensorError> {
                Ok(match datatype {
                    $(DataType::$variant => {
                        let mut v = Vec::with_capacity(flat.len());
                        for (index, value) in flat.iter().enumerate() {
                            v.push(<$ty as FromJson>::from_json(value).ok_or_else(|| TensorError::BadElement {
                                index,
                                value: truncate(value.to_string()),
                                datatype: $name,
                            })?);
                        }
                        Self::$variant(v)
                    })*
                })
            }

            /// The elements as a flat JSON array.
            pub fn to_json(&self) -> Value {
                match self { $(Self::$variant(v) => Value::from(v.iter().map(|x| ToJson::to_json(*x)).collect::<Vec<_>>()),)* }
            }
        }
    };
}

datatypes! {
    Bool => "BOOL", bool;
    Uint8 => "UINT8", u8;
    Uint16 => "UINT16", u16;
    Uint32 => "UINT32", u32;
    Uint64 => "UINT64", u64;
    Int8 => "INT8", i8;
    Int16 => "INT16", i16;
    Int32 => "INT32", i32;
    Int64 => "INT64", i64;
    Fp32 => "FP32", f32;
    Fp64 => "FP64", f64;
}

impl DataType {
    /// Parses a protocol datatype name. `FP16`, `BF16` and `BYTES` are protocol datatypes that this
    /// server does not serve: they are refused with a clear error rather than as unknown.
    pub fn parse(name: &str) -> Result<Self, TensorError> {
        if let Some(dt) = Self::ALL.iter().find(|dt| dt.as_str() == name) {
            return Ok(*dt);
        }
        match name {
            "FP16" => Err(TensorError::UnsupportedDatatype("FP16")),
            "BF16" => Err(TensorError::UnsupportedDatatype("BF16")),
            "BYTES" => Err(TensorError::UnsupportedDatatype("BYTES")),
            _ => Err(TensorError::UnknownDatatype(truncate(name.to_owned()))),
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// input or output name
    pub name: String,
    /// dimensions, all non-negative
    pub shape: Vec<i64>,
    /// elements, row-major
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape is valid and matches the element count.
    pub fn new(name: String, shape: Vec<i64>, data: TensorData) -> Result<Self, TensorError> {
        let expected = element_count(&shape)?;
        if expected != data.len() {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Self { name, shape, data })
    }

    /// Decodes a tensor from JSON `data` (flat or nested arrays, as the protocol allows).
    pub fn from_json(
        name: String,
        datatype: DataType,
        shape: Vec<i64>,
        data: &Value,
    ) -> Result<Self, TensorError> {
        let expected = element_count(&shape)?;
        // the shape is the client's claim: never reserve more than the data can hold
        let mut flat = Vec::new();
        flatten(data, &mut flat);
        if flat.len() != expected {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                got: flat.len(),
            });
        }
        let data = TensorData::from_json_elements(datatype, &flat)?;
        Ok(Self { name, shape, data })
    }

    /// Decodes a tensor from little-endian binary data (the binary tensor data extension).
    pub fn from_le_bytes(
        name: String,
        datatype: DataType,
        shape: Vec<i64>,
        bytes: &[u8],
    ) -> Result<Self, TensorError> {
        let expected = element_count(&shape)?
            .checked_mul(datatype.byte_size())
            .ok_or_else(|| TensorError::ShapeTooLarge(shape.clone()))?;
        if bytes.len() != expected {
            return Err(TensorError::ByteLength {
                shape,
                expected,
                got: bytes.len(),
            });
        }
        let data = TensorData::from_le(datatype, bytes)?;
        Ok(Self { name, shape, data })
    }

    /// The datatype of the elements.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// The number of elements a shape holds.
pub fn element_count(shape: &[i64]) -> Result<usize, TensorError> {
    let mut n: usize = 1;
    for &d in shape {
        let d = usize::try_from(d).map_err(|_| TensorError::NegativeDimension(shape.to_vec()))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| TensorError::ShapeTooLarge(shape.to_vec()))?;
    }
    Ok(n)
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

trait LeBytes: Sized {
    type Bytes: AsRef<[u8]>;
    fn to_le(self) -> Self::Bytes;
    fn from_le(bytes: &[u8]) -> Result<Self, TensorError>;
}

macro_rules! le_bytes_num {
    ($($ty:ty),*) => {$(
        impl LeBytes for $ty {
            type Bytes = [u8; std::mem::size_of::<$ty>()];
            fn to_le(self) -> Self::Bytes {
                self.to_le_bytes()
            }
            fn from_le(bytes: &[u8]) -> Result<Self, TensorError> {
                let mut a = [0u8; std::mem::size_of::<$ty>()];
                a.copy_from_slice(bytes);
                Ok(<$ty>::from_le_bytes(a))
            }
        }
    )*};
}
le_bytes_num!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl LeBytes for bool {
    type Bytes = [u8; 1];
    fn to_le(self) -> Self::Bytes {
        [u8::from(self)]
    }
    fn from_le(bytes: &[u8]) -> Result<Self, TensorError> {
        match bytes.first() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            other => Err(TensorError::BadBool(other.copied().unwrap_or(0))),
        }
    }
}

trait FromJson: Sized {
    fn from_json(v: &Value) -> Option<Self>;
}

macro_rules! from_json_int {
    ($($ty:ty),*) => {$(
        impl FromJson for $ty {
            fn from_json(v: &Value) -> Option<Self> {
                if let Some(i) = v.as_i64() {
                    return <$ty>::try_from(i).ok();
                }
                v.as_u64().and_then(|u| <$ty>::try_from(u).ok())
            }
        }
    )*};
}
from_json_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl FromJson for f64 {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_f64()
    }
}

impl FromJson for f32 {
    #[allow(clippy::cast_possible_truncation)] // FP32 from a JSON number: rounding is the intent
    fn from_json(v: &Value) -> Option<Self> {
        v.as_f64().map(|x| x as f32)
    }
}

impl FromJson for bool {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_bool()
    }
}

trait ToJson {
    fn to_json(self) -> Value;
}

macro_rules! to_json_via_from {
    ($($ty:ty),*) => {$(
        impl ToJson for $ty {
            fn to_json(self) -> Value {
                Value::from(self)
            }
        }
    )*};
}
to_json_via_from!(bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

#[cfg(test)]
#[path = "tensor_tests.rs"]
mod tests;

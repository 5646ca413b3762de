//! Open Inference Protocol v2 (KServe v2, as Triton speaks it) request and response bodies,
//! including the binary tensor data extension: a JSON header of `Inference-Header-Content-Length`
//! bytes followed by the raw little-endian tensors in input (or output) order. Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tensor::{DataType, Tensor, TensorError};

/// HTTP header that carries the length of the JSON part of a binary request or response.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// Errors in an inference request body. All are the client's fault (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The body (or its JSON part) is not valid JSON of the expected form.
    #[error("request is not a valid inference request: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is empty.
    #[error("request body is empty")]
    Empty,
    /// `Inference-Header-Content-Length` is not a number or larger than the body.
    #[error("Inference-Header-Content-Length {0:?} is invalid for a body of {1} bytes")]
    HeaderLength(String, usize),
    /// An input names its binary size but the body ends before.
    #[error("input {name:?}: binary_data_size {size} runs past the end of the body")]
    BinaryOverrun {
        /// the input
        name: String,
        /// the size it declared
        size: usize,
    },
    /// Bytes left after the last binary input.
    #[error("{0} bytes of binary data follow the last input")]
    BinaryTrailing(usize),
    /// Binary data sent without the header that delimits it.
    #[error(
        "input {0:?} has binary_data_size but the request has no Inference-Header-Content-Length"
    )]
    BinaryWithoutHeader(String),
    /// An input has neither `data` nor `binary_data_size`.
    #[error("input {0:?} has no data")]
    NoData(String),
    /// An input appears twice.
    #[error("input {0:?} appears more than once")]
    DuplicateInput(String),
    /// A parameter has the wrong type.
    #[error("parameter {0:?} has the wrong type")]
    BadParameter(&'static str),
    /// A `Content-Encoding` other than gzip, deflate or identity.
    #[error("Content-Encoding {0:?} is not supported (gzip, deflate, identity)")]
    UnsupportedEncoding(String),
    /// The compressed body is corrupt.
    #[error("cannot decompress the request body: {0}")]
    Decompress(String),
    /// The body, once decompressed, is larger than the limit.
    #[error("request body is larger than the limit of {0} bytes once decompressed")]
    TooLarge(usize),
    /// A tensor could not be decoded.
    #[error("input {name:?}: {source}")]
    Tensor {
        /// the input
        name: String,
        /// what was wrong
        source: TensorError,
    },
}

impl ProtocolError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Json(_) => "bad_json",
            Self::Empty => "empty_body",
            Self::HeaderLength(..)
            | Self::BinaryOverrun { .. }
            | Self::BinaryTrailing(_)
            | Self::BinaryWithoutHeader(_) => "binary_length",
            Self::NoData(_) | Self::DuplicateInput(_) | Self::BadParameter(_) => "bad_request",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Decompress(_) => "bad_compression",
            Self::TooLarge(_) => "too_large",
            Self::Tensor { source, .. } => source.kind(),
        }
    }
}

/// Decompresses a request body sent with `Content-Encoding` (`tritonclient`'s
/// `request_compression_algorithm`: `gzip`, or `deflate` meaning the zlib format), refusing to
/// produce more than `limit` bytes (a small compressed body can expand enormously).
pub fn decompress(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    use std::io::Read;
    let encoding = encoding.trim().to_ascii_lowercase();
    let mut reader: Box<dyn Read + '_> = match encoding.as_str() {
        "identity" | "" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(body)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(body)),
        _ => {
            return Err(ProtocolError::UnsupportedEncoding(
                encoding.chars().take(20).collect(),
            ));
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(2).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut reader)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Decompress(e.to_string()))?;
    if out.len() > limit {
        return Err(ProtocolError::TooLarge(limit));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RequestHeader {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputHeader>,
    #[serde(default)]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Deserialize)]
struct InputHeader {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// An output the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// output name
    pub name: String,
    /// return it as binary data
    pub binary: bool,
}

/// A decoded inference request.
#[derive(Debug)]
pub struct InferRequest {
    /// the client's request id, echoed back
    pub id: Option<String>,
    /// the inputs, in request order
    pub inputs: Vec<Tensor>,
    /// the outputs asked for; `None` means all, in model order
    pub outputs: Option<Vec<RequestedOutput>>,
    /// `binary_data_output`: outputs not listed explicitly come back as binary
    pub binary_output_default: bool,
    /// `timeout` parameter (microseconds in Triton's convention), if the client set one
    pub timeout: Option<Duration>,
}

fn bool_param(
    params: Option<&Map<String, Value>>,
    key: &'static str,
) -> Result<bool, ProtocolError> {
    match params.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ProtocolError::BadParameter(key)),
    }
}

/// Decodes a request body. `header_length` is the value of `Inference-Header-Content-Length`,
/// if the request had one.
pub fn parse_infer_request(
    body: &[u8],
    header_length: Option<&str>,
) -> Result<InferRequest, ProtocolError> {
    if body.is_empty() {
        return Err(ProtocolError::Empty);
    }
    let (json, mut binary) = match header_length {
        None => (body, None),
        Some(raw) => {
            let n: usize = raw.trim().parse().map_err(|_| {
                ProtocolError::HeaderLength(raw.chars().take(20).collect(), body.len())
            })?;
            if n > body.len() || n == 0 {
                return Err(ProtocolError::HeaderLength(n.to_string(), body.len()));
            }
            let (j, b) = body.split_at(n);
            (j, Some(b))
        }
    };
    let header: RequestHeader = serde_json::from_slice(json)?;
    let mut inputs = Vec::with_capacity(header.inputs.len());
    for input in header.inputs {
        if inputs.iter().any(|t: &Tensor| t.name == input.name) {
            return Err(ProtocolError::DuplicateInput(input.name));
        }
        let tensor_err = |name: &str| {
            let name = name.to_owned();
            move |source| ProtocolError::Tensor { name, source }
        };
        let datatype = DataType::parse(&input.datatype).map_err(tensor_err(&input.name))?;
        let size = match input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
        {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or(ProtocolError::BadParameter("binary_data_size"))?,
            ),
        };
        let tensor = match (size, &input.data) {
            (Some(size), _) => {
                let rest = binary
                    .as_mut()
                    .ok_or_else(|| ProtocolError::BinaryWithoutHeader(input.name.clone()))?;
                if size > rest.len() {
                    return Err(ProtocolError::BinaryOverrun {
                        name: input.name,
                        size,
                    });
                }
                let (bytes, tail) = rest.split_at(size);
                *rest = tail;
                Tensor::from_le_bytes(input.name.clone(), datatype, input.shape, bytes)
                    .map_err(tensor_err(&input.name))?
            }
            (None, Some(data)) => {
                Tensor::from_json(input.name.clone(), datatype, input.shape, data)
                    .map_err(tensor_err(&input.name))?
            }
            (None, None) => return Err(ProtocolError::NoData(input.name)),
        };
        inputs.push(tensor);
    }
    if let Some(rest) = binary
        && !rest.is_empty()
    {
        return Err(ProtocolError::BinaryTrailing(rest.len()));
    }
    let params = header.parameters.as_ref();
    let binary_output_default = bool_param(params, "binary_data_output")?;
    let timeout = match params.and_then(|p| p.get("timeout")) {
        None => None,
        Some(v) => Some(Duration::from_micros(
            v.as_u64().ok_or(ProtocolError::BadParameter("timeout"))?,
        )),
    };
    let outputs = match header.outputs {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for o in list {
                let binary = match o.parameters.as_ref().and_then(|p| p.get("binary_data")) {
                    None => binary_output_default,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(ProtocolError::BadParameter("binary_data")),
                };
                out.push(RequestedOutput {
                    name: o.name,
                    binary,
                });
            }
            Some(out)
        }
    };
    Ok(InferRequest {
        id: header.id,
        inputs,
        outputs,
        binary_output_default,
        timeout,
    })
}

#[derive(Serialize)]
struct ResponseHeader<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputEntry<'a>>,
}

#[derive(Serialize)]
struct OutputEntry<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

/// An encoded response body.
#[derive(Debug)]
pub struct EncodedResponse {
    /// the body
    pub body: Vec<u8>,
    /// length of the JSON part when binary data follows (goes into `Inference-Header-Content-Length`)
    pub header_length: Option<usize>,
}

/// Encodes the outputs; each `(tensor, binary)` pair says whether that output goes as binary data.
pub fn encode_infer_response(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    outputs: &[(Tensor, bool)],
) -> Result<EncodedResponse, serde_json::Error> {
    let mut binary = Vec::new();
    let mut entries = Vec::with_capacity(outputs.len());
    for (tensor, as_binary) in outputs {
        let (parameters, data) = if *as_binary {
            let before = binary.len();
            tensor.data.write_le_bytes(&mut binary);
            let size = binary.len() - before;
            (Some(serde_json::json!({ "binary_data_size": size })), None)
        } else {
            (None, Some(tensor.data.to_json()))
        };
        entries.push(OutputEntry {
            name: &tensor.name,
            datatype: tensor.datatype().as_str(),
            shape: &tensor.shape,
            parameters,
            data,
        });
    }
    let header = ResponseHeader {
        model_name,
        model_version,
        id,
        outputs: entries,
    };
    let mut body = serde_json::to_vec(&header)?;
    let any_binary = outputs.iter().any(|(_, b)| *b);
    let header_length = any_binary.then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(EncodedResponse {
        body,
        header_length,
    })
}

/// The JSON error body every failure carries.
pub fn error_body(message: &str) -> Value {
    serde_json::json!({ "error": message })
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;

//! The Prometheus HTTP API, pure parts: the instant-query URL and the answer of
//! `GET /api/v1/query` reduced to one number.

use serde_json::Value;

/// Why a Prometheus query gave no usable number.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PromQueryError {
    /// The request did not complete (set by the I/O layer: connection, timeout, HTTP status
    /// without a Prometheus error body).
    #[error("prometheus query failed: {0}")]
    Transport(String),
    /// The body is not the JSON the query API answers with.
    #[error("prometheus answered something that is not a query result: {0}")]
    Malformed(String),
    /// Prometheus refused the query (`status: error`).
    #[error("prometheus refused the query ({error_type}): {error}")]
    Refused {
        /// `errorType`, e.g. `bad_data`.
        error_type: String,
        /// `error`.
        error: String,
    },
    /// An empty vector: no series matched (no data).
    #[error("the query returned no series (no data)")]
    NoSeries,
    /// More than one series: the query must aggregate to one number.
    #[error("the query returned {0} series; aggregate it to one (e.g. with sum or max)")]
    ManySeries(usize),
    /// The value is NaN (e.g. a ratio of two zero rates: no data).
    #[error("the query returned NaN (no data)")]
    NotANumber,
    /// A matrix or string result.
    #[error("the query returned a {0}; an instant vector or scalar is needed")]
    UnsupportedType(String),
}

impl PromQueryError {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport",
            Self::Malformed(_) => "malformed",
            Self::Refused { .. } => "refused",
            Self::NoSeries => "no_series",
            Self::ManySeries(_) => "many_series",
            Self::NotANumber => "nan",
            Self::UnsupportedType(_) => "unsupported_type",
        }
    }

    /// Whether this means "no data" (judged by `noDataPolicy`) rather than a broken measurement
    /// (inconclusive whatever the policy).
    pub fn is_no_data(&self) -> bool {
        matches!(self, Self::NoSeries | Self::NotANumber)
    }
}

/// The instant-query URL for `query` on the server at `address` (`<address>/api/v1/query?query=`
/// with the query percent-encoded).
pub fn query_url(address: &str, query: &str) -> String {
    let mut url = format!("{}/api/v1/query?query=", address.trim_end_matches('/'));
    for byte in query.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// Reduces the body of `GET /api/v1/query` to one number: a scalar, or a vector with exactly one
/// sample. `+Inf` and `-Inf` are numbers; NaN and an empty vector are no data.
pub fn parse_query_response(body: &str) -> Result<f64, PromQueryError> {
    let json: Value =
        serde_json::from_str(body).map_err(|e| PromQueryError::Malformed(e.to_string()))?;
    let malformed = |what: &str| PromQueryError::Malformed(what.to_owned());
    match json.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            let text = |k: &str| {
                json.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(PromQueryError::Refused {
                error_type: text("errorType"),
                error: text("error"),
            });
        }
        _ => return Err(malformed("no status")),
    }
    let data = json.get("data").ok_or_else(|| malformed("no data"))?;
    let result = data.get("result").ok_or_else(|| malformed("no result"))?;
    let pair = match data.get("resultType").and_then(Value::as_str) {
        Some("scalar") => result,
        Some("vector") => {
            let series = result
                .as_array()
                .ok_or_else(|| malformed("vector result"))?;
            match series.as_slice() {
                [] => return Err(PromQueryError::NoSeries),
                [one] => one.get("value").ok_or_else(|| malformed("sample value"))?,
                many => return Err(PromQueryError::ManySeries(many.len())),
            }
        }
        Some(other) => return Err(PromQueryError::UnsupportedType(other.to_owned())),
        None => return Err(malformed("no resultType")),
    };
    // A sample is `[<unix time>, "<value>"]`.
    let text = pair
        .as_array()
        .and_then(|p| p.get(1))
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("sample is not [time, \"value\"]"))?;
    let value = match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t
            .parse::<f64>()
            .map_err(|_| malformed(&format!("value {t:?}")))?,
    };
    if value.is_nan() {
        return Err(PromQueryError::NotANumber);
    }
    Ok(value)
}

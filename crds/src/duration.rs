//! Go-style duration strings (`100ms`, `1m30s`, `2h`), as Kubernetes and Argo CD users write them.
//!
//! The CRD schema checks every duration field with [`PATTERN`]; [`parse`] accepts exactly the
//! strings that pattern accepts, so a spec the API server admitted never fails here except on
//! overflow (more than `i64::MAX` nanoseconds, about 292 years, which Go's `time.ParseDuration`
//! and CEL's `duration()` refuse too). The accepted language is a subset of Go's: no sign, no
//! leading or trailing `.`, no `µs` (CEL rules compare durations with `duration()`), and a bare
//! `0` is the only number without a unit.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The `pattern` every duration field carries in the CRD schema.
pub const PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$";
/// The `maxLength` every duration field carries (keeps CEL's cost estimate small).
pub const MAX_LENGTH: u32 = 32;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration: write a number and a unit, e.g. 100ms, 30s, 1m30s")]
    Empty,
    /// The string does not match [`PATTERN`].
    #[error(
        "invalid duration {0:?}: write numbers with units ns, us, ms, s, m, h, e.g. 100ms, 1m30s"
    )]
    Syntax(String),
    /// The value exceeds what Go (and CEL) can represent.
    #[error("duration {0:?} is too long (at most about 292 years)")]
    Overflow(String),
}

impl DurationError {
    /// A short, bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Syntax(_) => "syntax",
            Self::Overflow(_) => "overflow",
        }
    }
}

const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go-style duration string that matches [`PATTERN`].
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let syntax = || DurationError::Syntax(text.to_owned());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &text[int_start..i];
        if int_digits.is_empty() {
            return Err(syntax());
        }
        let mut frac_digits = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &text[frac_start..i];
            if frac_digits.is_empty() {
                return Err(syntax());
            }
        }
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit: u128 = match &text[unit_start..i] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(syntax()),
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole * 10 + u128::from(d - b'0');
            if whole > MAX_NANOS {
                return Err(overflow());
            }
        }
        // Like Go: the fraction is scaled by the unit and truncated to whole nanoseconds.
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        for d in frac_digits.bytes() {
            if scale > MAX_NANOS {
                break; // further digits are below a nanosecond for every unit
            }
            frac = frac * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        total += whole * unit + frac * unit / scale;
        if total > MAX_NANOS {
            return Err(overflow());
        }
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| syntax())?;
    Ok(Duration::new(secs, nanos))
}

/// A duration field as written in a spec (`"100ms"`, `"1m30s"`).
///
/// The original text is kept, so a spec read and written back is unchanged; call [`GoDuration::get`]
/// to use it. Deserializing never fails on the text itself (a watch must not break on one bad
/// object): the operator's validation step reports an unparsable value as `InvalidSpec`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    /// Wraps a duration string (not checked until [`GoDuration::get`]).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed value.
    pub fn get(&self) -> Result<Duration, DurationError> {
        parse(&self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for GoDuration {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "maxLength": MAX_LENGTH,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_what_go_parses() {
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("100ms", ms(100)),
            ("1s", ms(1000)),
            ("1m30s", ms(90_000)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("1.5s", ms(1500)),
            ("0.25h", ms(900_000)),
            ("10m", ms(600_000)),
            ("2h", ms(7_200_000)),
            ("1.0000000001s", Duration::new(1, 0)),
            ("1s1s", ms(2000)),
            ("1.5ns", Duration::from_nanos(1)),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for text in [
            "", "1", "10", "s", "-1s", "+1s", ".5s", "5.s", "1 s", "1d", "1w", "1S", "1µs", "1sec",
            "1s ", " 1s", "1.2.3s", "ms", "00", "1e3s",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn refuses_overflow_like_go() {
        assert!(parse("2562047h").is_ok());
        assert!(matches!(parse("2562048h"), Err(DurationError::Overflow(_))));
        assert!(matches!(
            parse("99999999999999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        // very long fractions are fine: digits below a nanosecond are dropped
        assert_eq!(
            parse("1.00000000000000000000000000000000000001s"),
            Ok(ms(1000))
        );
    }

    /// The parser and the CRD `pattern` agree on every string built from the pattern's alphabet
    /// (all strings up to length 4, plus longer mixes).
    #[test]
    fn parser_agrees_with_pattern() {
        let re = regex::Regex::new(PATTERN).expect("pattern compiles");
        let alphabet = ["0", "1", "9", ".", "n", "u", "m", "s", "h", "d", "-", " "];
        let mut strings: Vec<String> = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for a in alphabet {
                    next.push(format!("{s}{a}"));
                }
            }
            strings.extend(next.iter().cloned());
            frontier = next;
        }
        for extra in [
            "1h30m",
            "1.5h30.25m",
            "10ms5us",
            "1m1m1m",
            "0.0s",
            "1.s5",
            "3mm",
            "3hs",
            "12.34.5s",
        ] {
            strings.push(extra.to_owned());
        }
        for s in &strings {
            assert_eq!(parse(s).is_ok(), re.is_match(s), "{s:?}");
        }
    }

    #[test]
    fn go_duration_keeps_its_text() {
        let d: GoDuration = serde_json::from_str("\"1m30s\"").expect("string");
        assert_eq!(d.as_str(), "1m30s");
        assert_eq!(d.get(), Ok(ms(90_000)));
        assert_eq!(serde_json::to_string(&d).expect("serializes"), "\"1m30s\"");
        let bad: GoDuration = serde_json::from_str("\"soon\"").expect("any string deserializes");
        assert_eq!(bad.get().map_err(|e| e.kind()), Err("syntax"));
    }
}

// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Value syntaxes of Go's flag packages, so manifests written for the original binary parse
//! unchanged: `time.ParseDuration` and `strconv.ParseBool`.

use std::time::Duration;

/// Parses a Go duration such as `1m`, `1m0s`, `90s`, `1.5m`, `300ms` or `-1h`.
///
/// Returns the signed length in nanoseconds, so callers can reject zero and negative values with
/// a message of their own.
pub fn parse_duration_nanos(text: &str) -> Result<i128, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected a number with a unit, e.g. 1m, 90s, 1.5m or 300ms"
        )
    };
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "missing unit in duration {text:?}: use ns, us, ms, s, m or h"
                ));
            }
            unit => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {text:?}: use ns, us, ms, s, m or h"
                ));
            }
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    // Go rejects durations beyond ~292 years (i64 nanoseconds).
    if total > i64::MAX as f64 {
        return Err(format!("duration {text:?} is too large"));
    }
    let nanos = total.round() as i128;
    Ok(if negative { -nanos } else { nanos })
}

/// Parses a positive Go duration (zero and negative values are errors).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let nanos = parse_duration_nanos(text)?;
    if nanos <= 0 {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("duration {text:?} is too large"))
}

/// Parses a boolean the way Go's `strconv.ParseBool` does.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean {text:?}: use true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_syntax() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1m", 60_000_000_000),
            ("1m0s", 60_000_000_000),
            ("90s", 90_000_000_000),
            ("1.5m", 90_000_000_000),
            ("300ms", 300_000_000),
            ("1h2m3s", 3_723_000_000_000),
            ("2us", 2_000),
            ("2µs", 2_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("-1s", -1_000_000_000),
            ("+2s", 2_000_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration_nanos(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (text, needle) in [
            ("", "invalid duration"),
            ("1", "missing unit"),
            ("60", "missing unit"),
            ("1d", "unknown unit \"d\""),
            ("m", "invalid duration"),
            ("1..5s", "invalid duration"),
            ("-", "invalid duration"),
            ("1m 2s", "unknown unit \"m \""),
            ("999999999999h", "too large"),
        ] {
            let err = parse_duration_nanos(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn positive_durations_only() {
        assert_eq!(parse_positive_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(
            parse_positive_duration("0")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            parse_positive_duration("-5s")
                .unwrap_err()
                .contains("greater than zero")
        );
    }

    #[test]
    fn booleans_as_go_parses_them() {
        for text in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(text), Ok(true), "{text}");
        }
        for text in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(text), Ok(false), "{text}");
        }
        for text in ["yes", "", "tRUE", "2"] {
            assert!(
                parse_bool(text).unwrap_err().contains("invalid boolean"),
                "{text}"
            );
        }
    }
}

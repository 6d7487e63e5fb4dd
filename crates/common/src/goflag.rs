// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Value syntaxes of Go's flag packages, so manifests written for the original binary parse
//! unchanged: `time.ParseDuration` and `strconv.ParseBool`.

use std::time::Duration;

/// Nanoseconds in the longest Go duration, `time.Duration(1<<63 - 1)`.
const MAX_GO_NANOS: u128 = (1 << 63) - 1;

/// Parses a Go duration such as `1m`, `1m0s`, `90s`, `1.5m`, `300ms` or `-1h`.
///
/// Returns the signed length in nanoseconds, so callers can reject zero and negative values with
/// a message of their own. Integer arithmetic, as in Go: what Go refuses as too large (beyond
/// 2^63-1 ns, or -2^63 ns) is refused here too, to the nanosecond.
pub fn parse_duration_nanos(text: &str) -> Result<i128, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid(text));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, after) = term(text, rest)?;
        total = total.checked_add(nanos).ok_or_else(|| too_large(text))?;
        if total > MAX_GO_NANOS + 1 {
            return Err(too_large(text));
        }
        rest = after;
    }
    signed(text, negative, total)
}

fn invalid(text: &str) -> String {
    format!("invalid duration {text:?}: expected a number with a unit, e.g. 1m, 90s, 1.5m or 300ms")
}

fn too_large(text: &str) -> String {
    format!("duration {text:?} is too large: Go durations end at 2562047h47m16.854775807s")
}

/// The number-unit term at the start of `rest` (a tail of the whole `text`, for messages):
/// its length in nanoseconds, and what follows it.
fn term<'a>(text: &str, rest: &'a str) -> Result<(u128, &'a str), String> {
    let (whole, fraction, rest) = number(text, rest)?;
    let (nanos_per_unit, rest) = unit(text, rest)?;
    Ok((nanos(text, whole, fraction, nanos_per_unit)?, rest))
}

/// The number at the start of `rest`, digits with at most one `.` and at least one digit:
/// its whole and fraction digits, and what follows it.
fn number<'a>(text: &str, rest: &'a str) -> Result<(&'a str, &'a str, &'a str), String> {
    let len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, rest) = rest.split_at(len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(invalid(text));
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    Ok((whole, fraction, rest))
}

/// The unit at the start of `rest`, everything up to the next number: its length in
/// nanoseconds, and what follows it.
fn unit<'a>(text: &str, rest: &'a str) -> Result<(u128, &'a str), String> {
    let len = rest
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(len);
    let nanos_per_unit = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
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
    Ok((nanos_per_unit, rest))
}

/// `whole.fraction` units of `nanos_per_unit` each, in whole nanoseconds (truncated, as Go
/// does).
fn nanos(text: &str, whole: &str, fraction: &str, nanos_per_unit: u128) -> Result<u128, String> {
    let whole = match whole.trim_start_matches('0') {
        "" => 0,
        digits => digits.parse::<u128>().map_err(|_| too_large(text))?,
    };
    let mut nanos = whole
        .checked_mul(nanos_per_unit)
        .ok_or_else(|| too_large(text))?;
    // Digits beyond the 20th are below a nanosecond even in hours; Go drops them too.
    let fraction = &fraction[..fraction.len().min(20)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| invalid(text))?;
        nanos += digits * nanos_per_unit / 10u128.pow(fraction.len() as u32);
    }
    Ok(nanos)
}

/// The signed duration, within Go's range of -2^63 ..= 2^63-1 nanoseconds.
fn signed(text: &str, negative: bool, total: u128) -> Result<i128, String> {
    let limit = if negative {
        MAX_GO_NANOS + 1
    } else {
        MAX_GO_NANOS
    };
    if total > limit {
        return Err(too_large(text));
    }
    let nanos = i128::try_from(total).map_err(|_| too_large(text))?;
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

/// Parses a Go duration that must lie within `min..=max`; the message names the bound.
pub fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let duration = parse_positive_duration(text)?;
    if duration < min {
        Err(format!(
            "duration {text:?} is below the minimum of {}",
            format_duration(min)
        ))
    } else if duration > max {
        Err(format!(
            "duration {text:?} is above the maximum of {}",
            format_duration(max)
        ))
    } else {
        Ok(duration)
    }
}

/// A duration in Go syntax, in its largest whole unit (`100ms`, `5m`, `24h`).
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let units: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    units
        .iter()
        .find(|(size, _)| nanos.is_multiple_of(*size))
        .map_or_else(String::new, |(size, unit)| {
            format!("{}{unit}", nanos / size)
        })
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

/// Refuses Go's trap (see [`bool_literal_after_bool_flag`]) as a usage error of `command`
/// that says what Go would do and how to write it instead.
pub fn refuse_bool_literal_after_bool_flag(
    command: &mut clap::Command,
    argv: &[std::ffi::OsString],
) -> Result<(), clap::Error> {
    match bool_literal_after_bool_flag(command, argv) {
        None => Ok(()),
        Some((flag, literal)) => Err(command.error(
            clap::error::ErrorKind::InvalidValue,
            format!(
                "{literal:?} after {flag} is not its value: Go would set {flag} to true and \
                 ignore {literal:?}; write {flag}={literal}"
            ),
        )),
    }
}

/// A command line as a program named `program` receives it with `args`: what the flag
/// parsing tests feed their parsers.
pub fn argv(program: &str, args: &[&str]) -> Vec<std::ffi::OsString> {
    std::iter::once(program)
        .chain(args.iter().copied())
        .map(std::ffi::OsString::from)
        .collect()
}

/// Go's trap: pflag reads `--daemon false` as `--daemon` (true) followed by a positional
/// argument `false`, which it ignores. Finds the first bool flag written without `=` whose next
/// argument is a bool literal, and returns the flag's name and that literal.
///
/// A bool flag is one that takes an optional value only after `=` (`require_equals`, zero or
/// one value); a flag that takes a value consumes the next argument, as in pflag.
/// Arguments after `--` are positional and never checked.
pub fn bool_literal_after_bool_flag(
    command: &clap::Command,
    argv: &[std::ffi::OsString],
) -> Option<(String, String)> {
    let mut args = argv
        .iter()
        .skip(1)
        .map(|arg| arg.to_string_lossy())
        .peekable();
    while let Some(arg) = args.next() {
        if arg == "--" {
            return None;
        }
        match flag_kind(command, &arg) {
            Some(FlagKind::Bool) => {
                if let Some(next) = args.peek().filter(|next| parse_bool(next).is_ok()) {
                    return Some((arg.into_owned(), next.clone().into_owned()));
                }
            }
            Some(FlagKind::Value) => {
                args.next();
            }
            Some(FlagKind::NoValue) | None => {}
        }
    }
    None
}

/// How a flag written as one argument takes its value, as pflag reads it.
enum FlagKind {
    /// A value only after `=`: a bool flag.
    Bool,
    /// The next argument is its value.
    Value,
    NoValue,
}

/// The kind of the flag `arg` names (`--long` or `-s`), or `None` when it names none or
/// carries its value after `=`.
fn flag_kind(command: &clap::Command, arg: &str) -> Option<FlagKind> {
    let found = if let Some(long) = arg.strip_prefix("--") {
        if long.contains('=') {
            return None;
        }
        command.get_arguments().find(|a| a.get_long() == Some(long))
    } else if let Some(short) = arg.strip_prefix('-').filter(|s| s.chars().count() == 1) {
        command
            .get_arguments()
            .find(|a| a.get_short().map(String::from).as_deref() == Some(short))
    } else {
        None
    }?;
    Some(if !found.get_action().takes_values() {
        FlagKind::NoValue
    } else if found.is_require_equals_set()
        && found
            .get_num_args()
            .is_some_and(|range| range.min_values() == 0)
    {
        FlagKind::Bool
    } else {
        FlagKind::Value
    })
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
            ("1.9ns", 1),
            ("0.000000001s", 1),
            (
                "000000000000000000000000000000000000000000001s",
                1_000_000_000,
            ),
            // Go's extremes, exactly.
            ("9223372036854775807ns", 9_223_372_036_854_775_807),
            ("2562047h47m16.854775807s", 9_223_372_036_854_775_807),
            ("-9223372036854775808ns", -9_223_372_036_854_775_808),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration_nanos(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn one_term_at_a_time() {
        // the rest of the text, the term's nanoseconds and what follows, or the error's start
        type Case<'a> = (&'a str, Result<(u128, &'a str), &'a str>);
        let cases: &[Case] = &[
            ("1h2m", Ok((3_600_000_000_000, "2m"))),
            ("1.5m2s", Ok((90_000_000_000, "2s"))),
            (".5s", Ok((500_000_000, ""))),
            ("5.s1ns", Ok((5_000_000_000, "1ns"))),
            ("0.0000000019s", Ok((1, ""))),
            ("2µs.5s", Ok((2_000, ".5s"))),
            ("7", Err("missing unit")),
            ("7 s", Err("unknown unit \" s\"")),
            (".s", Err("invalid duration")),
            ("1.2.3s", Err("invalid duration")),
            ("s", Err("invalid duration")),
        ];
        for (rest, want) in cases {
            match (term(rest, rest), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{rest}"),
                (Err(got), Err(start)) => assert!(got.starts_with(start), "{rest}: {got}"),
                (got, _) => panic!("{rest}: {got:?}"),
            }
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
            // One past Go's maximum, in three spellings.
            ("9223372036854775808ns", "too large"),
            ("2562047h47m16.854775808s", "too large"),
            ("2562048h", "too large"),
            ("-9223372036854775809ns", "too large"),
            ("99999999999999999999999999999999999999999h", "too large"),
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
    fn bounded_durations_name_the_bound() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(24 * 3600));
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("100ms", Ok(min)),
            ("24h", Ok(max)),
            ("1m", Ok(Duration::from_secs(60))),
            ("1ns", Err("duration \"1ns\" is below the minimum of 100ms")),
            ("99ms", Err("below the minimum of 100ms")),
            (
                "24h0m0.000000001s",
                Err("duration \"24h0m0.000000001s\" is above the maximum of 24h"),
            ),
            ("2562047h47m16.854775807s", Err("above the maximum of 24h")),
            ("2562047h47m16.854775808s", Err("too large")),
            ("0s", Err("greater than zero")),
        ];
        for (text, want) in cases {
            match (parse_duration_within(text, min, max), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(needle)) => assert!(got.contains(needle), "{text}: {got}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn durations_print_in_their_largest_whole_unit() {
        for (duration, want) in [
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_micros(5), "5us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(duration), want);
        }
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
    #[test]
    fn bool_literal_after_a_bool_flag_is_found() {
        use clap::{Arg, ArgAction, Command};
        let bool_flag = |name: &'static str| {
            Arg::new(name)
                .long(name)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .action(ArgAction::Set)
        };
        let command = Command::new("t")
            .arg(bool_flag("daemon"))
            .arg(bool_flag("setup-iptables"))
            .arg(Arg::new("interface").long("interface"))
            .arg(Arg::new("v").short('v').long("v"))
            .arg(Arg::new("rest").num_args(0..));
        let find = |args: &[&str]| {
            let argv: Vec<std::ffi::OsString> = std::iter::once("t")
                .chain(args.iter().copied())
                .map(Into::into)
                .collect();
            bool_literal_after_bool_flag(&command, &argv)
        };
        let hit = |flag: &str, literal: &str| Some((flag.to_string(), literal.to_string()));
        type Case<'a> = (&'a [&'a str], Option<(String, String)>);
        let cases: &[Case] = &[
            (&["--daemon", "false"], hit("--daemon", "false")),
            (&["--setup-iptables", "0"], hit("--setup-iptables", "0")),
            (&["--daemon", "True"], hit("--daemon", "True")),
            (&["x", "--daemon", "F", "y"], hit("--daemon", "F")),
            (&["--daemon=false", "false"], None),
            (&["--daemon", "no"], None),
            (&["--daemon", "--setup-iptables"], None),
            (
                &["--daemon", "--setup-iptables", "false"],
                hit("--setup-iptables", "false"),
            ),
            (&["--daemon"], None),
            // The value of a flag that takes one, even when it reads like a flag.
            (&["--interface", "--daemon", "false"], None),
            (&["--interface", "false"], None),
            (&["-v", "2", "--daemon", "1"], hit("--daemon", "1")),
            (&["--", "--daemon", "false"], None),
            (&["false"], None),
        ];
        for (args, want) in cases {
            assert_eq!(&find(args), want, "{args:?}");
        }
    }
}

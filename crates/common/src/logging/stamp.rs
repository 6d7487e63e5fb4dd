// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! A UTC timestamp, written in the shapes klog and zap use.

use std::fmt;

/// A UTC timestamp, written in the shapes klog and zap use.
pub(super) struct Stamp(pub(super) time::OffsetDateTime);

impl Stamp {
    pub(super) fn now() -> Stamp {
        Stamp(time::OffsetDateTime::now_utc())
    }

    /// klog's `mmdd hh:mm:ss.uuuuuu`.
    pub(super) fn klog(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.month_day(out, "")?;
        out.write_char(' ')?;
        self.time(out, ":")?;
        self.micros(out)
    }

    /// RFC 3339 with microseconds, `2026-11-30T14:39:27.273949Z`.
    pub(super) fn rfc3339(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "-")?;
        out.write_char('T')?;
        self.time(out, ":")?;
        self.micros(out)?;
        out.write_char('Z')
    }

    /// The time a klog file was created, in its header: `2026/11/30 14:39:27`.
    pub(super) fn file_header(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "/")?;
        out.write_char(' ')?;
        self.time(out, ":")
    }

    /// The start time in klog's file names: `20261130-143927`.
    pub(super) fn file_name(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "")?;
        out.write_char('-')?;
        self.time(out, "")
    }

    fn date(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        write!(out, "{:04}{separator}", self.0.year())?;
        self.month_day(out, separator)
    }

    fn month_day(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        let t = &self.0;
        write!(out, "{:02}{separator}{:02}", u8::from(t.month()), t.day())
    }

    fn time(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        let t = &self.0;
        write!(
            out,
            "{:02}{separator}{:02}{separator}{:02}",
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    fn micros(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(out, ".{:06}", self.0.microsecond())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// 2026-03-04 05:06:07.000089 UTC: every field padded.
    pub(in crate::logging) fn sample() -> Stamp {
        Stamp(
            time::OffsetDateTime::from_unix_timestamp_nanos(1_772_600_767_000_089_000)
                .expect("a time"),
        )
    }

    #[test]
    fn timestamps_in_every_shape() {
        let stamp = sample();
        let shown = |write: fn(&Stamp, &mut String) -> fmt::Result| {
            let mut out = String::new();
            write(&stamp, &mut out).expect("format");
            out
        };
        assert_eq!(shown(|s, out| s.klog(out)), "0304 05:06:07.000089");
        assert_eq!(
            shown(|s, out| s.rfc3339(out)),
            "2026-03-04T05:06:07.000089Z"
        );
        assert_eq!(shown(|s, out| s.file_header(out)), "2026/03/04 05:06:07");
        assert_eq!(shown(|s, out| s.file_name(out)), "20260304-050607");
    }
}

//! Cron schedules as Kubernetes reads them (robfig/cron v3 `ParseStandard`): five fields
//! `minute hour day-of-month month day-of-week` with `*`, `?`, lists, ranges, steps and
//! month/weekday names, the descriptors `@yearly @annually @monthly @weekly @daily
//! @midnight @hourly` and `@every <duration>`; evaluated in an IANA time zone.
//!
//! One parser serves API validation (`resource::validate::batch`, robfig's exact error
//! texts) and the CronJob controller (bit sets, next activation). Next times are
//! searched over the zone's wall clock: a wall time skipped by a DST change fires at the
//! first instant after the gap, a repeated one fires once (at its first occurrence).

use std::time::Duration;

use berth_proto::model::duration::parse_go_duration;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// How far ahead [`Schedule::next`] looks before deciding a schedule never fires
/// (robfig's five years: `0 0 30 2 *` has no next time).
const SEARCH_YEARS: i16 = 5;

/// Set when a field was `*` or `?` (robfig's `starBit`): day-of-month and day-of-week
/// combine with AND when either is a star, with OR otherwise.
const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields as bit sets (bit `n` = value `n`).
    Fields { minute: u64, hour: u64, dom: u64, month: u64, dow: u64 },
    /// `@every <duration>`: a fixed delay after the previous time, at second precision.
    Every(Duration),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const BOUNDS: [Bounds; 5] = [
    Bounds { min: 0, max: 59, names: &[] },
    Bounds { min: 0, max: 23, names: &[] },
    Bounds { min: 1, max: 31, names: &[] },
    Bounds { min: 1, max: 12, names: MONTHS },
    Bounds { min: 0, max: 6, names: DAYS },
];

impl Schedule {
    /// Parses a standard spec. A `TZ=`/`CRON_TZ=` prefix is refused (Kubernetes wants
    /// `spec.timeZone` instead).
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.contains("TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let fields = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if spec.starts_with("@every ") => {
                let text = spec["@every ".len()..].trim();
                let d = parse_go_duration(text).ok_or_else(|| {
                    let quoted = serde_json::to_string(text).unwrap_or_default();
                    format!("failed to parse duration {spec}: time: invalid duration {quoted}")
                })?;
                // robfig rounds below one second up to one second.
                return Ok(Schedule::Every(Duration::from_secs(d.as_secs().max(1))));
            }
            _ if spec.starts_with('@') => return Err(format!("unrecognized descriptor: {spec}")),
            _ => spec,
        };
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: [{}]", parts.len(), parts.join(" ")));
        }
        let mut sets = [0u64; 5];
        for (i, (field, b)) in parts.iter().zip(BOUNDS.iter()).enumerate() {
            for expr in field.split(',') {
                sets[i] |= parse_range(expr, b)?;
            }
        }
        let [minute, hour, dom, month, dow] = sets;
        Ok(Schedule::Fields { minute, hour, dom, month, dow })
    }

    /// The first activation strictly after `after`, in `tz`; `None` if there is none
    /// within five years.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match self {
            Schedule::Every(d) => {
                // robfig: t + delay, truncated to the second.
                let t = Timestamp::from_second(after.as_second()).ok()?;
                return t.checked_add(jiff::SignedDuration::try_from(*d).ok()?).ok();
            }
            Schedule::Fields { minute, hour, dom, month, dow } => (*minute, *hour, *dom, *month, *dow),
        };
        let start = after.to_zoned(tz.clone());
        let mut date: Date = start.date();
        let last = date.checked_add(SEARCH_YEARS.years()).ok()?;
        let has = |set: u64, v: i8| set & (1u64 << v as u32) != 0;
        while date <= last {
            let dom_match = has(dom, date.day());
            let dow_match = has(dow, date.weekday().to_sunday_zero_offset());
            let day_match =
                if dom & STAR != 0 || dow & STAR != 0 { dom_match && dow_match } else { dom_match || dow_match };
            if has(month, date.month()) && day_match {
                for h in (0..24).filter(|h| has(hour, *h)) {
                    for m in (0..60).filter(|m| has(minute, *m)) {
                        let civil = DateTime::from_parts(date, jiff::civil::time(h, m, 0, 0));
                        // `compatible`: a time in a DST gap moves past the gap; a repeated
                        // time takes its first occurrence.
                        let Ok(zoned) = tz.to_ambiguous_zoned(civil).compatible() else { continue };
                        if zoned.timestamp() > after {
                            return Some(zoned.timestamp());
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// One comma-separated element: `*`, `?`, `N`, `N-M`, each with an optional `/step`, as
/// a bit set (with [`STAR`] for an unstepped star).
fn parse_range(expr: &str, r: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (r.min, r.max)
    } else {
        let start = parse_int_or_name(low_high[0], r.names)?;
        let end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], r.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = r.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < r.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", r.min));
    }
    if end > r.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", r.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end).step_by(step as usize).fold(0u64, |acc, v| acc | (1 << v));
    Ok(bits | extra)
}

fn parse_int_or_name(expr: &str, names: &[&str]) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Months are 1-based, weekdays 0-based.
        return Ok(if names.len() == 12 { i as u32 + 1 } else { i as u32 });
    }
    must_parse_int(expr)
}

/// Go's `strconv.Atoi` with robfig's wording.
fn must_parse_int(expr: &str) -> Result<u32, String> {
    let quoted = serde_json::to_string(expr).unwrap_or_default();
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("failed to parse int from {expr}: strconv.Atoi: parsing {quoted}: invalid syntax"));
    }
    let n: i64 = expr
        .parse()
        .map_err(|_| format!("failed to parse int from {expr}: strconv.Atoi: parsing {quoted}: value out of range"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The time zone of a CronJob: `spec.timeZone` from the tz database, else UTC (Berth's
/// controller runs in UTC, where Kubernetes' would use its own local zone).
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_utc(spec: &str, after: &str) -> String {
        Schedule::parse(spec).unwrap().next(ts(after), &TimeZone::UTC).unwrap().to_string()
    }

    #[test]
    fn standard_fields() {
        assert_eq!(next_utc("* * * * *", "2024-01-01T00:00:30Z"), "2024-01-01T00:01:00Z");
        assert_eq!(next_utc("* * * * *", "2024-01-01T00:01:00Z"), "2024-01-01T00:02:00Z", "strictly after");
        assert_eq!(next_utc("*/15 * * * *", "2024-01-01T00:16:00Z"), "2024-01-01T00:30:00Z");
        assert_eq!(next_utc("30 6-16/4 * * 1-5", "2024-01-05T15:00:00Z"), "2024-01-08T06:30:00Z");
        assert_eq!(next_utc("0 0 29 feb *", "2024-03-01T00:00:00Z"), "2028-02-29T00:00:00Z");
        assert_eq!(next_utc("0 12 * JAN,jul SUN", "2024-01-01T00:00:00Z"), "2024-01-07T12:00:00Z");
        // Day-of-month OR day-of-week when both are restricted (robfig/Vixie cron).
        assert_eq!(next_utc("0 0 13 * 5", "2024-09-01T00:00:00Z"), "2024-09-06T00:00:00Z");
        // ... AND when one is a star.
        assert_eq!(next_utc("0 0 13 * *", "2024-09-01T00:00:00Z"), "2024-09-13T00:00:00Z");
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }

    #[test]
    fn macros() {
        let after = "2024-05-15T10:20:00Z";
        assert_eq!(next_utc("@yearly", after), "2025-01-01T00:00:00Z");
        assert_eq!(next_utc("@annually", after), "2025-01-01T00:00:00Z");
        assert_eq!(next_utc("@monthly", after), "2024-06-01T00:00:00Z");
        assert_eq!(next_utc("@weekly", after), "2024-05-19T00:00:00Z");
        assert_eq!(next_utc("@daily", after), "2024-05-16T00:00:00Z");
        assert_eq!(next_utc("@midnight", after), "2024-05-16T00:00:00Z");
        assert_eq!(next_utc("@hourly", after), "2024-05-15T11:00:00Z");
        assert_eq!(next_utc("@every 90s", "2024-05-15T10:20:00.5Z"), "2024-05-15T10:21:30Z");
        assert_eq!(next_utc("@every 1h30m", after), "2024-05-15T11:50:00Z");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in
            ["", "* * * *", "61 * * * *", "* * * * 8", "@fortnightly", "5-1 * * * *", "*/0 * * * *", "TZ=UTC * * * * *"]
        {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_zones() {
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(s.next(ts("2024-01-10T12:00:00Z"), &berlin).unwrap().to_string(), "2024-01-11T08:00:00Z");
        assert_eq!(s.next(ts("2024-07-10T12:00:00Z"), &berlin).unwrap().to_string(), "2024-07-11T07:00:00Z");
        // 02:30 does not exist on 2024-03-31 in Berlin: it fires right after the gap.
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(gap.next(ts("2024-03-30T12:00:00Z"), &berlin).unwrap().to_string(), "2024-03-31T01:30:00Z");
        assert!(time_zone(Some("Mars/Olympus")).is_err());
        assert_eq!(time_zone(None).unwrap(), TimeZone::UTC);
    }
}

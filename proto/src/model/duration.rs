//! Kubernetes durations, written once: as Kubernetes prints them (`duration.HumanDuration`,
//! the AGE of `kubectl get` and the "x ago" of `kubectl describe`, shared by the API
//! server's table printer and `berthctl`), and Go's `time.Duration` text (`"1m0.5s"`):
//! [`go_duration`] prints it, [`parse_go_duration`] reads it (`time.ParseDuration`, the
//! grammar of every duration in Kubernetes' and etcd's APIs and flags).

use chrono::Duration;

/// Kubernetes' `duration.HumanDuration` formatting used by AGE columns ("5s", "3m12s", "2d5h",
/// "<invalid>" for negative beyond tolerance...).
pub fn human_duration(d: Duration) -> String {
    // Go works on integer nanoseconds and truncates toward zero; i128 keeps that exact for any
    // chrono duration.
    let nanos = i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos());
    let seconds = nanos / 1_000_000_000;
    // Up to two seconds of clock skew between writer and reader still reads as "now".
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{years}y")
}

/// Go's `time.Duration.String()` at millisecond precision: `"15s"`, `"15.002s"`, `"1m0.5s"`.
pub fn go_duration(d: std::time::Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_string();
    }
    let (hours, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, ms) = (rest / 1000, rest % 1000);
    let seconds =
        if ms == 0 { format!("{secs}s") } else { format!("{secs}.{}s", format!("{ms:03}").trim_end_matches('0')) };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// Go's `time.ParseDuration` (`90s`, `1h30m`, `1.5h`, `500ms`, `0`); `None` for anything
/// else, and for negative durations (no caller has a use for them).
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of apimachinery's `pkg/util/duration/duration_test.go`, then a few more.
    #[test]
    fn human_duration_matches_kubernetes() {
        let ms = Duration::milliseconds;
        let s = Duration::seconds;
        let m = Duration::minutes;
        let h = Duration::hours;
        let d = |n: i64| Duration::hours(24 * n);
        let cases: Vec<(Duration, &str)> = vec![
            // TestHumanDuration
            (s(1), "1s"),
            (s(70), "70s"),
            (s(190), "3m10s"),
            (m(70), "70m"),
            (h(47), "47h"),
            (h(49), "2d1h"),
            (h(8 * 24 + 2), "8d"),
            (h(367 * 24), "367d"),
            (h(365 * 2 * 24 + 25), "2y1d"),
            (h(365 * 8 * 24 + 2), "8y"),
            // TestHumanDurationBoundaries
            (s(-2), "<invalid>"),
            (s(-2) + Duration::nanoseconds(1), "0s"),
            (s(0), "0s"),
            (s(1) - ms(1), "0s"),
            (m(2) - ms(1), "119s"),
            (m(2), "2m"),
            (m(2) + s(1), "2m1s"),
            (m(10) - ms(1), "9m59s"),
            (m(10), "10m"),
            (m(10) + s(1), "10m"),
            (h(3) - ms(1), "179m"),
            (h(3), "3h"),
            (h(3) + m(1), "3h1m"),
            (h(8) - ms(1), "7h59m"),
            (h(8), "8h"),
            (h(8) + m(59), "8h"),
            (d(2) - ms(1), "47h"),
            (d(2), "2d"),
            (d(2) + h(1), "2d1h"),
            (d(8) - ms(1), "7d23h"),
            (d(8), "8d"),
            (d(8) + h(23), "8d"),
            (d(2 * 365) - ms(1), "729d"),
            (d(2 * 365), "2y"),
            (d(2 * 365) + h(23), "2y"),
            (d(2 * 365) + h(23) + m(59), "2y"),
            (d(2 * 365) + h(24) - ms(1), "2y"),
            (d(2 * 365) + h(24), "2y1d"),
            (d(3 * 365), "3y"),
            (d(4 * 365), "4y"),
            (d(5 * 365), "5y"),
            (d(6 * 365), "6y"),
            (d(7 * 365), "7y"),
            (d(8 * 365) - ms(1), "7y364d"),
            (d(8 * 365), "8y"),
            (d(8 * 365) + d(364), "8y"),
            (d(9 * 365), "9y"),
            // Extra: a minute of skew is well beyond the tolerance.
            (m(-1), "<invalid>"),
            (s(-1), "0s"),
            (s(-5), "<invalid>"),
            (s(119), "119s"),
            (s(150), "2m30s"),
            (m(10), "10m"),
            (h(3) + m(1), "3h1m"),
            (h(10), "10h"),
            (d(3) + h(1), "3d1h"),
            (d(30), "30d"),
            (d(3 * 365) + d(1), "3y1d"),
        ];
        for (dur, want) in cases {
            assert_eq!(human_duration(dur), want, "{dur:?}");
        }
    }

    #[test]
    fn go_durations_print_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_millis(15_002)), "15.002s");
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(20_064)), "20.064s");
        assert_eq!(go_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(go_duration(Duration::from_millis(3_600_000)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        for d in [15_002u64, 60_500, 3_600_000, 0, 1] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_go_duration(&go_duration(d)), Some(d));
        }
    }

    #[test]
    fn go_durations_parse_like_go() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("-5s"), None);
        assert_eq!(parse_go_duration("15x"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}

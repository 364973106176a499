//! Durations as Kubernetes prints them: `duration.HumanDuration`, the AGE of `kubectl get`
//! and the "x ago" of `kubectl describe`, shared by the API server's table printer and
//! `berthctl`.

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
}

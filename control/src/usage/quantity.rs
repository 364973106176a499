//! Printing usage the way metrics-server does: CPU is `resource.NewScaledQuantity(nanocores,
//! -9)` and memory `resource.NewQuantity(bytes, BinarySI)`, both in `Quantity`'s canonical
//! form (`"329087452n"`, `"5m"`, `"2748180Ki"`, `"1500"`); windows are Go `Duration`
//! strings (`"15.002s"`, `"1m0.5s"`).

use std::time::Duration;

use berth_proto::model::quantity::{Format, Quantity};

/// CPU usage in nanocores, as metrics-server prints it (`"12345n"`, `"5m"`, `"0"`).
pub fn cpu(nanocores: u64) -> String {
    Quantity::from_scaled(i128::from(nanocores), -9, Format::DecimalSI).canonical()
}

/// Memory in bytes, as metrics-server prints it: BinarySI canonical form, so whole
/// kibibytes get `Ki` (`"2748180Ki"`, `"2Mi"`) and anything else stays in bytes.
pub fn memory(bytes: u64) -> String {
    Quantity::from_scaled(i128::from(bytes), 0, Format::BinarySI).canonical()
}

/// A milli-unit value as `resource.NewMilliQuantity(v, DecimalSI)` prints it (the HPA's
/// `averageValue`: `"250m"`, `"1"`, `"12582912"`).
pub fn milli(value: i64) -> String {
    Quantity::from_scaled(i128::from(value), -3, Format::DecimalSI).canonical()
}

/// Go's `time.Duration.String()` at millisecond precision: `"15s"`, `"15.002s"`, `"1m0.5s"`.
pub fn go_duration(d: Duration) -> String {
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

/// Parses a Go duration string (`"15.002s"`, `"1m0.5s"`, `"250ms"`); `None` if it is not one.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_nanos((total * 1e9).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_like_metrics_server() {
        assert_eq!(cpu(0), "0");
        assert_eq!(cpu(329_087_452), "329087452n");
        assert_eq!(cpu(12_345_000), "12345u");
        assert_eq!(cpu(5_000_000), "5m");
        assert_eq!(cpu(1_000_000_000), "1");
        assert_eq!(cpu(2_000_000_000_000), "2k");
        assert_eq!(cpu(1), "1n");
    }

    #[test]
    fn memory_like_metrics_server() {
        assert_eq!(memory(0), "0");
        assert_eq!(memory(512), "512");
        assert_eq!(memory(1500), "1500");
        assert_eq!(memory(2_814_136_320), "2748180Ki");
        assert_eq!(memory(2 * 1024 * 1024), "2Mi");
        assert_eq!(memory(3 * 1024 * 1024 * 1024), "3Gi");
        assert_eq!(memory(1025), "1025");
    }

    #[test]
    fn milli_values() {
        assert_eq!(milli(250), "250m");
        assert_eq!(milli(1000), "1");
        assert_eq!(milli(12_582_912_000), "12582912");
        assert_eq!(milli(5_000_000_000), "5M");
        assert_eq!(milli(0), "0");
    }

    #[test]
    fn go_durations() {
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
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("15x"), None);
    }
}

//! Printing usage the way metrics-server does: CPU is `resource.NewScaledQuantity(nanocores,
//! -9)` and memory `resource.NewQuantity(bytes, BinarySI)`, both in `Quantity`'s canonical
//! form (`"329087452n"`, `"5m"`, `"2748180Ki"`, `"1500"`); windows are Go `Duration`
//! strings (`"15.002s"`, `"1m0.5s"`), written and read by `berth_proto::model::duration`.

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
}

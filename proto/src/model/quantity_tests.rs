//! The shared table of quantity cases. Expected values are apimachinery's (`quantity_test.go`
//! and the `Quantity` documentation): every Berth caller relies on these, so a case that
//! changes here changes API errors, printed tables and scheduler arithmetic together.

use super::*;

#[test]
fn parses_and_prints_canonically() {
    // (input, nano-units, canonical form)
    let cases: &[(&str, i128, &str)] = &[
        ("0", 0, "0"),
        ("0n", 0, "0"),
        ("0Ki", 0, "0"),
        ("-0", 0, "0"),
        ("1", 1_000_000_000, "1"),
        ("+1", 1_000_000_000, "1"),
        ("-1", -1_000_000_000, "-1"),
        ("1.", 1_000_000_000, "1"),
        (".5", 500_000_000, "500m"),
        ("0.5", 500_000_000, "500m"),
        ("0.1", 100_000_000, "100m"),
        ("1.5", 1_500_000_000, "1500m"),
        ("2.25", 2_250_000_000, "2250m"),
        ("100m", 100_000_000, "100m"),
        ("1000m", 1_000_000_000, "1"),
        ("1500m", 1_500_000_000, "1500m"),
        ("250000u", 250_000_000, "250m"),
        ("1u", 1_000, "1u"),
        ("1n", 1, "1n"),
        ("329087452n", 329_087_452, "329087452n"),
        ("0.1m", 100_000, "100u"),
        ("100.035k", 100_035_000_000_000, "100035"),
        ("2000", 2_000_000_000_000, "2k"),
        ("1536", 1_536_000_000_000, "1536"),
        ("1024", 1_024_000_000_000, "1024"),
        ("128974848", 128_974_848_000_000_000, "128974848"),
        ("129M", 129_000_000_000_000_000, "129M"),
        ("1k", 1_000_000_000_000, "1k"),
        ("1G", 1_000_000_000_000_000_000, "1G"),
        ("1E", 1_000_000_000_000_000_000_000_000_000, "1E"),
        // Binary suffixes print in binary while the value is whole and at least 1024.
        ("1Ki", 1_024_000_000_000, "1Ki"),
        ("64Mi", 67_108_864_000_000_000, "64Mi"),
        ("123Mi", 128_974_848_000_000_000, "123Mi"),
        ("1024Mi", 1_073_741_824_000_000_000, "1Gi"),
        ("1536Mi", 1_610_612_736_000_000_000, "1536Mi"),
        ("0.5Gi", 536_870_912_000_000_000, "512Mi"),
        ("1.5Gi", 1_610_612_736_000_000_000, "1536Mi"),
        ("24684084Ki", 25_276_502_016_000_000_000, "24684084Ki"),
        ("1Ei", 1_152_921_504_606_846_976_000_000_000, "1Ei"),
        ("0.5Ki", 512_000_000_000, "512"),
        ("1.1Mi", 1_153_433_600_000_000, "1153433600m"),
        // Exponents keep their format.
        ("1e3", 1_000_000_000_000, "1e3"),
        ("1E3", 1_000_000_000_000, "1e3"),
        ("129e6", 129_000_000_000_000_000, "129e6"),
        ("1e-3", 1_000_000, "1e-3"),
        ("1500e-3", 1_500_000_000, "1500e-3"),
        ("1e0", 1_000_000_000, "1"),
        ("1e+3", 1_000_000_000_000, "1e3"),
        // Finer than nano rounds away from zero ("if you want some resources, you get some").
        ("0.0000000001", 1, "1n"),
        ("1.0001n", 2, "2n"),
        ("-0.0000000001", -1, "-1n"),
        ("1e-100", 1, "1e-9"),
        ("0.0000000000000000000000000000000000000000000000001", 1, "1n"),
        // Magnitudes are capped at 2^63 - 1 units.
        ("8Ei", 9_223_372_036_854_775_807_000_000_000, "9223372036854775807"),
        ("12e1000", 9_223_372_036_854_775_807_000_000_000, "9223372036854775807"),
        ("-1e1000", -9_223_372_036_854_775_807_000_000_000, "-9223372036854775807"),
        ("99999999999999999999999999999999999999999999", 9_223_372_036_854_775_807_000_000_000, "9223372036854775807"),
    ];
    for (input, nanos, canonical) in cases {
        let q = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(q.nanos(), *nanos, "{input}");
        assert_eq!(q.canonical(), *canonical, "{input}");
        assert_eq!(Quantity::parse(canonical).unwrap(), q, "{input}: canonical form reads back");
    }
}

#[test]
fn rejects_what_apimachinery_rejects() {
    let cases: &[(&str, QuantityError)] = &[
        ("", QuantityError::Format),
        (".", QuantityError::Format),
        ("-", QuantityError::Format),
        ("Gi", QuantityError::Format),
        ("abc", QuantityError::Format),
        ("1.5.3", QuantityError::Format),
        ("1x", QuantityError::Format),
        ("1 Gi", QuantityError::Format),
        (" 1", QuantityError::Format),
        ("1GB", QuantityError::Format),
        ("1KiB", QuantityError::Format),
        ("1e3e", QuantityError::Format),
        ("--1", QuantityError::Format),
        ("1Mi5", QuantityError::Suffix),
        ("5Xi", QuantityError::Format),
        ("5i", QuantityError::Suffix),
        ("1e", QuantityError::Suffix),
        ("1ki", QuantityError::Suffix),
        ("1e99999999999999999999", QuantityError::Suffix),
    ];
    for (input, error) in cases {
        assert_eq!(Quantity::parse(input), Err(*error), "{input:?}");
    }
    assert_eq!(QuantityError::Format.to_string(), FORMAT_ERROR);
    assert_eq!(QuantityError::Suffix.to_string(), "unable to parse quantity's suffix");
}

#[test]
fn coarser_scales_round_away_from_zero() {
    // (input, MilliValue, Value)
    let cases: &[(&str, i64, i64)] = &[
        ("100m", 100, 1),
        ("100.1m", 101, 1),
        ("1", 1000, 1),
        ("0.0001", 1, 1),
        ("1e3", 1_000_000, 1000),
        ("1Ki", 1_024_000, 1024),
        ("0.1Gi", 107_374_182_400, 107_374_183),
        ("128Mi", 134_217_728_000, 134_217_728),
        ("0", 0, 0),
        ("-100.5m", -101, -1),
        ("-1.5", -1500, -2),
        ("9Ei", i64::MAX, i64::MAX),
    ];
    for (input, milli, value) in cases {
        let q = Quantity::parse(input).unwrap();
        assert_eq!(q.milli_value(), *milli, "{input} milli");
        assert_eq!(q.value(), *value, "{input} value");
    }
    assert_eq!(Quantity::parse("250000u").unwrap().scaled_value(-9), 250_000_000);
    assert_eq!(Quantity::parse("1500").unwrap().scaled_value(3), 2, "kilo-units, rounded up");
}

#[test]
fn constructors_print_like_their_go_counterparts() {
    // NewScaledQuantity(nanocores, Nano), as metrics-server reports cpu.
    for (nanocores, printed) in [
        (0, "0"),
        (1, "1n"),
        (329_087_452, "329087452n"),
        (12_345_000, "12345u"),
        (5_000_000, "5m"),
        (1_000_000_000, "1"),
        (2_000_000_000_000, "2k"),
    ] {
        assert_eq!(Quantity::from_scaled(nanocores, -9, Format::DecimalSI).canonical(), printed);
    }
    // NewQuantity(bytes, BinarySI), as metrics-server reports memory.
    for (bytes, printed) in [
        (0, "0"),
        (512, "512"),
        (1025, "1025"),
        (1500, "1500"),
        (2_814_136_320, "2748180Ki"),
        (2 * 1024 * 1024, "2Mi"),
        (3 * 1024 * 1024 * 1024, "3Gi"),
    ] {
        assert_eq!(Quantity::from_scaled(bytes, 0, Format::BinarySI).canonical(), printed);
    }
    // NewMilliQuantity(v, DecimalSI).
    for (milli, printed) in [(250, "250m"), (1000, "1"), (12_582_912_000, "12582912"), (5_000_000_000, "5M")] {
        assert_eq!(Quantity::from_scaled(milli, -3, Format::DecimalSI).canonical(), printed);
    }
    assert_eq!(Quantity::from_scaled(15, -1, Format::DecimalSI).canonical(), "1500m");
    assert_eq!(Quantity::from_scaled(1, -10, Format::DecimalSI).canonical(), "1n", "finer than nano rounds up");
}

#[test]
fn sums_compare_and_keep_formats_as_go_does() {
    let parse = |s: &str| Quantity::parse(s).unwrap();
    let mut memory = Quantity::ZERO;
    memory.add(&parse("64Mi"));
    memory.add(&parse("128Mi"));
    assert_eq!(memory.canonical(), "192Mi", "a zero total takes the first addend's format");
    let mut cpu = Quantity::ZERO;
    cpu.add(&parse("100m"));
    cpu.add(&parse("0.9"));
    assert_eq!(cpu.canonical(), "1");
    let mut mixed = parse("1Gi");
    mixed.add(&parse("1G"));
    assert_eq!(mixed.canonical(), "2073741824", "the receiver keeps its format");
    mixed.sub(&parse("1G"));
    assert_eq!(mixed.canonical(), "1Gi");

    assert_eq!(parse("1"), parse("1000m"));
    assert_eq!(parse("1.5"), parse("1500m"));
    assert!(parse("1Gi") > parse("1G"));
    assert!(parse("500m") < parse("1"));
    assert!(parse("-100m").is_negative());
    assert!(!parse("0").is_negative() && parse("0").is_zero());
    assert_eq!(canonical_or_verbatim("1000m"), "1");
    assert_eq!(canonical_or_verbatim("bogus"), "bogus");
    assert_eq!("2Gi".parse::<Quantity>().unwrap().to_string(), "2Gi");
}

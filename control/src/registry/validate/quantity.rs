//! Kubernetes `resource.Quantity` parsing, comparison and canonical printing.
//!
//! A quantity is `<signedNumber><suffix>` where the suffix is a binary SI unit (`Ki`..`Ei`),
//! a decimal SI unit (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`). The value
//! is kept as an exact count of milli-units (rounded up, like `Quantity.MilliValue`), which
//! is the finest precision any validation rule here needs; i128 keeps `Ei` in range.

use std::cmp::Ordering;

/// How the quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    /// The value in thousandths of a unit, rounded up (toward +infinity) when finer.
    pub milli: i128,
    pub format: Format,
}

/// Kubernetes' `ErrFormatWrong` text.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// Kubernetes' `ErrSuffix` text.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// Parses a quantity string as `resource.ParseQuantity` does.
pub fn parse_quantity(input: &str) -> Result<Quantity, String> {
    let s = input;
    if s.is_empty() {
        return Err(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string()
        );
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &s[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &s[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(FORMAT_ERROR.to_string());
    }
    let suffix = &s[pos..];
    // The suffix may only use the characters of the Kubernetes regex; anything else
    // (a second '.', letters like 'x') is a format error, not a suffix error.
    let suffix_ok_chars = suffix
        .bytes()
        .enumerate()
        .all(|(i, c)| b"eEinumkKMGTP".contains(&c) || c.is_ascii_digit() || ((c == b'-' || c == b'+') && i > 0));
    if !suffix_ok_chars {
        return Err(FORMAT_ERROR.to_string());
    }
    let (format, base2_pow, base10_pow) = parse_suffix(suffix).ok_or_else(|| SUFFIX_ERROR.to_string())?;

    // value = digits * 10^(base10_pow - frac_len) * 2^base2_pow, in milli-units.
    let mut digits: String = format!("{int_digits}{frac_digits}");
    let trimmed = digits.trim_start_matches('0');
    digits = if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() };
    let mut scale = base10_pow + 3 - frac_digits.len() as i32;
    // Keep at most 38 significant digits so the mantissa fits i128; the rest only matter
    // beyond any precision Kubernetes itself keeps for validation.
    let mut rounded_away = false;
    if digits.len() > 36 {
        let drop = digits.len() - 36;
        rounded_away = digits[36..].bytes().any(|c| c != b'0');
        digits.truncate(36);
        scale += drop as i32;
    }
    let mut mantissa: i128 = digits.parse().map_err(|_| FORMAT_ERROR.to_string())?;
    if rounded_away {
        mantissa += 1;
    }
    let mut value = mantissa;
    for _ in 0..base2_pow {
        value = value.saturating_mul(2);
    }
    let mut inexact = false;
    if scale >= 0 {
        for _ in 0..scale {
            value = value.saturating_mul(10);
        }
    } else {
        for _ in 0..(-scale) {
            if value % 10 != 0 {
                inexact = true;
            }
            value /= 10;
        }
    }
    let milli = if negative {
        // Rounding up toward +infinity: truncation already did that for negatives.
        -value
    } else if inexact {
        value.saturating_add(1)
    } else {
        value
    };
    Ok(Quantity { milli, format })
}

/// Returns (format, power of two, power of ten) for a suffix, or None if unknown.
fn parse_suffix(suffix: &str) -> Option<(Format, u32, i32)> {
    let binary = |p: u32| Some((Format::BinarySI, p, 0));
    let decimal = |p: i32| Some((Format::DecimalSI, 0, p));
    match suffix {
        "" => decimal(0),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exp = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E'))?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) || digits.len() > 3 {
                return None;
            }
            let p: i32 = exp.parse().ok()?;
            Some((Format::DecimalExponent, 0, p))
        }
    }
}

/// True when the quantity is below zero.
pub fn is_negative(q: &Quantity) -> bool {
    q.milli < 0
}

impl Quantity {
    pub fn is_negative(&self) -> bool {
        is_negative(self)
    }

    /// Whether the value is a whole number of units (needed for integer resources like pods).
    pub fn is_integer(&self) -> bool {
        self.milli % 1000 == 0
    }

    /// The canonical form `Quantity.String()` would print (at milli precision).
    pub fn canonical(&self) -> String {
        if self.milli == 0 {
            return "0".to_string();
        }
        let sign = if self.milli < 0 { "-" } else { "" };
        let abs = self.milli.unsigned_abs();
        if self.format == Format::BinarySI && abs.is_multiple_of(1000) && abs / 1000 >= 1024 {
            let mut units = abs / 1000;
            let mut idx = 0;
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            while idx < 6 && units.is_multiple_of(1024) {
                units /= 1024;
                idx += 1;
            }
            return format!("{sign}{units}{}", SUFFIXES[idx]);
        }
        // Decimal: the largest power-of-1000 exponent that keeps the mantissa whole.
        let mut mantissa = abs;
        let mut exp: i32 = -3;
        while exp < 18 && mantissa.is_multiple_of(1000) {
            mantissa /= 1000;
            exp += 3;
        }
        let suffix = if self.format == Format::DecimalExponent {
            if exp == 0 {
                String::new()
            } else {
                format!("e{exp}")
            }
        } else {
            match exp {
                -3 => "m",
                0 => "",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                _ => "E",
            }
            .to_string()
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table() {
        let cases: &[(&str, i128)] = &[
            ("100m", 100),
            ("1", 1000),
            ("0.5", 500),
            ("+1", 1000),
            ("-1", -1000),
            (".5", 500),
            ("1.", 1000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1k", 1_000_000),
            ("1Ki", 1_024_000),
            ("1Gi", 1_073_741_824_000),
            ("1.5Gi", 1_610_612_736_000),
            ("128974848", 128_974_848_000),
            ("129e6", 129_000_000_000),
            ("123Mi", 128_974_848_000),
            ("1n", 1),
            ("1u", 1),
            ("0", 0),
            ("1Ei", 1_152_921_504_606_846_976_000),
        ];
        for (s, milli) in cases {
            assert_eq!(parse_quantity(s).map(|q| q.milli), Ok(*milli), "{s}");
        }
    }

    #[test]
    fn rejects_table() {
        for s in ["", "1.5.3", "abc", "1x", "Gi", "1GB", "1e", "--1", "1 Gi", ".", "1Mi5"] {
            assert!(parse_quantity(s).is_err(), "{s}");
        }
        assert_eq!(parse_quantity("1.5.3").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity("1KiB").unwrap_err(), FORMAT_ERROR);
        assert_eq!(parse_quantity("1Mi5").unwrap_err(), SUFFIX_ERROR);
    }

    #[test]
    fn negative_and_ordering() {
        assert!(is_negative(&parse_quantity("-100m").unwrap()));
        assert!(!parse_quantity("0").unwrap().is_negative());
        assert!(parse_quantity("1Gi").unwrap() > parse_quantity("1G").unwrap());
        assert!(parse_quantity("500m").unwrap() < parse_quantity("1").unwrap());
    }

    #[test]
    fn canonical_forms() {
        for (s, c) in [
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("2000", "2k"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("100", "100"),
            ("1e3", "1e3"),
            ("-2", "-2"),
        ] {
            assert_eq!(parse_quantity(s).unwrap().canonical(), c, "{s}");
        }
    }
}

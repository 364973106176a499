//! Kubernetes resource quantities (`100m`, `64Mi`, `1.5`, `2e3`) as kubectl's describers
//! use them: parsed exactly (nano-unit integers), summed (node "Allocated resources"),
//! compared (QoS class), and printed in apimachinery's canonical form (`1000m` → `1`,
//! `201326592` bytes summed from `Mi` values → `192Mi`).

use std::cmp::Ordering;

/// How a quantity prints (apimachinery's `Format`), taken from the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// An exact quantity: `nanos` is the value times 10^9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Zero, printed as `0` (Go's zero `Quantity`).
    pub fn zero() -> Quantity {
        Quantity { nanos: 0, format: Format::DecimalSI }
    }

    /// Parses a quantity string; None when it is not one.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (sign, rest) = match text.strip_prefix('-') {
            Some(r) => (-1, r),
            None => (1, text.strip_prefix('+').unwrap_or(text)),
        };
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // value = digits * 10^(-frac_len), kept as nanos when possible.
        let digits: String = format!("{int_part}{frac_part}");
        let mantissa: i128 = digits.parse().ok()?;
        let frac_len = frac_part.len() as i32;
        let (multiplier_num, multiplier_exp10, format): (i128, i32, Format) = match suffix {
            "" => (1, 0, Format::DecimalSI),
            "n" => (1, -9, Format::DecimalSI),
            "u" => (1, -6, Format::DecimalSI),
            "m" => (1, -3, Format::DecimalSI),
            "k" => (1, 3, Format::DecimalSI),
            "M" => (1, 6, Format::DecimalSI),
            "G" => (1, 9, Format::DecimalSI),
            "T" => (1, 12, Format::DecimalSI),
            "P" => (1, 15, Format::DecimalSI),
            "E" => (1, 18, Format::DecimalSI),
            "Ki" => (1 << 10, 0, Format::BinarySI),
            "Mi" => (1 << 20, 0, Format::BinarySI),
            "Gi" => (1 << 30, 0, Format::BinarySI),
            "Ti" => (1 << 40, 0, Format::BinarySI),
            "Pi" => (1 << 50, 0, Format::BinarySI),
            "Ei" => (1 << 60, 0, Format::BinarySI),
            other => {
                let exp = other.strip_prefix(['e', 'E'])?;
                (1, exp.parse().ok()?, Format::DecimalExponent)
            }
        };
        // nanos = mantissa * multiplier_num * 10^(exp10 - frac_len + 9), rounded up like
        // apimachinery rounds sub-nano precision.
        let exp = multiplier_exp10 - frac_len + 9;
        let base = mantissa.checked_mul(multiplier_num)?;
        let nanos = if exp >= 0 {
            base.checked_mul(10i128.checked_pow(exp as u32)?)?
        } else {
            let div = 10i128.checked_pow((-exp) as u32)?;
            (base + div - 1) / div
        };
        Some(Quantity { nanos: sign * nanos, format })
    }

    /// `MilliValue()` (rounded up).
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, 1_000_000)
    }

    /// `Value()`: whole units, rounded up.
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    /// `Add`: the sum keeps this quantity's format.
    pub fn add(&mut self, other: &Quantity) {
        if self.nanos == 0 && self.format == Format::DecimalSI && *self == Quantity::zero() {
            // Go's zero Quantity takes the format of the first value added (DeepCopy/Add).
            self.format = other.format;
        }
        self.nanos += other.nanos;
    }

    /// `Cmp`.
    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }

    /// apimachinery's canonical `String()`.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            // Small or fractional byte counts print in decimal, as apimachinery does.
            if self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0 {
                format = Format::DecimalSI;
            }
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        match format {
            Format::BinarySI => {
                let mut value = abs / NANO;
                let mut exp = 0;
                while exp < 6 && value % 1024 == 0 {
                    value /= 1024;
                    exp += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
                format!("{sign}{value}{suffix}")
            }
            Format::DecimalSI | Format::DecimalExponent => {
                // The largest exponent (a multiple of 3) that keeps the mantissa whole.
                let mut mantissa = abs;
                let mut exp10: i32 = -9;
                while exp10 < 18 && mantissa % 1000 == 0 {
                    mantissa /= 1000;
                    exp10 += 3;
                }
                if format == Format::DecimalExponent {
                    return if exp10 == 0 { format!("{sign}{mantissa}") } else { format!("{sign}{mantissa}e{exp10}") };
                }
                let suffix = match exp10 {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                format!("{sign}{mantissa}{suffix}")
            }
        }
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

/// A quantity string in canonical form (the text itself when it does not parse).
pub fn canonical(text: &str) -> String {
    Quantity::parse(text).map(|q| q.canonical()).unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (input, out) in [
            ("100m", "100m"),
            ("0.1", "100m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("2", "2"),
            ("2000", "2k"),
            ("64Mi", "64Mi"),
            ("1536", "1536"),
            ("1024", "1024"),
            ("1Ki", "1Ki"),
            ("24684084Ki", "24684084Ki"),
            ("1Gi", "1Gi"),
            ("0", "0"),
            ("1e3", "1e3"),
            ("128974848", "128974848"),
            ("129M", "129M"),
        ] {
            assert_eq!(canonical(input), out, "{input}");
        }
        assert_eq!(canonical("bogus"), "bogus");
    }

    #[test]
    fn sums_keep_the_first_format() {
        let mut total = Quantity::zero();
        total.add(&Quantity::parse("64Mi").unwrap());
        total.add(&Quantity::parse("128Mi").unwrap());
        assert_eq!(total.canonical(), "192Mi");
        let mut cpu = Quantity::zero();
        cpu.add(&Quantity::parse("100m").unwrap());
        cpu.add(&Quantity::parse("0.9").unwrap());
        assert_eq!(cpu.canonical(), "1");
        assert_eq!(Quantity::parse("250m").unwrap().milli_value(), 250);
        assert_eq!(Quantity::parse("1Ki").unwrap().value(), 1024);
        assert_eq!(Quantity::parse("1.5").unwrap().cmp_value(&Quantity::parse("1500m").unwrap()), Ordering::Equal);
    }
}

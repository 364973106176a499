//! Kubernetes `resource.Quantity`: the one parser, arithmetic and printer every Berth crate
//! uses for `100m`, `64Mi`, `1.5`, `2e3` and friends.
//!
//! The reference is apimachinery's `pkg/api/resource`, because every client compares our
//! output with its own:
//!
//! * **Grammar** (`parseQuantityString`): `[+-]? digits [. digits] suffix`, where the suffix
//!   is a run of `eEinumkKMGTP` optionally followed by a signed integer. A string outside the
//!   grammar is [`QuantityError::Format`]; inside it but with an unknown suffix (`1Mi5`, `1e`)
//!   it is [`QuantityError::Suffix`]. Both carry apimachinery's error texts, which API
//!   validation errors quote. Unlike apimachinery we insist on at least one digit (`Gi`, `.`,
//!   `-` are errors): every Berth caller always has, and the regular expression in the error
//!   text asks for one too.
//! * **Precision**: the value is exact to the nano-unit; anything finer is rounded *away from
//!   zero* (`ParseQuantity` rounds with `inf.RoundUp`: "if you want some resources, you should
//!   get some"), and magnitudes are capped at `2^63 - 1` units as apimachinery caps them.
//! * **Reading at a coarser scale** ([`Quantity::milli_value`], [`Quantity::value`],
//!   [`Quantity::scaled_value`]) also rounds away from zero, as `AsScale`/`ScaledValue` do.
//! * **Printing** ([`Quantity::canonical`], `Display`) is `Quantity.String()`: the largest
//!   exponent that is a multiple of three and keeps the mantissa whole, with the SI suffix of
//!   the format the quantity was written in; `BinarySI` values below 1024 or not whole fall
//!   back to decimal so no precision is lost.

use std::cmp::Ordering;
use std::fmt;

/// How a quantity prints (apimachinery's `Format`), taken from the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, ... `Ei`.
    BinarySI,
    /// `n`, `u`, `m`, none, `k`, `M`, ... `E`.
    DecimalSI,
    /// `e3`, `E-2`.
    DecimalExponent,
}

pub use crate::error::QuantityError;

/// apimachinery's `ErrFormatWrong` text.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// apimachinery's `ErrSuffix` text.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// apimachinery caps every parsed magnitude at `math.MaxInt64` units.
const MAX_NANOS: u128 = i64::MAX as u128 * NANOS_PER_UNIT as u128;

/// An exact quantity: the value in nano-units and the format it prints in.
///
/// Equality and order compare values only (`Quantity.Cmp`): `1` equals `1000m`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl Quantity {
    /// Go's zero `Quantity`, printed as `0`.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSI };

    /// Parses a quantity as `resource.ParseQuantity` does (see the module header).
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let parts = split(text)?;
        let (format, pow2, pow10) = interpret_suffix(parts.suffix).ok_or(QuantityError::Suffix)?;
        // value = digits × 2^pow2 × 10^(pow10 - fraction length); in nanos add 9 to the exponent.
        let exp_nanos = pow10.saturating_add(9).saturating_sub(parts.fraction.len() as i64);
        let magnitude = scale_digits(parts.integer.bytes().chain(parts.fraction.bytes()), pow2, exp_nanos);
        let nanos = magnitude as i128;
        Ok(Quantity { nanos: if parts.negative { -nanos } else { nanos }, format })
    }

    /// `value × 10^scale` in `format` (`resource.NewScaledQuantity`; `NewMilliQuantity` is
    /// scale -3, `NewQuantity` scale 0), rounded and capped like a parsed quantity.
    pub fn from_scaled(value: i128, scale: i32, format: Format) -> Quantity {
        let digits = value.unsigned_abs().to_string();
        let magnitude = scale_digits(digits.bytes(), 0, i64::from(scale) + 9) as i128;
        Quantity { nanos: if value < 0 { -magnitude } else { magnitude }, format }
    }

    /// The value in nano-units (exact).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// `ScaledValue(scale)`: the value in units of `10^scale`, rounded away from zero;
    /// saturates at the `i64` range (apimachinery's result is undefined there).
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let digits = self.nanos.unsigned_abs().to_string();
        // Rounding on the magnitude is rounding away from zero.
        let magnitude = scale_digits(digits.bytes(), 0, -9 - i64::from(scale));
        let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if self.nanos < 0 {
            -magnitude
        } else {
            magnitude
        }
    }

    /// `MilliValue()`: thousandths of a unit (millicores for cpu), rounded away from zero.
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// `Value()`: whole units (bytes, pods), rounded away from zero.
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// `Add`: the sum keeps this quantity's format, unless this one is zero (then it takes
    /// the format of what is added, so a total of `Mi` values prints in `Mi`).
    pub fn add(&mut self, other: &Quantity) {
        if self.nanos == 0 {
            self.format = other.format;
        }
        self.nanos += other.nanos;
    }

    /// `Sub`, with `Add`'s rule for the format.
    pub fn sub(&mut self, other: &Quantity) {
        if self.nanos == 0 {
            self.format = other.format;
        }
        self.nanos -= other.nanos;
    }

    /// `Quantity.String()`.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole_units = abs.is_multiple_of(NANOS_PER_UNIT as u128);
        if self.format == Format::BinarySI && whole_units && abs >= 1024 * NANOS_PER_UNIT as u128 {
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let (mut units, mut power) = (abs / NANOS_PER_UNIT as u128, 0);
            while power < 6 && units.is_multiple_of(1024) {
                units /= 1024;
                power += 1;
            }
            return format!("{sign}{units}{}", SUFFIXES[power]);
        }
        // Decimal: the largest multiple-of-three exponent that keeps the mantissa whole.
        let (mut mantissa, mut exp) = (abs, -9);
        while exp < 18 && mantissa.is_multiple_of(1000) {
            mantissa /= 1000;
            exp += 3;
        }
        let suffix = match (self.format, exp) {
            (_, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, e) => decimal_suffix(e).to_string(),
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

/// The canonical form of a quantity string, or the text itself when it is not a quantity
/// (printers show what they were given rather than nothing).
pub fn canonical_or_verbatim(text: &str) -> String {
    Quantity::parse(text).map_or_else(|_| text.to_string(), |q| q.canonical())
}

impl Default for Quantity {
    fn default() -> Quantity {
        Quantity::ZERO
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(text)
    }
}

/// The pieces of a quantity string, split as `parseQuantityString` splits them.
struct Parts<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
    suffix: &'a str,
}

fn split(text: &str) -> Result<Parts<'_>, QuantityError> {
    let bytes = text.as_bytes();
    let digits_from = |start: usize| start + bytes[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    let negative = bytes.first() == Some(&b'-');
    let mut pos = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let integer_end = digits_from(pos);
    let integer = &text[pos..integer_end];
    pos = integer_end;
    let mut fraction = "";
    if bytes.get(pos) == Some(&b'.') {
        let fraction_end = digits_from(pos + 1);
        fraction = &text[pos + 1..fraction_end];
        pos = fraction_end;
    }
    if integer.is_empty() && fraction.is_empty() {
        return Err(QuantityError::Format);
    }
    let suffix_start = pos;
    pos += bytes[pos..].iter().take_while(|c| b"eEinumkKMGTP".contains(c)).count();
    if matches!(bytes.get(pos), Some(b'-' | b'+')) {
        pos += 1;
    }
    if digits_from(pos) != bytes.len() {
        return Err(QuantityError::Format);
    }
    Ok(Parts { negative, integer, fraction, suffix: &text[suffix_start..] })
}

/// `(format, power of two, power of ten)` for a suffix (`interpretSuffix`), None if unknown.
fn interpret_suffix(suffix: &str) -> Option<(Format, u32, i64)> {
    let binary = |power: u32| Some((Format::BinarySI, power, 0));
    let decimal = |power: i64| Some((Format::DecimalSI, 0, power));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            // `strconv.ParseInt(suffix[1:], 10, 64)`: a signed decimal exponent.
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            Some((Format::DecimalExponent, 0, exponent.parse().ok()?))
        }
    }
}

fn decimal_suffix(exp: i32) -> &'static str {
    match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    }
}

/// `digits × 2^pow2 × 10^pow10`, rounded away from zero to a whole number and capped at
/// [`MAX_NANOS`]. Exact for any length of input: the digits are kept as a little-endian
/// base-10^9 big number, and the loops stop as soon as the cap or zero is reached, so a huge
/// exponent (`1e999999`) costs no more than a small one.
fn scale_digits(digits: impl Iterator<Item = u8>, pow2: u32, pow10: i64) -> u128 {
    const LIMB: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = vec![0];
    let mul_add = |limbs: &mut Vec<u64>, factor: u64, add: u64| {
        let mut carry = add;
        for limb in limbs.iter_mut() {
            let v = *limb * factor + carry;
            *limb = v % LIMB;
            carry = v / LIMB;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    };
    let to_u128 = |limbs: &[u64]| -> Option<u128> {
        limbs.iter().rev().try_fold(0u128, |acc, &l| acc.checked_mul(LIMB as u128)?.checked_add(l as u128))
    };
    let over_cap = |limbs: &[u64]| to_u128(limbs).is_none_or(|v| v > MAX_NANOS);
    for d in digits {
        mul_add(&mut limbs, 10, u64::from(d - b'0'));
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    if limbs == [0] {
        return 0;
    }
    for _ in 0..pow2 {
        mul_add(&mut limbs, 2, 0);
    }
    let mut inexact = false;
    if pow10 >= 0 {
        for _ in 0..pow10 {
            if over_cap(&limbs) {
                return MAX_NANOS;
            }
            mul_add(&mut limbs, 10, 0);
        }
    } else {
        for _ in 0..pow10.unsigned_abs() {
            if limbs == [0] {
                break;
            }
            let mut remainder = 0;
            for limb in limbs.iter_mut().rev() {
                let v = remainder * LIMB + *limb;
                *limb = v / 10;
                remainder = v % 10;
            }
            inexact |= remainder != 0;
            while limbs.len() > 1 && limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
    }
    match to_u128(&limbs) {
        Some(v) if v < MAX_NANOS => v + u128::from(inexact),
        _ => MAX_NANOS,
    }
}

#[cfg(test)]
#[path = "quantity_tests.rs"]
mod tests;

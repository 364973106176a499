//! `resource.Quantity` strings as the integers the scheduler compares: millicores for
//! cpu, bytes for memory, plain counts for pods.
//!
//! Kubernetes rounds a quantity *up* when it is read at a coarser scale (`MilliValue`,
//! `Value`), so a request of `0.0001` cpu still needs 1m; we do the same, which errs on
//! the side of not over-committing a node.

/// `quantity * 10^scale`, rounded up; `None` when the string is not a quantity.
/// Values beyond `i64` saturate (a node cannot hold more than that anyway).
pub fn parse_scaled(s: &str, scale: i32) -> Option<i64> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Mantissa: digits with at most one decimal point.
    let end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: i128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa.saturating_mul(10).saturating_add(i128::from(d - b'0'));
    }
    let mut exp10 = -(frac_part.len() as i32);
    let mut pow1024 = 0u32;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => pow1024 = 1,
        "Mi" => pow1024 = 2,
        "Gi" => pow1024 = 3,
        "Ti" => pow1024 = 4,
        "Pi" => pow1024 = 5,
        "Ei" => pow1024 = 6,
        other => {
            // Decimal exponent: `1e3`, `5E-2`.
            let exp = other.strip_prefix(['e', 'E'])?;
            exp10 += exp.parse::<i32>().ok().filter(|e| e.abs() <= 40)?;
        }
    }
    mantissa = mantissa.saturating_mul(1024i128.saturating_pow(pow1024));
    let exp = exp10 + scale;
    let magnitude = if exp >= 0 {
        mantissa.saturating_mul(10i128.checked_pow(exp as u32).unwrap_or(i128::MAX))
    } else {
        let divisor = 10i128.checked_pow((-exp) as u32);
        match divisor {
            // Rounds up (away from zero), as Quantity.MilliValue/Value do.
            Some(d) => (mantissa + d - 1) / d,
            None => i128::from(mantissa > 0),
        }
    };
    let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

/// Millicores.
pub fn milli(s: &str) -> Option<i64> {
    parse_scaled(s, 3)
}

/// Whole units (bytes, pods), rounded up.
pub fn value(s: &str) -> Option<i64> {
    parse_scaled(s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("0.5"), Some(500));
        assert_eq!(milli("2.25"), Some(2250));
        assert_eq!(milli("0.0001"), Some(1), "rounded up");
        assert_eq!(milli("1e3"), Some(1_000_000));
        assert_eq!(milli("1k"), Some(1_000_000));
        assert_eq!(milli("250000u"), Some(250));
        assert_eq!(milli("0"), Some(0));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(value("1Gi"), Some(1 << 30));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1.5Gi"), Some(3 << 29));
        assert_eq!(value("500"), Some(500));
        assert_eq!(value("100m"), Some(1), "a fraction of a byte is a byte");
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("9Ei"), Some(i64::MAX), "saturates");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "5Xi", ".", "1e", "Mi"] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
    }
}

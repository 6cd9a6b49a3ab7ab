//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), as `resource.Quantity` parses
//! them, reduced to the integer amounts placement needs.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A quantity string that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid resource quantity {0:?}: expected a number with an optional suffix \
     (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>), e.g. \"500m\" or \"2Gi\""
)]
pub struct QuantityError(pub String);

/// A non-negative quantity: `mantissa × 10^exp10 × 2^exp2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantity {
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses the Kubernetes quantity syntax. Negative quantities are refused (no request or
    /// limit may be negative).
    ///
    /// # Errors
    /// [`QuantityError`] when `s` is not a quantity.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let err = || QuantityError(s.to_owned());
        let t = s.trim();
        // One sign at most, as Kubernetes reads it. Not by recursion: a request body may hold a
        // quantity of a million '-', which would overflow the stack of the thread deciding it.
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(num_end);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(err());
        }
        let mut mantissa: u128 = 0;
        for d in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(d - b'0')))
                .ok_or_else(err)?;
        }
        let frac_digits = i32::try_from(frac.len()).map_err(|_| err())?;
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            _ => {
                let exp = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))
                    .ok_or_else(err)?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                (exp.parse::<i32>().map_err(|_| err())?, 0)
            }
        };
        // "-0" is a valid quantity of zero; anything else negative is refused.
        if negative && mantissa != 0 {
            return Err(err());
        }
        Ok(Self {
            mantissa,
            exp10: exp10.checked_sub(frac_digits).ok_or_else(err)?,
            exp2,
        })
    }

    /// The amount in whole units, rounded up (`Quantity.Value()`), saturating at `u64::MAX`.
    #[must_use]
    pub fn value(self) -> u64 {
        self.scaled_ceil(0)
    }

    /// The amount in thousandths, rounded up (`Quantity.MilliValue()`), saturating.
    #[must_use]
    pub fn milli_value(self) -> u64 {
        self.scaled_ceil(3)
    }

    fn scaled_ceil(self, extra_exp10: i32) -> u64 {
        if self.mantissa == 0 {
            return 0;
        }
        let e = self.exp10.saturating_add(extra_exp10);
        let two = 1u128.checked_shl(self.exp2);
        let n = two.and_then(|t| self.mantissa.checked_mul(t));
        let v = if e >= 0 {
            n.and_then(|n| {
                10u128
                    .checked_pow(e.unsigned_abs())
                    .and_then(|p| n.checked_mul(p))
            })
        } else {
            match (n, 10u128.checked_pow(e.unsigned_abs())) {
                (Some(n), Some(d)) => Some(n.div_ceil(d)),
                // Divided by more than 10^38: a positive amount below one unit.
                (Some(_), None) => Some(1),
                (None, _) => None,
            }
        };
        v.map_or(u64::MAX, |v| u64::try_from(v).unwrap_or(u64::MAX))
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a resource quantity")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                Quantity::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity {
                    mantissa: u128::from(v),
                    exp10: 0,
                    exp2: 0,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(QuantityError(v.to_string())))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_kubernetes_quantities() {
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("500m").value(), 1, "Value() rounds up");
        assert_eq!(q("2").milli_value(), 2_000);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q(".5").milli_value(), 500);
        assert_eq!(q("1.").value(), 1);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1k").value(), 1_000);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1e3").value(), 1_000);
        assert_eq!(q("1E3").value(), 1_000);
        assert_eq!(q("12e-1").value(), 2);
        assert_eq!(q("+3").value(), 3);
        assert_eq!(q(" 4 ").value(), 4);
        assert_eq!(q("-0").value(), 0);
        assert_eq!(q("0.0001m").milli_value(), 1, "MilliValue() rounds up");
        assert_eq!(q("1e-50").value(), 1);
        assert_eq!(q("16Ei").value(), u64::MAX, "saturates");
        assert_eq!(q("1e40").milli_value(), u64::MAX);
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        for bad in [
            "", "m", "1x", "1.2.3", "-1", "1Ki2", "1e", "1e+", "Gi", "1 Gi", "--1", "--0", "+-0",
            "- 0",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(
            Quantity::parse("7q")
                .unwrap_err()
                .to_string()
                .contains("\"7q\"")
        );
    }

    /// Signs were once stripped by recursion, one stack frame each: a long run of them in a
    /// pod's requests overflowed the deciding thread's stack and killed the scheduler.
    #[test]
    fn a_quantity_of_a_million_signs_is_refused_without_recursion() {
        let signs = format!("{}0", "-".repeat(1 << 20));
        let deciding_thread = std::thread::Builder::new().stack_size(256 << 10);
        let parsed = deciding_thread
            .spawn(move || Quantity::parse(&signs).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed, "more than one sign is not a quantity");
    }

    #[test]
    fn decodes_strings_and_numbers() {
        let v: Vec<Quantity> = serde_json::from_str(r#"["250m", 3, 0.25]"#).unwrap();
        assert_eq!(v[0].milli_value(), 250);
        assert_eq!(v[1].milli_value(), 3_000);
        assert_eq!(v[2].milli_value(), 250);
        assert!(serde_json::from_str::<Quantity>("-2").is_err());
        assert!(serde_json::from_str::<Quantity>("\"lots\"").is_err());
    }
}

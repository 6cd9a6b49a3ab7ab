//! Float-to-integer conversion for the simulator's hot loop.

/// `x as u64` for the simulator's amounts, which stay far below 2^63: through `i64`, one
/// conversion instruction and a fix-up instead of the dozen of a `u64` conversion on x86-64
/// without AVX-512. The same value as `x as u64` for every `x` below 2^63 (NaN and negative
/// numbers give 0 as well); 2^63 and above give `i64::MAX`.
#[inline]
#[must_use]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn to_u64(x: f64) -> u64 {
    let v = x as i64;
    if v < 0 { 0 } else { v as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn to_u64_is_as_u64_below_two_to_the_63() {
        for x in [
            0.0,
            -0.0,
            0.49,
            0.5,
            1.999_999,
            -1.5,
            -1e300,
            f64::NAN,
            f64::NEG_INFINITY,
            4.5e15,
            9.2e18,
            (1u64 << 53) as f64,
        ] {
            assert_eq!(to_u64(x), x as u64, "{x}");
        }
        assert_eq!(to_u64(f64::INFINITY), i64::MAX as u64);
    }
}

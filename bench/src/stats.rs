//! Medians with bootstrap 95 % confidence intervals (percentile bootstrap, fixed seed so a
//! table is reproducible from its CSV).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 10_000;

/// The median of `v` (mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// A median and its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// The median of the samples.
    pub median: f64,
    /// 2.5th percentile of the bootstrap medians.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap medians.
    pub hi: f64,
    /// Samples.
    pub n: usize,
}

impl Estimate {
    /// The median of `v` with its interval.
    pub fn of(v: &[f64]) -> Self {
        let m = median(v);
        if v.len() < 2 {
            return Self {
                median: m,
                lo: m,
                hi: m,
                n: v.len(),
            };
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0x636f_6c6f);
        let mut meds = Vec::with_capacity(RESAMPLES);
        let mut buf = vec![0.0; v.len()];
        for _ in 0..RESAMPLES {
            for b in &mut buf {
                *b = v[rng.random_range(0..v.len())];
            }
            meds.push(median(&buf));
        }
        meds.sort_by(f64::total_cmp);
        let at = |q: f64| meds[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
        Self {
            median: m,
            lo: at(0.025),
            hi: at(0.975),
            n: v.len(),
        }
    }

    /// `median [lo, hi]` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.median.is_nan() {
            return "–".into();
        }
        if self.n < 2 {
            return format!("{:.digits$}", self.median);
        }
        format!(
            "{:.digits$} [{:.digits$}, {:.digits$}]",
            self.median, self.lo, self.hi
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_intervals() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!(e.median, 3.0);
        assert!(
            e.lo >= 1.0 && e.lo <= 3.0 && e.hi >= 3.0 && e.hi <= 100.0,
            "{e:?}"
        );
        assert_eq!(Estimate::of(&[5.0]).show(1), "5.0");
        // Same input, same interval.
        assert_eq!(
            Estimate::of(&[1.0, 5.0, 2.0, 8.0]),
            Estimate::of(&[1.0, 5.0, 2.0, 8.0])
        );
    }
}

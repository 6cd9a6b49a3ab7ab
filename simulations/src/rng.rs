//! Seeded randomness that does not depend on the order in which nodes are stepped.
//!
//! Node-level noise comes from a counter-based hash of `(seed, node, step, stream)`, so a node's
//! trace is the same whichever thread steps it and whatever else happened. Cluster-level draws
//! (job arrivals, placement tie-breaks) use one `ChaCha8Rng` per run, drawn in a fixed order.

use rand::Rng;

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
#[must_use]
pub const fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash of several words (order matters).
#[must_use]
pub const fn hash(seed: u64, a: u64, b: u64, c: u64) -> u64 {
    mix64(mix64(mix64(mix64(seed) ^ a) ^ b) ^ c)
}

/// Uniform in `[0, 1)` from a hash.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal from two hashes (Box–Muller).
#[must_use]
pub fn normal(h1: u64, h2: u64) -> f64 {
    let u1 = unit(h1).max(1e-300);
    let u2 = unit(h2);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An approximately standard normal from one hash: the sum of four 16-bit uniforms, centred
/// and scaled (Irwin–Hall; cheap enough for every node at every step, no `ln` or `cos`).
#[must_use]
pub fn fast_normal(h: u64) -> f64 {
    let s = (h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48);
    // Four U(0,1): mean 2, variance 4/12.
    #[allow(clippy::cast_precision_loss)]
    let x = s as f64 / 65_536.0;
    (x - 2.0) * 3f64.sqrt()
}

/// A standard normal drawn from `rng`.
pub fn normal_from<R: Rng>(rng: &mut R) -> f64 {
    normal(rng.next_u64(), rng.next_u64())
}

/// A Poisson count with mean `lambda` drawn from `rng` (Knuth's method below 30, a rounded
/// normal above).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn poisson<R: Rng>(rng: &mut R, lambda: f64) -> u32 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut k = 0u32;
        let mut p = unit(rng.next_u64());
        while p > limit {
            k += 1;
            p *= unit(rng.next_u64());
        }
        k
    } else {
        let x = lambda + lambda.sqrt() * normal_from(rng);
        x.round().max(0.0) as u32
    }
}

/// Picks an index by weight (weights need not sum to 1).
pub fn pick<R: Rng>(rng: &mut R, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = unit(rng.next_u64()) * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// Uniform in `[lo, hi)` from `rng`.
pub fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn poisson_and_normal_have_the_right_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for lambda in [0.5, 4.0, 100.0] {
            let n = 20_000;
            let sum: u64 = (0..n).map(|_| u64::from(poisson(&mut rng, lambda))).sum();
            #[allow(clippy::cast_precision_loss)]
            let mean = sum as f64 / f64::from(n);
            assert!(
                (mean - lambda).abs() < 0.05 * lambda + 0.05,
                "{lambda}: {mean}"
            );
        }
        let xs: Vec<f64> = (0..20_000).map(|_| normal_from(&mut rng)).collect();
        #[allow(clippy::cast_precision_loss)]
        let var = xs.iter().map(|x| x * x).sum::<f64>() / xs.len() as f64;
        assert!((var - 1.0).abs() < 0.05, "{var}");
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn fast_normal_has_unit_variance() {
        let n = 50_000u64;
        let xs: Vec<f64> = (0..n).map(|i| fast_normal(hash(3, i, 0, 0))).collect();
        #[allow(clippy::cast_precision_loss)]
        let (mean, var) = (
            xs.iter().sum::<f64>() / n as f64,
            xs.iter().map(|x| x * x).sum::<f64>() / n as f64,
        );
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "{mean} {var}"
        );
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(hash(1, 2, 3, 4), hash(1, 2, 3, 4));
        assert_ne!(hash(1, 2, 3, 4), hash(1, 2, 4, 3));
        assert!((0.0..1.0).contains(&unit(u64::MAX)));
    }
}

//! CPU and memory amounts, and the capacity a node can give to batch work.

use super::params::HeadroomParams;

/// An amount of CPU and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    pub cpu_millicores: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Self = Self {
        cpu_millicores: 0,
        memory_bytes: 0,
    };

    /// An amount from millicores and bytes.
    #[must_use]
    pub const fn new(cpu_millicores: u64, memory_bytes: u64) -> Self {
        Self {
            cpu_millicores,
            memory_bytes,
        }
    }

    /// `self − other` per resource, floored at zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self {
            cpu_millicores: self.cpu_millicores.saturating_sub(other.cpu_millicores),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }

    /// `self + other` per resource, capped at the maximum.
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self {
            cpu_millicores: self.cpu_millicores.saturating_add(other.cpu_millicores),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    /// True when `self` fits in `available` for every resource.
    #[must_use]
    pub const fn fits_in(self, available: Self) -> bool {
        self.cpu_millicores <= available.cpu_millicores
            && self.memory_bytes <= available.memory_bytes
    }
}

/// Capacity held back from batch work for online bursts: `params` percent of `capacity`
/// (percentages outside 0..100, or NaN, are clamped; NaN holds nothing back).
#[must_use]
pub fn headroom(capacity: Resources, params: &HeadroomParams) -> Resources {
    Resources {
        cpu_millicores: percent_of(capacity.cpu_millicores, params.cpu_percent),
        memory_bytes: percent_of(capacity.memory_bytes, params.memory_percent),
    }
}

/// What batch work may use on a node: capacity − online usage − headroom, per resource, never
/// negative. Offline usage is not subtracted: the result is the whole batch budget, of which
/// running batch work already holds a part.
#[must_use]
pub fn reclaimable(capacity: Resources, online_usage: Resources, headroom: Resources) -> Resources {
    capacity
        .saturating_sub(online_usage)
        .saturating_sub(headroom)
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn percent_of(amount: u64, percent: f64) -> u64 {
    let p = if percent.is_nan() {
        0.0
    } else {
        percent.clamp(0.0, 100.0)
    };
    // Rounded up so a headroom is never smaller than asked; `as` saturates, and the product is
    // at most `amount`.
    ((amount as f64) * p / 100.0).ceil().min(amount as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn reclaimable_subtracts_online_and_headroom() {
        let cap = Resources::new(16_000, 64 * GIB);
        let online = Resources::new(6_000, 20 * GIB);
        let head = headroom(cap, &HeadroomParams::default());
        assert_eq!(head, Resources::new(1_600, 64 * GIB / 10 + 1));
        let r = reclaimable(cap, online, head);
        assert_eq!(r.cpu_millicores, 8_400);
        assert_eq!(r.memory_bytes, 64 * GIB - 20 * GIB - head.memory_bytes);
    }

    #[test]
    fn reclaimable_is_never_negative() {
        let cap = Resources::new(4_000, 8 * GIB);
        let online = Resources::new(5_000, 9 * GIB);
        assert_eq!(reclaimable(cap, online, Resources::ZERO), Resources::ZERO);
        let almost = Resources::new(3_900, 8 * GIB - 1);
        assert_eq!(
            reclaimable(cap, almost, Resources::new(1_000, 1)),
            Resources::ZERO
        );
    }

    #[test]
    fn headroom_clamps_odd_percentages() {
        let cap = Resources::new(1_000, 1_000);
        let p = |c, m| HeadroomParams {
            cpu_percent: c,
            memory_percent: m,
        };
        assert_eq!(headroom(cap, &p(-5.0, 250.0)), Resources::new(0, 1_000));
        assert_eq!(headroom(cap, &p(f64::NAN, 100.0)), Resources::new(0, 1_000));
        assert_eq!(headroom(cap, &p(33.3, 0.0)), Resources::new(333, 0));
        let huge = Resources::new(u64::MAX, u64::MAX);
        assert!(headroom(huge, &p(100.0, 100.0)).fits_in(huge));
    }

    #[test]
    fn fits_and_arithmetic() {
        let a = Resources::new(500, 10);
        assert!(a.fits_in(Resources::new(500, 10)));
        assert!(!a.fits_in(Resources::new(499, 10)));
        assert!(!a.fits_in(Resources::new(500, 9)));
        assert_eq!(
            a.saturating_add(Resources::new(u64::MAX, 1)),
            Resources::new(u64::MAX, 11)
        );
    }
}

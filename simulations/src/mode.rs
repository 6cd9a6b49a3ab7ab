//! The modes the simulator compares, and what they need beyond the run's configuration.

use crate::controller::StaticReservation;

/// One of the modes the simulator compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Online nodes run online only; batch runs on the dedicated batch pool.
    NoColocation,
    /// A fixed share of every online node for batch, in a low-weight cgroup.
    StaticReservation,
    /// colo's policy engine, enforcing.
    Colo,
    /// colo's policy engine in observe mode: it decides, nothing is applied.
    Observe,
}

impl Mode {
    /// Every mode, in the order of the comparison table.
    pub const ALL: [Self; 4] = [
        Self::NoColocation,
        Self::StaticReservation,
        Self::Colo,
        Self::Observe,
    ];

    /// The mode's name in tables, CSV and on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NoColocation => "no-colocation",
            Self::StaticReservation => "static-reservation",
            Self::Colo => "colo",
            Self::Observe => "colo-observe",
        }
    }

    /// Parses a name (as [`Mode::name`], or the short forms `none`, `static`, `observe`).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "no-colocation" | "none" => Some(Self::NoColocation),
            "static-reservation" | "static" => Some(Self::StaticReservation),
            "colo" => Some(Self::Colo),
            "colo-observe" | "observe" => Some(Self::Observe),
            _ => None,
        }
    }
}

/// What the modes need beyond the shared [`SimConfig`].
#[derive(Clone, Debug)]
pub struct ModeSettings {
    /// The static reservation's shares.
    pub static_reservation: StaticReservation,
    /// colo's policy, for the colo and observe modes.
    pub policy: Option<colo_config::Policy>,
}

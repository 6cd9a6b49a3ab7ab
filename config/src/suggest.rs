//! "Did you mean …?" for misspelt field names and values.

/// The candidate closest to `input`, if one is close enough to be a plausible typo.
///
/// Spelling variants (`evictAt`, `evict-at`, `EVICT_AT`) match `evict_at` outright; otherwise
/// the optimal-string-alignment distance must be small for the word's length.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let folded = fold(input);
    if let Some(exact) = candidates.iter().find(|c| fold(c) == folded) {
        return Some(exact);
    }
    let budget = match folded.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(&folded, &fold(c)), *c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &[
        "headroom",
        "min_offline_quota",
        "step_up",
        "step_down",
        "cfs_period",
    ];

    #[test]
    fn typos_find_the_intended_field() {
        assert_eq!(did_you_mean("hedroom", FIELDS), Some("headroom"));
        assert_eq!(did_you_mean("step_dwon", FIELDS), Some("step_down"));
        assert_eq!(did_you_mean("cfsPeriod", FIELDS), Some("cfs_period"));
        assert_eq!(
            did_you_mean("min-offline-quota", FIELDS),
            Some("min_offline_quota")
        );
    }

    #[test]
    fn unrelated_words_get_no_suggestion() {
        assert_eq!(did_you_mean("banana", FIELDS), None);
        assert_eq!(did_you_mean("x", FIELDS), None);
    }
}

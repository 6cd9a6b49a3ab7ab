//! Client input echoed back in an error or an audit line is cut short first.

/// Longest input echoed back in an error or an audit line.
pub const ECHO_LIMIT: usize = 96;

/// `s` cut to [`ECHO_LIMIT`] characters (with the size of what was cut), so that neither an
/// error nor an audit line echoes a huge input back.
pub fn truncate(s: &str) -> String {
    let n = s.chars().count();
    if n <= ECHO_LIMIT {
        return s.to_string();
    }
    let head: String = s.chars().take(ECHO_LIMIT).collect();
    format!("{head}… ({n} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(100_000);
        let t = truncate(&long);
        assert!(t.len() < 400, "{}", t.len());
        assert!(t.ends_with("(100000 characters)"), "{t}");
    }
}

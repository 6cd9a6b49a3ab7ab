//! Plain-text tables and human-friendly values.

/// Renders rows under a header, columns padded to their widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `3s`, `4m12s`, `2h5m`, `3d4h` for a duration in milliseconds.
pub fn age(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `512MiB`, `2GiB`, `3.5GiB`, `1.5TiB` for bytes.
pub fn bytes(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;
    if b >= TIB {
        if b.is_multiple_of(TIB) {
            format!("{}TiB", b / TIB)
        } else {
            format!("{:.1}TiB", b as f64 / TIB as f64)
        }
    } else if b >= GIB {
        if b.is_multiple_of(GIB) {
            format!("{}GiB", b / GIB)
        } else {
            format!("{:.1}GiB", b as f64 / GIB as f64)
        }
    } else {
        format!("{}MiB", b >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = render(
            &["ID", "STATE"],
            &[
                vec!["j-1".into(), "running".into()],
                vec!["j-22".into(), "failed".into()],
            ],
        );
        assert_eq!(t, "ID    STATE\nj-1   running\nj-22  failed\n");
        assert_eq!(age(61_000), "1m1s");
        assert_eq!(age(90_000_000), "1d1h");
        assert_eq!(bytes(3 << 29), "1.5GiB");
        assert_eq!(bytes(64 << 20), "64MiB");
        assert_eq!(bytes(3 << 39), "1.5TiB");
        assert_eq!(bytes(2 << 40), "2TiB");
    }
}

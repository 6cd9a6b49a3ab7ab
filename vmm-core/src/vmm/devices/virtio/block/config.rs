//! The `--disk` option: a raw file with its access mode and token-bucket limits.

use std::path::PathBuf;

/// `--disk PATH[,ro][,bw=BYTES_PER_S][,iops=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Raw backing file.
    pub path: PathBuf,
    /// Read-only for the guest.
    pub read_only: bool,
    /// Bandwidth limit, bytes per second (0 = unlimited).
    pub bw: u64,
    /// Operations per second (0 = unlimited).
    pub iops: u64,
}

/// Parses `8MiB`, `512K`, `1G`, `1000` (binary units; `B`, `iB` optional).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

impl DiskConfig {
    /// Parses `PATH[,ro][,bw=BYTES_PER_S][,iops=N]` (bw takes units: `bw=8MiB`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(',');
        let path = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("--disk `{spec}`: give PATH[,ro][,bw=BYTES_PER_S][,iops=N]"))?;
        let mut cfg = Self {
            path: PathBuf::from(path),
            read_only: false,
            bw: 0,
            iops: 0,
        };
        for p in parts {
            match p.split_once('=') {
                None if p == "ro" => cfg.read_only = true,
                Some(("bw", v)) => {
                    cfg.bw = parse_size(v).ok_or_else(|| {
                        format!("--disk `{spec}`: bw={v} is not a size (e.g. bw=8MiB, bw=1048576)")
                    })?
                }
                Some(("iops", v)) => {
                    cfg.iops = v
                        .parse()
                        .map_err(|_| format!("--disk `{spec}`: iops={v} is not a whole number"))?
                }
                _ => {
                    return Err(format!(
                        "--disk `{spec}`: unknown option `{p}` (options: ro, bw=, iops=)"
                    ));
                }
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_parse() {
        assert_eq!(
            DiskConfig::parse("/d.img,ro,bw=8MiB,iops=100").unwrap(),
            DiskConfig {
                path: "/d.img".into(),
                read_only: true,
                bw: 8 << 20,
                iops: 100
            }
        );
        assert_eq!(DiskConfig::parse("/d.img").unwrap().bw, 0);
        assert_eq!(DiskConfig::parse("x,bw=1048576").unwrap().bw, 1 << 20);
        for bad in ["", ",ro", "x,bw=fast", "x,iops=-1", "x,speed=1"] {
            assert!(DiskConfig::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("1T"), None);
    }
}

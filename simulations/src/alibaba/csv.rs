//! Reading the trace's CSV files: no header row, no quoting, a fixed number of columns per
//! table; every problem is reported with the file and line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::AlibabaError;

/// Most columns of any table (batch_instance has 14).
pub const MAX_COLUMNS: usize = 16;

/// Calls `f(fields, line_number)` for every non-empty line of `path`, which must have exactly
/// `columns` comma-separated fields. An `Err(message)` from `f` stops the read and becomes
/// [`AlibabaError::Row`] naming the file and line.
///
/// # Errors
/// [`AlibabaError::Io`] when the file cannot be read, [`AlibabaError::Row`] for a malformed row.
pub fn for_each_row<F>(path: &Path, columns: usize, mut f: F) -> Result<u64, AlibabaError>
where
    F: FnMut(&[&str], u64) -> Result<(), String>,
{
    let file = File::open(path).map_err(|source| AlibabaError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut n = 0u64;
    let mut rows = 0u64;
    loop {
        line.clear();
        let got = r.read_line(&mut line).map_err(|source| AlibabaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if got == 0 {
            break;
        }
        n += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let row_err = |message: String| AlibabaError::Row {
            path: path.display().to_string(),
            line: n,
            message,
        };
        let mut split: [&str; MAX_COLUMNS] = [""; MAX_COLUMNS];
        let mut count = 0;
        for part in text.split(',') {
            if count < MAX_COLUMNS {
                split[count] = part;
            }
            count += 1;
        }
        if count != columns {
            return Err(row_err(format!(
                "{count} columns, this table has {columns} (no header row; columns as in \
                 alibaba/clusterdata cluster-trace-v2018/schema.txt)"
            )));
        }
        f(&split[..columns], n).map_err(row_err)?;
        rows += 1;
    }
    Ok(rows)
}

/// A required text field.
///
/// # Errors
/// When it is empty.
pub fn text<'a>(fields: &[&'a str], i: usize, name: &str) -> Result<&'a str, String> {
    let v = fields[i].trim();
    if v.is_empty() {
        Err(format!("column {} ({name}) is empty", i + 1))
    } else {
        Ok(v)
    }
}

/// An optional number (empty: `None`).
///
/// # Errors
/// When it is not a number.
pub fn number(fields: &[&str], i: usize, name: &str) -> Result<Option<f64>, String> {
    let v = fields[i].trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .map(Some)
        .ok_or_else(|| format!("column {} ({name}) is `{v}`, not a number", i + 1))
}

/// A required number.
///
/// # Errors
/// When it is empty or not a number.
pub fn required(fields: &[&str], i: usize, name: &str) -> Result<f64, String> {
    number(fields, i, name)?.ok_or_else(|| format!("column {} ({name}) is empty", i + 1))
}

/// A percentage the trace marks invalid with -1 or 101 (and anything outside 0..=100): `None`.
#[must_use]
pub fn valid_percent(x: Option<f64>) -> Option<f64> {
    x.filter(|v| (0.0..=100.0).contains(v))
}

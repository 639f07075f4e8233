//! Measured figures, one JSON object per line: written to a file (docs/reliability.md's tables
//! are filled from it) and printed, so `cargo test -- --nocapture` shows them too.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Overrides where figures are written (default: the directory the caller names, for tests
/// `$CARGO_TARGET_TMPDIR/ghapp-reliability`).
pub const FIGURES_DIR_ENV: &str = "GHAPP_FIGURES_DIR";

/// The directory figures go to: `$GHAPP_FIGURES_DIR`, else `default`.
pub fn figures_dir(default: &Path) -> PathBuf {
    std::env::var_os(FIGURES_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf())
}

/// Writes `figures` to `dir/name` (replacing it), one JSON object per line, prints each line
/// prefixed with `figure:`, and returns the file's path.
pub fn write(dir: &Path, name: &str, figures: &[serde_json::Value]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path)?;
    for figure in figures {
        let line = figure.to_string();
        writeln!(file, "{line}")?;
        println!("figure: {line}");
    }
    println!("figures written to {}", path.display());
    Ok(path)
}

/// Rounds to `digits` decimals, for readable figures.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The `q`-quantile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(round(1.23456, 2), 1.23);
    }
}

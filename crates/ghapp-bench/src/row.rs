//! One row of a report section, as the section modules (network, proxy, scale) produce it.

/// One row of a section, its cells as the report prints them.
pub struct SectionRow {
    /// What was measured.
    pub what: String,
    /// The figure.
    pub figure: String,
    /// Its baseline from the same run.
    pub baseline: String,
    /// Figure against baseline.
    pub ratio: String,
    /// The target, or `–`.
    pub target: String,
    /// Whether the target is met; `None` without one.
    pub met: Option<bool>,
}

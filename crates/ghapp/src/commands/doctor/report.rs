//! Doctor's output: each result printed as soon as it is known (a check that hangs shows where),
//! as `OK   what`, `WARN what` or `FAIL what`, with `     fix: …` under every WARN and FAIL.

use crate::commands::output;
use anyhow::Result;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something will bite (or could not be verified).
    Warn,
    /// Broken: ghapp will not work as configured.
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// The results so far.
#[derive(Debug, Default)]
pub struct Report {
    warnings: usize,
    failures: usize,
    checks: usize,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Report::default()
    }

    /// A passing check.
    pub fn ok(&mut self, what: impl AsRef<str>) {
        self.emit(Level::Ok, what.as_ref(), None);
    }

    /// A warning and what to do about it.
    pub fn warn(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.emit(Level::Warn, what.as_ref(), Some(fix.as_ref()));
    }

    /// A failure and how to fix it.
    pub fn fail(&mut self, what: impl AsRef<str>, fix: impl AsRef<str>) {
        self.emit(Level::Fail, what.as_ref(), Some(fix.as_ref()));
    }

    fn emit(&mut self, level: Level, what: &str, fix: Option<&str>) {
        self.checks += 1;
        match level {
            Level::Ok => {}
            Level::Warn => self.warnings += 1,
            Level::Fail => self.failures += 1,
        }
        let _ = output::print(&format_result(level, what, fix));
    }

    /// True when any check FAILed.
    pub fn failed(&self) -> bool {
        self.failures > 0
    }

    /// The closing line.
    pub fn summary(&self) -> Result<()> {
        output::print(&format!(
            "\n{} checks: {} failed, {} warnings\n",
            self.checks, self.failures, self.warnings
        ))
    }
}

/// One result: the level, the finding (continuation lines indented), and the fix.
pub fn format_result(level: Level, what: &str, fix: Option<&str>) -> String {
    const INDENT: &str = "     ";
    let mut out = format!(
        "{} {}\n",
        level.label(),
        what.replace('\n', &format!("\n{INDENT}"))
    );
    if let Some(fix) = fix {
        out.push_str(&format!(
            "{INDENT}fix: {}\n",
            fix.replace('\n', &format!("\n{INDENT}     "))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(format_result(Level::Ok, "config", None), "OK   config\n");
        assert_eq!(
            format_result(Level::Fail, "key\nsecond", Some("chmod 600 k")),
            "FAIL key\n     second\n     fix: chmod 600 k\n"
        );
    }
}

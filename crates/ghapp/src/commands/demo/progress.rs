//! The demo's output: numbered steps with indented details, and the failure that names its step.

use std::fmt;
use std::io::Write;

/// A step that failed: which one, and why (with everything the user needs to see).
#[derive(Debug)]
pub struct StepFailed {
    /// The step's short name, as printed in `[n/N] …` and in the final error.
    pub step: &'static str,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step \"{}\": {:#}", self.step, self.error)
    }
}

/// Attaches the current step's name to an error.
pub trait InStep<T> {
    /// Marks the error as this step's failure.
    fn in_step(self, step: &'static str) -> Result<T, StepFailed>;
}

impl<T> InStep<T> for anyhow::Result<T> {
    fn in_step(self, step: &'static str) -> Result<T, StepFailed> {
        self.map_err(|error| StepFailed { step, error })
    }
}

/// Prints `[n/N] title` lines and their details to stdout, flushing each line so the user sees
/// progress while git runs.
pub struct Progress {
    current: usize,
    total: usize,
}

impl Progress {
    /// A progress printer for `total` steps.
    pub fn new(total: usize) -> Self {
        Progress { current: 0, total }
    }

    /// Starts the next step and returns its name, for [`InStep::in_step`].
    pub fn step(&mut self, name: &'static str, title: &str) -> &'static str {
        self.current += 1;
        line(&format!("[{}/{}] {title}", self.current, self.total));
        name
    }

    /// A detail line under the current step.
    pub fn detail(&self, text: &str) {
        for part in text.lines() {
            line(&format!("      {part}"));
        }
    }
}

/// Prints one line to stdout and flushes it.
pub fn line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (e.g. `ghapp demo | head`) must not turn into a panic.
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

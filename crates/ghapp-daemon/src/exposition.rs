//! A writer for Prometheus' text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per
//! family before its samples, escaped label values, `+Inf`/`NaN` spelled as Prometheus wants.
//! Hand-written because the daemon exposes a handful of families; the tests parse the output
//! strictly.

use std::fmt::Write;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric families being written, in order.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket{le=…}`, `_sum`, `_count`.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A whole family holding one sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A whole histogram family from cumulative `(upper bound, count)` buckets; a `+Inf` bucket
    /// equal to `count` is added when missing, so the output is always well-formed.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut saw_inf = false;
        let mut last = 0u64;
        for (bound, cumulative) in buckets {
            if bound.is_nan() {
                continue;
            }
            // Keep the series cumulative even if a snapshot raced with an observation.
            last = last.max(*cumulative);
            saw_inf |= bound.is_infinite() && *bound > 0.0;
            self.sample(&bucket, &[("le", &format_value(*bound))], last as f64);
        }
        if !saw_inf {
            self.sample(&bucket, &[("le", "+Inf")], count.max(last) as f64);
        }
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count.max(last) as f64);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        }
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let mut e = Exposition::default();
        e.family("x_requests_total", Kind::Counter, "Requests.\nBy route.");
        e.sample(
            "x_requests_total",
            &[("route", "/v1/token"), ("status", "200")],
            3.0,
        );
        e.sample(
            "x_requests_total",
            &[("route", "we\"ird\\"), ("status", "404")],
            1.0,
        );
        e.histogram(
            "x_latency_seconds",
            "Latency.",
            &[(0.1, 1), (1.0, 0), (f64::INFINITY, 4)],
            2.5,
            4,
        );
        e.histogram("x_empty_seconds", "Nothing yet.", &[], 0.0, 0);
        e.single("x_up", Kind::Gauge, "Up.", 1.0);
        let text = e.finish();
        let samples = ghapp_testkit::daemon::parse_prometheus(&text)
            .unwrap_or_else(|err| panic!("{err}\n{text}"));
        let value = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            value("x_requests_total", &[("route", "we\"ird\\")]),
            Some(1.0)
        );
        assert_eq!(
            value("x_latency_seconds_bucket", &[("le", "1")]),
            Some(1.0),
            "kept cumulative"
        );
        assert_eq!(
            value("x_latency_seconds_bucket", &[("le", "+Inf")]),
            Some(4.0)
        );
        assert_eq!(
            value("x_empty_seconds_bucket", &[("le", "+Inf")]),
            Some(0.0)
        );
        assert_eq!(value("x_latency_seconds_sum", &[]), Some(2.5));
        assert!(text.contains("Requests.\\nBy route."));
    }

    #[test]
    fn values() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-2.0), "-2");
    }
}

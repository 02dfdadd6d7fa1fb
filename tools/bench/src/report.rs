//! What a measurement yields: a figure, the baseline taken in the same run, their ratio, and the
//! promise it is held to. Each line is printed as it is measured; the summary repeats them all.

use std::fmt::Write as _;

/// What SPEC §7 promises of a figure.
#[derive(Debug, Clone, Copy)]
pub enum Promise {
    /// Reported only.
    None,
    /// figure / baseline ≥ this.
    RatioAtLeast(f64),
    /// figure / baseline ≤ this.
    RatioAtMost(f64),
    /// figure ≤ this, in the figure's unit.
    AtMost(f64),
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub label: String,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    /// `None`: could not be measured (the note says why).
    pub figure: Option<f64>,
    pub unit: &'static str,
    pub baseline: Option<Baseline>,
    pub promise: Promise,
    pub note: String,
}

impl Line {
    pub fn new(name: impl Into<String>, figure: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            figure: Some(figure),
            unit,
            baseline: None,
            promise: Promise::None,
            note: String::new(),
        }
    }

    /// A promised figure that could not be measured.
    pub fn missing(
        name: impl Into<String>,
        unit: &'static str,
        promise: Promise,
        why: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            figure: None,
            unit,
            baseline: None,
            promise,
            note: why.into(),
        }
    }

    pub fn baseline(mut self, label: impl Into<String>, value: f64) -> Self {
        self.baseline = Some(Baseline {
            label: label.into(),
            value,
        });
        self
    }

    pub fn promise(mut self, promise: Promise) -> Self {
        self.promise = promise;
        self
    }

    /// Adds to the note (notes accumulate, separated by `; `).
    pub fn note(mut self, note: impl Into<String>) -> Self {
        let note = note.into();
        if !note.is_empty() {
            if !self.note.is_empty() {
                self.note.push_str("; ");
            }
            self.note.push_str(&note);
        }
        self
    }

    /// A figure measured several times: the median, with the spread in the note.
    pub fn runs(name: impl Into<String>, values: &[f64], unit: &'static str) -> Self {
        let line = Self::new(name, median(values), unit);
        match values {
            [] | [_] => line,
            _ => {
                let (min, max) = min_max(values);
                line.note(format!(
                    "median of {} runs, {} to {}",
                    values.len(),
                    number(min),
                    number(max)
                ))
            }
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        let b = self.baseline.as_ref()?;
        let figure = self.figure?;
        (b.value > 0.0).then(|| figure / b.value)
    }

    /// `Some(true)` met, `Some(false)` not met, `None` when nothing is promised.
    /// A promised figure that is missing counts as not met.
    pub fn met(&self) -> Option<bool> {
        match self.promise {
            Promise::None => None,
            Promise::RatioAtLeast(min) => Some(self.ratio().is_some_and(|r| r >= min)),
            Promise::RatioAtMost(max) => Some(self.ratio().is_some_and(|r| r <= max)),
            Promise::AtMost(max) => Some(self.figure.is_some_and(|f| f <= max)),
        }
    }

    fn cells(&self) -> [String; 6] {
        let figure = match self.figure {
            Some(f) => format!("{} {}", number(f), self.unit),
            None => "n/a".into(),
        };
        let baseline = match &self.baseline {
            Some(b) => format!("{} {} ({})", number(b.value), self.unit, b.label),
            None => "-".into(),
        };
        let ratio = self.ratio().map_or("-".into(), |r| format!("{r:.2}"));
        let promise = match self.promise {
            Promise::None => "-".into(),
            Promise::RatioAtLeast(min) => format!("ratio >= {min:.2}"),
            Promise::RatioAtMost(max) => format!("ratio <= {max:.2}"),
            Promise::AtMost(max) => format!("<= {} {}", number(max), self.unit),
        };
        let verdict = match self.met() {
            None => "info",
            Some(true) => "met",
            Some(false) => "NOT MET",
        };
        [
            self.name.clone(),
            figure,
            baseline,
            ratio,
            promise,
            verdict.into(),
        ]
    }

    /// One line as it is measured.
    pub fn print(&self) {
        let [name, figure, baseline, ratio, promise, verdict] = self.cells();
        let mut out = format!("  {name}: {figure}");
        if self.baseline.is_some() {
            let _ = write!(out, " | baseline {baseline} | ratio {ratio}");
        }
        if !matches!(self.promise, Promise::None) {
            let _ = write!(out, " | promise {promise}: {verdict}");
        }
        if !self.note.is_empty() {
            let _ = write!(out, " | {}", self.note);
        }
        println!("{out}");
    }
}

/// The lines of a run, printed as they come.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    pub fn push(&mut self, line: Line) {
        line.print();
        self.lines.push(line);
    }

    /// The promises not met (a promised figure that could not be measured included).
    pub fn unmet(&self) -> Vec<&Line> {
        self.lines
            .iter()
            .filter(|l| l.met() == Some(false))
            .collect()
    }
}

/// The middle value (the mean of the two middle ones for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
        _ => sorted[mid],
    }
}

/// The value at quantile `q` (0..=1) of `sorted`, nearest rank; 0 for none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

/// `1,234,567` above a thousand, else two significant decimals at most.
pub fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The summary table of every line.
pub fn summary(lines: &[Line]) -> String {
    let header = [
        "measurement",
        "figure",
        "baseline",
        "ratio",
        "promise",
        "verdict",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(lines.iter().map(Line::cells))
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    for line in lines
        .iter()
        .filter(|l| !l.note.is_empty() && l.figure.is_none())
    {
        let _ = writeln!(out, "  {}: {}", line.name, line.note);
    }
    out
}

/// `BENCHMARKS.md`: where and how the run was made, then every line as a Markdown table.
pub fn markdown(lines: &[Line], machine: &[(String, String)], settings: &str) -> String {
    let mut out = String::from(
        "# Benchmarks\n\nWritten by `make bench` (tools/bench): SPEC §7's performance promises, each \
         against a baseline measured in the same run on the same machine. Absolute figures move \
         with the machine and its disks; the ratios are what the promises hold.\n\n## Machine\n\n",
    );
    for (key, value) in machine {
        let _ = writeln!(out, "- {key}: {value}");
    }
    let _ = writeln!(out, "\n## Settings\n\n{settings}\n\n## Results\n");
    out.push_str("| measurement | figure | baseline | ratio | promise | verdict | notes |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for line in lines {
        let cells = line.cells();
        let cells: Vec<String> = cells
            .iter()
            .chain(std::iter::once(&line.note))
            .map(|c| c.replace('|', "\\|"))
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
    out.push_str(HISTORY);
    out
}

/// What changes to the code cost or saved, each measured by the bench before and after; kept by
/// hand in `tools/bench/history.md` and carried into every BENCHMARKS.md.
const HISTORY: &str = include_str!("../history.md");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[9.0, 1.0, 5.0]), 5.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 8.0]), 3.0);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        let line = Line::runs("x", &[3.0, 1.0, 2.0], "ms");
        assert_eq!(line.figure, Some(2.0));
        assert_eq!(line.note, "median of 3 runs, 1.00 to 3.00");
    }

    #[test]
    fn numbers_are_grouped_or_rounded() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(999.6), "1000");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(4.567), "4.57");
    }

    #[test]
    fn a_missing_promised_figure_is_not_met() {
        let line = Line::missing("x", "ms", Promise::AtMost(8.0), "not built");
        assert_eq!(line.met(), Some(false));
        let info = Line::new("y", 3.0, "ms");
        assert_eq!(info.met(), None);
    }

    #[test]
    fn ratios_compare_figure_to_baseline() {
        let line = Line::new("x", 60.0, "rows/s")
            .baseline("psql", 100.0)
            .promise(Promise::RatioAtLeast(0.6));
        assert_eq!(line.met(), Some(true));
        let flat = Line::new("rss", 30.0, "MiB")
            .baseline("100k", 20.0)
            .promise(Promise::RatioAtMost(1.2));
        assert_eq!(flat.met(), Some(false));
    }
}

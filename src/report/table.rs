//! Seed-aggregated tables and their output formats.

use super::stats;
use serde::{Deserialize, Serialize};

/// How a cell summarises its seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Mean ± sample standard deviation.
    #[default]
    MeanStd,
    /// The best seed (as some papers report).
    Max,
    /// Median [first quartile, third quartile].
    MedianIqr,
}

/// The spread printed after a cell's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    None,
    Std(f64),
    Iqr(f64, f64),
}

/// One cell: the per-seed values that finished and their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub values: Vec<f64>,
    /// Seeds planned for the cell (finished or not).
    pub planned: usize,
    /// Mean, max or median; `None` when no seed finished.
    pub value: Option<f64>,
    pub spread: Spread,
    /// 95% t-interval of the mean (mean_std with n >= 2, when asked for).
    pub ci: Option<(f64, f64)>,
    /// Welch's two-sided p-value against the baseline row's cell.
    pub p_value: Option<f64>,
    pub best: bool,
}

/// Significance level of the baseline comparison.
pub const ALPHA: f64 = 0.05;

impl Cell {
    pub fn new(values: Vec<f64>, planned: usize, aggregate: Aggregate, ci: bool) -> Self {
        let n = values.len();
        let (value, spread) = match (n, aggregate) {
            (0, _) => (None, Spread::None),
            (_, Aggregate::MeanStd) if n > 1 => (
                Some(stats::mean(&values)),
                Spread::Std(stats::variance(&values).sqrt()),
            ),
            (_, Aggregate::MeanStd) => (Some(values[0]), Spread::None),
            (_, Aggregate::Max) => (values.iter().copied().reduce(f64::max), Spread::None),
            (_, Aggregate::MedianIqr) => (
                Some(stats::quantile(&values, 0.5)),
                Spread::Iqr(
                    stats::quantile(&values, 0.25),
                    stats::quantile(&values, 0.75),
                ),
            ),
        };
        let ci = match spread {
            Spread::Std(s) if ci && aggregate == Aggregate::MeanStd => {
                let half = stats::t_critical(0.95, (n - 1) as f64) * s / (n as f64).sqrt();
                value.map(|m| (m - half, m + half))
            }
            _ => None,
        };
        Cell {
            values,
            planned,
            value,
            spread,
            ci,
            p_value: None,
            best: false,
        }
    }

    pub fn n(&self) -> usize {
        self.values.len()
    }

    /// Fewer seeds than planned (failed, diverged or missing runs).
    pub fn incomplete(&self) -> bool {
        self.n() < self.planned
    }

    pub fn significant(&self) -> bool {
        self.p_value.is_some_and(|p| p < ALPHA)
    }
}

pub struct Table {
    pub title: String,
    pub row_header: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<Cell>)>,
    /// Digits after the decimal point.
    pub decimals: usize,
    pub aggregate: Aggregate,
    pub higher_is_better: bool,
    /// The row every other row is tested against.
    pub baseline: Option<String>,
    /// Whether the table shows each row's mean reciprocal rank.
    pub rank: bool,
    /// Per row (after `finish`, with `rank`): the mean over columns of
    /// 1/rank, a missing value counting 0; and whether it is the highest.
    pub mrr: Vec<(f64, bool)>,
}

impl Table {
    /// Marks the best cells and the significance of every row against the baseline.
    pub fn finish(&mut self) {
        self.mark_best();
        if self.rank {
            self.mrr = self.mean_reciprocal_ranks();
        }
        let Some(base) = self
            .rows
            .iter()
            .find(|(name, _)| Some(name) == self.baseline.as_ref())
            .map(|(_, cells)| cells.clone())
        else {
            return;
        };
        for (name, cells) in &mut self.rows {
            if Some(&*name) == self.baseline.as_ref() {
                continue;
            }
            for (cell, base) in cells.iter_mut().zip(&base) {
                cell.p_value = stats::welch_p(&cell.values, &base.values);
            }
        }
    }

    /// Bolds the best value of each column (highest or lowest), every tie at
    /// the printed precision included.
    pub fn mark_best(&mut self) {
        let round = |x: f64| format!("{x:.*}", self.decimals);
        for c in 0..self.columns.len() {
            let best = self
                .rows
                .iter()
                .filter_map(|(_, cells)| cells[c].value)
                .reduce(|a, b| {
                    if self.higher_is_better {
                        a.max(b)
                    } else {
                        a.min(b)
                    }
                });
            for (_, cells) in &mut self.rows {
                cells[c].best = best.is_some() && cells[c].value.map(round) == best.map(round);
            }
        }
    }

    /// Ranks compare values at the printed precision, like the bold marks,
    /// so a tie that the table shows as one number is one rank.
    fn mean_reciprocal_ranks(&self) -> Vec<(f64, bool)> {
        let key = |x: f64| {
            let rounded: f64 = self.number(x).parse().unwrap_or(x);
            if self.higher_is_better {
                rounded
            } else {
                -rounded
            }
        };
        let columns = self.columns.len().max(1) as f64;
        let mrr: Vec<f64> = self
            .rows
            .iter()
            .map(|(_, cells)| {
                let total: f64 = cells
                    .iter()
                    .enumerate()
                    .filter_map(|(c, cell)| {
                        let mine = key(cell.value?);
                        let better = self
                            .rows
                            .iter()
                            .filter(|(_, other)| other[c].value.is_some_and(|v| key(v) > mine))
                            .count();
                        Some(1.0 / (better + 1) as f64)
                    })
                    .sum();
                total / columns
            })
            .collect();
        let top = mrr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        mrr.iter()
            .map(|&m| (m, format!("{m:.2}") == format!("{top:.2}")))
            .collect()
    }

    /// Row `row`'s MRR with two decimals, passed through `bold` if it is the highest.
    fn mrr_text(&self, row: usize, bold: impl Fn(&str) -> String) -> Option<String> {
        let &(mrr, best) = self.mrr.get(row)?;
        let text = format!("{mrr:.2}");
        Some(if best { bold(&text) } else { text })
    }

    fn any(&self, f: impl Fn(&Cell) -> bool) -> bool {
        self.rows.iter().any(|(_, cells)| cells.iter().any(&f))
    }

    /// The footnote sentences, in plain text.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = vec![match self.aggregate {
            Aggregate::MeanStd => "Cells: mean ± sample standard deviation over seeds (n).",
            Aggregate::Max => "Cells: the best seed's value (n seeds).",
            Aggregate::MedianIqr => {
                "Cells: median [first quartile, third quartile] over seeds (n)."
            }
        }
        .to_string()];
        if self.any(|c| c.ci.is_some()) {
            notes.push("CI: 95% t-interval of the mean.".into());
        }
        if self.any(Cell::incomplete) {
            notes.push(
                "† fewer seeds than planned: failed, diverged or missing runs are left out.".into(),
            );
        }
        if self.rank {
            notes.push(
                "MRR: mean over the columns of 1/rank of the row's value (rank 1 = best; ties share the better rank; a missing value counts 0).".into(),
            );
        }
        if let Some(base) = &self.baseline {
            notes.push(format!(
                "* differs from `{base}` at p < {ALPHA} (two-sided Welch's t-test over seeds; needs n ≥ 2 on both sides)."
            ));
        }
        notes
    }

    fn number(&self, x: f64) -> String {
        format!("{x:.*}", self.decimals)
    }

    /// The value and spread of a cell, e.g. `0.70 ± 0.20`, in plain text.
    fn body(&self, cell: &Cell, pm: &str) -> Option<String> {
        let v = self.number(cell.value?);
        Some(match cell.spread {
            Spread::None => v,
            Spread::Std(s) => format!("{v} {pm} {}", self.number(s)),
            Spread::Iqr(a, b) => format!("{v} [{}, {}]", self.number(a), self.number(b)),
        })
    }
}

/// A way of writing tables to a file.
pub trait TableFormat {
    fn extension(&self) -> &'static str;
    fn render(&self, table: &Table) -> String;
}

/// GitHub-flavoured Markdown.
pub struct Markdown;

impl TableFormat for Markdown {
    fn extension(&self) -> &'static str {
        "md"
    }

    fn render(&self, table: &Table) -> String {
        let mut out = format!("### {}\n\n| {} |", table.title, table.row_header);
        for c in &table.columns {
            out.push_str(&format!(" {c} |"));
        }
        if table.rank {
            out.push_str(" MRR |");
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(table.columns.len() + usize::from(table.rank)));
        out.push('\n');
        for (r, (name, cells)) in table.rows.iter().enumerate() {
            out.push_str(&format!("| {name} |"));
            for cell in cells {
                out.push_str(&format!(" {} |", markdown_cell(table, cell)));
            }
            if let Some(mrr) = table.mrr_text(r, |v| format!("**{v}**")) {
                out.push_str(&format!(" {mrr} |"));
            }
            out.push('\n');
        }
        // `*` would start emphasis in Markdown.
        out.push_str(&format!(
            "\n{}\n",
            table.notes().join(" ").replace('*', "\\*")
        ));
        out
    }
}

fn markdown_cell(table: &Table, cell: &Cell) -> String {
    let Some(body) = table.body(cell, "±") else {
        return format!("– (n=0/{})†", cell.planned);
    };
    let mut out = if cell.best {
        format!("**{body}**")
    } else {
        body
    };
    if let Some((lo, hi)) = cell.ci {
        out.push_str(&format!(" (CI {}, {})", table.number(lo), table.number(hi)));
    }
    if cell.incomplete() {
        out.push_str(&format!(" (n={}/{})†", cell.n(), cell.planned));
    } else {
        out.push_str(&format!(" (n={})", cell.n()));
    }
    if cell.significant() {
        out.push_str("\\*");
    }
    out
}

/// LaTeX with booktabs rules.
pub struct Latex;

/// Escapes LaTeX's special characters in names.
pub fn latex_escape(text: &str) -> String {
    let mut out = String::new();
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '†' => out.push_str("$^\\dagger$"),
            '≥' => out.push_str("$\\geq$"),
            '<' => out.push_str("$<$"),
            '>' => out.push_str("$>$"),
            '`' => {}
            _ => out.push(ch),
        }
    }
    out
}

impl TableFormat for Latex {
    fn extension(&self) -> &'static str {
        "tex"
    }

    fn render(&self, table: &Table) -> String {
        let mut out = String::from("\\begin{table}[t]\n\\centering\n");
        out.push_str(&format!("\\caption{{{}}}\n", latex_escape(&table.title)));
        out.push_str(&format!(
            "\\begin{{tabular}}{{l{}}}\n\\toprule\n",
            "r".repeat(table.columns.len() + usize::from(table.rank))
        ));
        out.push_str(&latex_escape(&table.row_header));
        for c in &table.columns {
            out.push_str(&format!(" & {}", latex_escape(c)));
        }
        if table.rank {
            out.push_str(" & MRR");
        }
        out.push_str(" \\\\\n\\midrule\n");
        for (r, (name, cells)) in table.rows.iter().enumerate() {
            out.push_str(&latex_escape(name));
            for cell in cells {
                out.push_str(&format!(" & {}", latex_cell(table, cell)));
            }
            if let Some(mrr) = table.mrr_text(r, |v| format!("\\mathbf{{{v}}}")) {
                out.push_str(&format!(" & ${mrr}$"));
            }
            out.push_str(" \\\\\n");
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        let note = latex_escape(&table.notes().join(" "));
        out.push_str(&format!(
            "\\par\\smallskip{{\\footnotesize {note}}}\n\\end{{table}}\n"
        ));
        out
    }
}

fn latex_cell(table: &Table, cell: &Cell) -> String {
    let Some(body) = table.body(cell, "\\pm") else {
        return format!("-- ($0/{}$)$^\\dagger$", cell.planned);
    };
    let body = if cell.best {
        format!("\\mathbf{{{body}}}")
    } else {
        body
    };
    let mut out = format!("${body}$");
    if let Some((lo, hi)) = cell.ci {
        out.push_str(&format!(
            " (CI ${}, {}$)",
            table.number(lo),
            table.number(hi)
        ));
    }
    if cell.incomplete() {
        out.push_str(&format!(" ({}/{})$^\\dagger$", cell.n(), cell.planned));
    } else {
        out.push_str(&format!(" ({})", cell.n()));
    }
    if cell.significant() {
        out.push_str("$^{*}$");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: Vec<(&str, Vec<Cell>)>) -> Table {
        let width = rows.first().map_or(0, |(_, cells)| cells.len());
        Table {
            title: "t".into(),
            row_header: "scheme".into(),
            columns: (0..width).map(|c| format!("task{c}")).collect(),
            rows: rows.into_iter().map(|(n, c)| (n.to_string(), c)).collect(),
            decimals: 2,
            aggregate: Aggregate::MeanStd,
            higher_is_better: true,
            baseline: None,
            rank: false,
            mrr: Vec::new(),
        }
    }

    #[test]
    fn mean_reciprocal_rank_by_hand() {
        let one = |v: f64| Cell::new(vec![v], 1, Aggregate::MeanStd, false);
        let none = Cell::new(vec![], 1, Aggregate::MeanStd, false);
        // Column 0: x 0.901 and z 0.899 print as 0.90, a tie at rank 1; y is
        // rank 3. Column 1: y rank 1, x rank 2, z missing (counts 0).
        let rows = vec![
            ("x", vec![one(0.901), one(0.1)]),
            ("y", vec![one(0.5), one(0.8)]),
            ("z", vec![one(0.899), none]),
        ];
        let mut t = table(rows.clone());
        t.rank = true;
        t.finish();
        let expected = [
            (1.0 + 0.5) / 2.0,
            (1.0 / 3.0 + 1.0) / 2.0,
            (1.0 + 0.0) / 2.0,
        ];
        for ((mrr, _), want) in t.mrr.iter().zip(expected) {
            assert!((mrr - want).abs() < 1e-12, "{:?}", t.mrr);
        }
        assert_eq!(
            t.mrr.iter().map(|m| m.1).collect::<Vec<_>>(),
            [true, false, false]
        );
        let md = Markdown.render(&t);
        assert!(
            md.contains("| MRR |") && md.contains("| **0.75** |"),
            "{md}"
        );
        assert!(Latex.render(&t).contains("& $\\mathbf{0.75}$"));
        // Lower is better: column 0 ranks y first, x and z tie second;
        // column 1 ranks x first. x and y tie at 0.75, both bold.
        let mut t = table(rows);
        t.rank = true;
        t.higher_is_better = false;
        t.finish();
        let expected = [(0.5 + 1.0) / 2.0, (1.0 + 0.5) / 2.0, (0.5 + 0.0) / 2.0];
        for ((mrr, _), want) in t.mrr.iter().zip(expected) {
            assert!((mrr - want).abs() < 1e-12, "{:?}", t.mrr);
        }
        assert_eq!(
            t.mrr.iter().map(|m| m.1).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn aggregates_by_hand() {
        // Seeds 0.5, 0.7, 0.9 of 4 planned (one failed): mean 0.7, std 0.2;
        // 95% CI 0.7 ± 4.303·0.2/√3 = [0.203, 1.197]; median 0.7, IQR [0.6, 0.8].
        let c = Cell::new(vec![0.5, 0.7, 0.9], 4, Aggregate::MeanStd, true);
        assert!((c.value.unwrap() - 0.7).abs() < 1e-12);
        let Spread::Std(std) = c.spread else {
            panic!("{:?}", c.spread)
        };
        assert!((std - 0.2).abs() < 1e-12);
        let (lo, hi) = c.ci.unwrap();
        assert!((lo - 0.2031).abs() < 1e-3 && (hi - 1.1969).abs() < 1e-3);
        assert!(c.incomplete());
        let t = table(vec![]);
        assert_eq!(
            markdown_cell(&t, &c),
            "0.70 ± 0.20 (CI 0.20, 1.20) (n=3/4)†"
        );
        let m = Cell::new(vec![0.5, 0.7, 0.9], 3, Aggregate::MedianIqr, false);
        assert_eq!(m.spread, Spread::Iqr(0.6, 0.8));
        assert_eq!(markdown_cell(&t, &m), "0.70 [0.60, 0.80] (n=3)");
        let x = Cell::new(vec![0.5, 0.9, 0.7], 3, Aggregate::Max, false);
        assert_eq!((x.value, x.spread), (Some(0.9), Spread::None));
        let empty = Cell::new(vec![], 2, Aggregate::MeanStd, true);
        assert_eq!(markdown_cell(&t, &empty), "– (n=0/2)†");
    }

    #[test]
    fn best_cells_are_bold_with_ties() {
        let cell = |v: f64| vec![Cell::new(vec![v], 1, Aggregate::MeanStd, false)];
        let mut t = table(vec![("a", cell(0.9)), ("b", cell(0.901)), ("c", cell(0.5))]);
        t.finish();
        let bold: Vec<bool> = t.rows.iter().map(|(_, c)| c[0].best).collect();
        assert_eq!(bold, vec![true, true, false]);
        assert!(Markdown.render(&t).contains("**0.90**"));
        // Perplexity: the lowest is best.
        t.higher_is_better = false;
        t.finish();
        let bold: Vec<bool> = t.rows.iter().map(|(_, c)| c[0].best).collect();
        assert_eq!(bold, vec![false, false, true]);
    }

    #[test]
    fn rows_are_tested_against_the_baseline() {
        let cell = |v: Vec<f64>| vec![Cell::new(v, 3, Aggregate::MeanStd, false)];
        let mut t = table(vec![
            ("none", cell(vec![1.0, 2.0, 3.0])),
            ("rope", cell(vec![4.0, 5.0, 6.0])),
            ("alibi", cell(vec![1.5, 2.0, 3.5])),
        ]);
        t.baseline = Some("none".into());
        t.finish();
        assert_eq!(t.rows[0].1[0].p_value, None);
        assert!((t.rows[1].1[0].p_value.unwrap() - 0.021_312).abs() < 1e-5);
        assert!(!t.rows[2].1[0].significant());
        let md = Markdown.render(&t);
        assert!(md.contains("**5.00 ± 1.00** (n=3)\\*"), "{md}");
        assert!(md.contains("\\* differs from `none` at p < 0.05"), "{md}");
        let tex = Latex.render(&t);
        assert!(
            tex.contains("$\\mathbf{5.00 \\pm 1.00}$ (3)$^{*}$"),
            "{tex}"
        );
        assert!(tex.contains("Welch's t-test"), "{tex}");
    }

    #[test]
    fn latex_escapes_names() {
        assert_eq!(latex_escape("d_model 50% & #1"), "d\\_model 50\\% \\& \\#1");
        assert_eq!(
            latex_escape("a~b^c\\"),
            "a\\textasciitilde{}b\\textasciicircum{}c\\textbackslash{}"
        );
    }
}

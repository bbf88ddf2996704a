//! Seed-aggregated tables and their output formats.

/// Mean ± sample std over the seeds that finished, with n and the planned count.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub n: usize,
    pub planned: usize,
    pub best: bool,
}

impl Cell {
    pub fn from_values(values: &[f64], planned: usize) -> Self {
        let n = values.len();
        let mean = (n > 0).then(|| values.iter().sum::<f64>() / n as f64);
        let std = mean
            .filter(|_| n > 1)
            .map(|m| (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Cell {
            mean,
            std,
            n,
            planned,
            best: false,
        }
    }

    /// Fewer seeds than planned (failed, diverged or missing runs).
    pub fn incomplete(&self) -> bool {
        self.n < self.planned
    }
}

pub struct Table {
    pub title: String,
    pub row_header: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<Cell>)>,
    pub notes: Vec<String>,
}

impl Table {
    /// Bolds the best mean of each column (highest or lowest), every tie at
    /// the printed precision included.
    pub fn mark_best(&mut self, higher_is_better: bool) {
        for c in 0..self.columns.len() {
            let best = self
                .rows
                .iter()
                .filter_map(|(_, cells)| cells[c].mean.map(round2))
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| if higher_is_better { a.max(v) } else { a.min(v) }))
                });
            for (_, cells) in &mut self.rows {
                cells[c].best = best.is_some() && cells[c].mean.map(round2) == best;
            }
        }
    }

    fn any_incomplete(&self) -> bool {
        self.rows
            .iter()
            .any(|(_, cells)| cells.iter().any(Cell::incomplete))
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A way of writing tables to a file.
pub trait TableFormat {
    fn extension(&self) -> &'static str;
    fn render(&self, table: &Table) -> String;
}

const INCOMPLETE_NOTE: &str =
    "fewer seeds than planned: failed, diverged or missing runs are left out of the mean";

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
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(table.columns.len()));
        out.push('\n');
        for (name, cells) in &table.rows {
            out.push_str(&format!("| {name} |"));
            for cell in cells {
                out.push_str(&format!(" {} |", markdown_cell(cell)));
            }
            out.push('\n');
        }
        out.push_str("\nCells: mean ± sample standard deviation over seeds (n).");
        if table.any_incomplete() {
            out.push_str(&format!(" † {INCOMPLETE_NOTE}."));
        }
        for note in &table.notes {
            out.push_str(&format!(" {note}"));
        }
        out.push('\n');
        out
    }
}

fn markdown_cell(cell: &Cell) -> String {
    let Some(mean) = cell.mean else {
        return format!("– (n=0/{})†", cell.planned);
    };
    let body = match cell.std {
        Some(std) => format!("{mean:.2} ± {std:.2}"),
        None => format!("{mean:.2}"),
    };
    let body = if cell.best {
        format!("**{body}**")
    } else {
        body
    };
    if cell.incomplete() {
        format!("{body} (n={}/{})†", cell.n, cell.planned)
    } else {
        format!("{body} (n={})", cell.n)
    }
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
            "r".repeat(table.columns.len())
        ));
        out.push_str(&latex_escape(&table.row_header));
        for c in &table.columns {
            out.push_str(&format!(" & {}", latex_escape(c)));
        }
        out.push_str(" \\\\\n\\midrule\n");
        for (name, cells) in &table.rows {
            out.push_str(&latex_escape(name));
            for cell in cells {
                out.push_str(&format!(" & {}", latex_cell(cell)));
            }
            out.push_str(" \\\\\n");
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        let mut note =
            String::from("Mean $\\pm$ sample standard deviation over seeds ($n$ in parentheses).");
        if table.any_incomplete() {
            note.push_str(&format!(" $^\\dagger$ {}.", latex_escape(INCOMPLETE_NOTE)));
        }
        out.push_str(&format!(
            "\\par\\smallskip{{\\footnotesize {note}}}\n\\end{{table}}\n"
        ));
        out
    }
}

fn latex_cell(cell: &Cell) -> String {
    let Some(mean) = cell.mean else {
        return format!("-- ($0/{}$)$^\\dagger$", cell.planned);
    };
    let body = match cell.std {
        Some(std) => format!("{mean:.2} \\pm {std:.2}"),
        None => format!("{mean:.2}"),
    };
    let body = if cell.best {
        format!("$\\mathbf{{{body}}}$")
    } else {
        format!("${body}$")
    };
    if cell.incomplete() {
        format!("{body} ({}/{})$^\\dagger$", cell.n, cell.planned)
    } else {
        format!("{body} ({})", cell.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_by_hand() {
        // Seeds 0.5, 0.7, 0.9 of 4 planned (one failed): mean 0.7, std 0.2.
        let c = Cell::from_values(&[0.5, 0.7, 0.9], 4);
        assert!((c.mean.unwrap() - 0.7).abs() < 1e-12);
        assert!((c.std.unwrap() - 0.2).abs() < 1e-12);
        assert!(c.incomplete());
        assert_eq!(markdown_cell(&c), "0.70 ± 0.20 (n=3/4)†");
    }

    #[test]
    fn best_cells_are_bold_with_ties() {
        let mut t = Table {
            title: "t".into(),
            row_header: "scheme".into(),
            columns: vec!["copy".into()],
            rows: vec![
                ("a".into(), vec![Cell::from_values(&[0.9], 1)]),
                ("b".into(), vec![Cell::from_values(&[0.901], 1)]),
                ("c".into(), vec![Cell::from_values(&[0.5], 1)]),
            ],
            notes: vec![],
        };
        t.mark_best(true);
        let bold: Vec<bool> = t.rows.iter().map(|(_, c)| c[0].best).collect();
        assert_eq!(bold, vec![true, true, false]);
        assert!(Markdown.render(&t).contains("**0.90**"));
        // Perplexity: the lowest is best.
        t.mark_best(false);
        let bold: Vec<bool> = t.rows.iter().map(|(_, c)| c[0].best).collect();
        assert_eq!(bold, vec![false, false, true]);
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

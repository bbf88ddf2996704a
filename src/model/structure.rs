//! What a (trained) positional scheme does with positions 0..n, read through
//! the same hooks the model uses, for the report's position-structure chart.

use super::Transformer;
use crate::nn::hooks::Positions;
use crate::nn::kernels::Kernels;
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

/// The position structure of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionStructure {
    /// `cosine`: cosine similarity between the input position vectors of
    /// positions i and j. `bias`: the score bias of query i on key j (first
    /// layer; keys after the query are masked and left NaN). `rotary`: the
    /// q·k score of a fixed vector pair (all ones, unit norm) at offset i.
    pub kind: String,
    pub panels: Vec<StructurePanel>,
}

/// One matrix (rows × cols, row-major) or curve (cols = 1); masked cells are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructurePanel {
    pub label: String,
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<Option<f64>>,
}

impl<const D: usize, const F: usize, Dev: Kernels> Transformer<D, F, Dev> {
    /// The structure over positions 0..n: input vectors if the scheme adds
    /// any, else the first layer's score bias (head 0 and the last head),
    /// else the rotation (head 0 and the last head); `None` for schemes with
    /// none of these (NoPE, Shaw's query-dependent bias).
    pub fn position_structure(&self, n: usize) -> Option<PositionStructure> {
        let pos = Positions::contiguous(1, n);
        let heads = self.config.heads;
        let last = heads - 1;
        if let Some(input) = self.position.input(&pos) {
            let v = input.as_vec(); // (1, n, D)
            return Some(PositionStructure {
                kind: "cosine".into(),
                panels: vec![cosine_panel(&v, n, D)],
            });
        }
        if let Some(bias) = self.position.score_bias(0, &pos, heads) {
            let v = bias.into_tensor().as_vec(); // (1, heads, n, n)
            let panel = |h: usize| StructurePanel {
                label: format!("head {h}"),
                rows: n,
                cols: n,
                values: (0..n * n)
                    .map(|ij| {
                        let (i, j) = (ij / n, ij % n);
                        (j <= i).then(|| v[h * n * n + ij] as f64)
                    })
                    .collect(),
            };
            return Some(PositionStructure {
                kind: "bias".into(),
                panels: [0, last].iter().map(|&h| panel(h)).collect(),
            });
        }
        let head_dim = D / heads;
        let rotation = self.position.rotation(&pos, heads, head_dim)?;
        let unit = 1.0 / (head_dim as f32).sqrt();
        let ones: Tensor<(usize, usize, usize, usize), f32, Dev> = self
            .dev
            .tensor_from_vec(vec![unit; heads * n * head_dim], (1, heads, n, head_dim));
        let rotated = rotation.apply(ones).as_vec(); // (1, heads, n, head_dim)
        let at = |h: usize, p: usize| &rotated[(h * n + p) * head_dim..(h * n + p + 1) * head_dim];
        let panel = |h: usize| StructurePanel {
            label: format!("head {h}"),
            rows: n,
            cols: 1,
            values: (0..n)
                .map(|o| {
                    Some(
                        at(h, o)
                            .iter()
                            .zip(at(h, 0))
                            .map(|(a, b)| (*a as f64) * (*b as f64))
                            .sum(),
                    )
                })
                .collect(),
        };
        Some(PositionStructure {
            kind: "rotary".into(),
            panels: [0, last].iter().map(|&h| panel(h)).collect(),
        })
    }
}

/// Cosine similarities of the n position vectors of width d in `v`.
fn cosine_panel(v: &[f32], n: usize, d: usize) -> StructurePanel {
    let row = |i: usize| &v[i * d..(i + 1) * d];
    let norm = |i: usize| {
        row(i)
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let norms: Vec<f64> = (0..n).map(norm).collect();
    let values = (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            let dot: f64 = row(i)
                .iter()
                .zip(row(j))
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            Some(dot / (norms[i] * norms[j]).max(1e-12))
        })
        .collect();
    StructurePanel {
        label: "position vectors".into(),
        rows: n,
        cols: n,
        values,
    }
}

//! How an input-level scheme combines its position vector with the token
//! embedding: `add` (the sum over all d_model dims) or `concat` (the token
//! embedding fills the first d_model − position_dims dims, the position
//! vector the last position_dims).

use crate::nn::hooks::InputLayout;
use crate::options::FieldError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    #[default]
    Add,
    Concat,
}

/// Dims given to the position part: all of them for `add`, `position_dims`
/// (default d_model / 2) for `concat`.
pub fn position_dims(
    fusion: Fusion,
    position_dims: Option<usize>,
    d_model: usize,
) -> Result<usize, FieldError> {
    match (fusion, position_dims) {
        (Fusion::Add, None) => Ok(d_model),
        (Fusion::Add, Some(_)) => Err(FieldError::new(
            &["position_dims"],
            "position_dims applies only to `fusion: concat`; valid: remove it, or set fusion: concat",
        )),
        (Fusion::Concat, p) => {
            let p = p.unwrap_or(d_model / 2);
            if p < 2 || p >= d_model || p % 2 != 0 {
                return Err(FieldError::new(
                    &["position_dims"],
                    format!("{p} dims for position out of d_model {d_model}; valid: an even number from 2 to {}", d_model - 2),
                ));
            }
            Ok(p)
        }
    }
}

/// The layout for `fusion` with `dims` position dims out of `d_model`.
pub fn layout(fusion: Fusion, dims: usize, d_model: usize) -> InputLayout {
    match fusion {
        Fusion::Add => InputLayout::Add,
        Fusion::Concat => InputLayout::Concat {
            token_dims: d_model - dims,
        },
    }
}

/// Places a row-major (n, dims) table into (n, d_model): at the end for concat.
pub fn place(table: Vec<f32>, dims: usize, d_model: usize) -> Vec<f32> {
    if dims == d_model {
        return table;
    }
    let mut out = vec![0.0; table.len() / dims * d_model];
    for (row, chunk) in table.chunks(dims).enumerate() {
        out[row * d_model + d_model - dims..(row + 1) * d_model].copy_from_slice(chunk);
    }
    out
}

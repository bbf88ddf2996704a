//! A bucketed score bias (T5's): a (buckets, heads) table read through the
//! bucket of every (query, key) pair. Pairs are row-major (batch, seq, seq),
//! the bias (batch, heads, seq, seq).

/// bias[b, h, i, j] = table[index[(b, i, j)], h].
pub fn expand(table: &[f32], index: &[usize], heads: usize, seq: usize) -> Vec<f32> {
    let pairs = seq * seq;
    let mut bias = vec![0.0; index.len() * heads];
    for (b, buckets) in index.chunks_exact(pairs).enumerate() {
        for (h, out) in bias[b * heads * pairs..(b + 1) * heads * pairs]
            .chunks_exact_mut(pairs)
            .enumerate()
        {
            for (o, &bucket) in out.iter_mut().zip(buckets) {
                *o = table[bucket * heads + h];
            }
        }
    }
    bias
}

/// dtable[index[(b, i, j)], h] += dbias[b, h, i, j]. Each table entry gets
/// its additions in (b, i, j) order, as from dfdx's gather backward, so
/// the table's gradient matches the composition bit for bit; going head by
/// head reads `dbias` contiguously.
pub fn scatter(dbias: &[f32], index: &[usize], heads: usize, seq: usize, dtable: &mut [f32]) {
    let pairs = seq * seq;
    for (b, buckets) in index.chunks_exact(pairs).enumerate() {
        for (h, grads) in dbias[b * heads * pairs..(b + 1) * heads * pairs]
            .chunks_exact(pairs)
            .enumerate()
        {
            for (&bucket, g) in buckets.iter().zip(grads) {
                dtable[bucket * heads + h] += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::hooks::BucketedBias;
    use dfdx::prelude::*;

    #[test]
    fn expand_lays_out_the_bias_as_the_composition_does() {
        let dev: Cpu = Default::default();
        let (batch, seq, heads, buckets) = (2, 3, 2, 4);
        let table: Vec<f32> = (0..buckets * heads).map(|v| v as f32).collect();
        let index: Vec<usize> = (0..batch * seq * seq)
            .map(|p| (p * 5 + 1) % buckets)
            .collect();
        let composed = BucketedBias {
            table: dev.tensor_from_vec(table.clone(), (buckets, heads)),
            buckets: index.clone().into(),
            batch,
            seq,
        }
        .into_scores();
        assert_eq!(expand(&table, &index, heads, seq), composed.as_vec());
    }
}

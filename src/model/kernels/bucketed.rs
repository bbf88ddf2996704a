//! A bucketed score bias (T5's): a (buckets, heads) table read through the
//! bucket of every (query, key) pair. Pairs are row-major (batch, seq, seq),
//! the bias (batch, heads, seq, seq).

/// bias[b, h, i, j] = table[index[(b, i, j)], h].
pub fn expand(table: &[f32], index: &[usize], heads: usize, batch: usize, seq: usize) -> Vec<f32> {
    let pairs = seq * seq;
    let mut bias = vec![0.0; batch * heads * pairs];
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

/// dtable[index[(b, i, j)], h] += dbias[b, h, i, j], pair by pair with the
/// heads innermost: the order of dfdx's gather backward, so the table's
/// gradient matches the composition bit for bit.
pub fn scatter(
    dbias: &[f32],
    index: &[usize],
    heads: usize,
    batch: usize,
    seq: usize,
    dtable: &mut [f32],
) {
    let pairs = seq * seq;
    for b in 0..batch {
        let block = &dbias[b * heads * pairs..(b + 1) * heads * pairs];
        for (p, &bucket) in index[b * pairs..(b + 1) * pairs].iter().enumerate() {
            for h in 0..heads {
                dtable[bucket * heads + h] += block[h * pairs + p];
            }
        }
    }
}

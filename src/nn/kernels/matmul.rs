//! Strided f32 matrix products on gemm 0.19, whose AVX-512 kernels (chosen at
//! run time) are about 3× faster per core here than the gemm 0.15 dfdx pins.

use gemm::Parallelism;
use std::marker::PhantomData;

/// A read-only matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major (rows, cols) matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat::strided(data, rows, cols, cols)
    }

    /// Rows `row_stride` apart, columns adjacent: a column block of a wider matrix.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let m = Mat {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: 1,
        };
        m.check();
        m
    }

    /// The same data read as the transpose.
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// A writable matrix view with the layout rules of [`Mat`] (row stride, unit
/// column stride), over initialised values or over memory that a
/// non-accumulating [`matmul`] is about to overwrite (see [`Unwritten`]).
pub struct MatMut<'a> {
    ptr: *mut f32,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    initialized: bool,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        check_bounds(data.len(), rows, cols, row_stride);
        MatMut {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            rs: row_stride,
            initialized: true,
            _borrow: PhantomData,
        }
    }
}

fn check_bounds(len: usize, rows: usize, cols: usize, row_stride: usize) {
    if rows > 0 && cols > 0 {
        assert!(
            (rows - 1) * row_stride + cols <= len,
            "matrix view out of bounds"
        );
    }
}

/// A new array whose every element non-accumulating products will write,
/// left unzeroed: zero-filling the outputs gemm overwrites anyway cost ~3%
/// of an S1 step. gemm never reads the destination when told not to
/// accumulate (it drops its `alpha · dst` term on every path; the tests
/// below check each path with a NaN-filled destination).
pub struct Unwritten(Vec<f32>);

impl Unwritten {
    pub fn new(len: usize) -> Self {
        Unwritten(Vec::with_capacity(len))
    }

    /// A (rows, cols) view starting at `offset`, rows `row_stride` apart.
    pub fn view(
        &mut self,
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> MatMut<'_> {
        let spare = &mut self.0.spare_capacity_mut()[offset..];
        check_bounds(spare.len(), rows, cols, row_stride);
        MatMut {
            ptr: spare.as_mut_ptr().cast(),
            rows,
            cols,
            rs: row_stride,
            initialized: false,
            _borrow: PhantomData,
        }
    }

    /// The array, once products have written all of it.
    ///
    /// # Safety
    /// Every element must have been written through [`Unwritten::view`]s by
    /// non-accumulating [`matmul`]s.
    pub unsafe fn assume_written(mut self) -> Vec<f32> {
        let len = self.0.capacity();
        self.0.set_len(len);
        self.0
    }
}

/// a · b as a new row-major array.
pub fn product(a: Mat, b: Mat) -> Vec<f32> {
    let mut out = Unwritten::new(a.rows * b.cols);
    matmul(out.view(0, a.rows, b.cols, b.cols), a, b, false);
    // SAFETY: the one view covers the whole array and was overwritten.
    unsafe { out.assume_written() }
}

/// dst = a · b, or dst += a · b when `accumulate`. One thread: parallelism
/// comes from running one training run per core (see README, thread policy).
pub fn matmul(dst: MatMut, a: Mat, b: Mat, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!((dst.rows, dst.cols), (m, n), "destination shape differs");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst.initialized || !accumulate,
        "cannot accumulate into an unwritten array"
    );
    // SAFETY: every view was bounds-checked on construction, and `dst` is a
    // unique borrow, so it cannot alias `a` or `b`. gemm writes zeros when
    // k = 0 and reads `dst` only when `accumulate` (checked above for
    // unwritten memory).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (rows, cols) values, distinct and exactly representable.
    fn values(rows: usize, cols: usize, salt: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7 + salt) % 11) as f32 - 5.0)
            .collect()
    }

    /// Views of a (m, k) and a (k, n), the latter stored transposed when asked.
    fn operands<'a>(
        a: &'a [f32],
        b: &'a [f32],
        (m, k, n, transposed): Shape,
    ) -> (Mat<'a>, Mat<'a>) {
        let b = if transposed {
            Mat::new(b, n, k).t()
        } else {
            Mat::new(b, k, n)
        };
        (Mat::new(a, m, k), b)
    }

    fn reference(a: Mat, b: Mat) -> Vec<f32> {
        let at = |m: &Mat, r: usize, c: usize| m.data[r * m.rs + c * m.cs];
        let mut out = vec![0.0; a.rows * b.cols];
        for r in 0..a.rows {
            for c in 0..b.cols {
                out[r * b.cols + c] = (0..a.cols).map(|p| at(&a, r, p) * at(&b, p, c)).sum();
            }
        }
        out
    }

    /// Shapes that reach each of gemm's paths: k ≤ 2 (gevv), n = 1 and
    /// m = 1 (gemv), small m·n with a transposed right operand (the
    /// horizontal kernels), and the packed kernels, plus odd sizes.
    type Shape = (usize, usize, usize, bool);
    const SHAPES: [Shape; 8] = [
        (3, 1, 4, false),
        (5, 2, 3, true),
        (7, 5, 1, false),
        (1, 6, 9, false),
        (4, 8, 4, true),
        (16, 32, 64, false),
        (37, 19, 23, true),
        (64, 0, 5, false),
    ];

    #[test]
    fn non_accumulating_products_never_read_the_destination() {
        for shape @ (m, k, n, _) in SHAPES {
            let (a, b) = (values(m, k, 1), values(k, n, 2));
            let (a, b) = operands(&a, &b, shape);
            // A destination of NaN, one column wider than the product.
            let mut dst = vec![f32::NAN; m * (n + 1)];
            matmul(MatMut::strided(&mut dst, m, n, n + 1), a, b, false);
            let expected = reference(a, b);
            for r in 0..m {
                assert_eq!(
                    &dst[r * (n + 1)..r * (n + 1) + n],
                    &expected[r * n..(r + 1) * n],
                    "{m}×{k}×{n}"
                );
                assert!(
                    dst[r * (n + 1) + n].is_nan(),
                    "{m}×{k}×{n}: wrote outside the view"
                );
            }
            assert_eq!(product(a, b), expected, "{m}×{k}×{n}");
        }
    }

    #[test]
    fn accumulating_products_add_to_the_destination() {
        for shape @ (m, k, n, _) in SHAPES {
            let (a, b) = (values(m, k, 3), values(k, n, 4));
            let (a, b) = operands(&a, &b, shape);
            let mut dst = values(m, n, 5);
            let before = dst.clone();
            matmul(MatMut::new(&mut dst, m, n), a, b, true);
            let sum: Vec<f32> = before
                .iter()
                .zip(reference(a, b))
                .map(|(d, p)| d + p)
                .collect();
            assert_eq!(dst, sum, "{m}×{k}×{n}");
        }
    }

    #[test]
    #[should_panic(expected = "cannot accumulate into an unwritten array")]
    fn unwritten_arrays_cannot_be_accumulated_into() {
        let (a, b) = (values(2, 2, 0), values(2, 2, 1));
        let mut out = Unwritten::new(4);
        matmul(
            out.view(0, 2, 2, 2),
            Mat::new(&a, 2, 2),
            Mat::new(&b, 2, 2),
            true,
        );
    }
}

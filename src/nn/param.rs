//! Trainable tensors and the object-safe view the optimizer walks over.

use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A trainable tensor. `decay` says whether AdamW's weight decay applies
/// (weights: yes; biases, norms, embeddings: no).
pub struct Param<S: Shape, Dev: Device<f32>> {
    pub value: Tensor<S, f32, Dev>,
    pub decay: bool,
}

impl<S: Shape, Dev: Device<f32>> Param<S, Dev> {
    /// Entries drawn from N(0, std²) with the run's weight stream.
    pub fn normal(dev: &Dev, shape: S, std: f32, decay: bool, rng: &mut ChaCha8Rng) -> Self {
        let n = shape.num_elements();
        let data: Vec<f32> = (0..n)
            .map(|_| std * rng.sample::<f32, _>(StandardNormal))
            .collect();
        Param {
            value: dev.tensor_from_vec(data, shape),
            decay,
        }
    }

    pub fn filled(dev: &Dev, shape: S, value: f32) -> Self {
        let n = shape.num_elements();
        Param {
            value: dev.tensor_from_vec(vec![value; n], shape),
            decay: false,
        }
    }

    /// The tensor entering a computation recorded on tape `T`.
    pub fn on<T: Tape<f32, Dev>>(&self) -> Tensor<S, f32, Dev, T> {
        self.value.retaped::<T>()
    }
}

/// What the optimizer needs from any parameter, whatever its shape.
pub trait ParamTensor<Dev: Device<f32>> {
    fn numel(&self) -> usize;
    fn decays(&self) -> bool;
    fn values(&self) -> Vec<f32>;
    fn set_values(&mut self, values: &[f32]);
    /// Ensures `grads` holds an entry for this parameter (zero if unused).
    fn track(&self, grads: &mut Gradients<f32, Dev>);
    fn grad(&self, grads: &Gradients<f32, Dev>) -> Vec<f32>;
}

impl<S: Shape, Dev: Device<f32>> ParamTensor<Dev> for Param<S, Dev> {
    fn numel(&self) -> usize {
        self.value.shape().num_elements()
    }
    fn decays(&self) -> bool {
        self.decay
    }
    fn values(&self) -> Vec<f32> {
        // `copy_into` is a memcpy; `as_vec` walks strided indices.
        let mut values = vec![0.0; self.numel()];
        self.value.copy_into(&mut values);
        values
    }
    fn set_values(&mut self, values: &[f32]) {
        self.value.copy_from(values);
    }
    fn track(&self, grads: &mut Gradients<f32, Dev>) {
        grads
            .try_alloc_for(&self.value)
            .expect("allocating a gradient");
    }
    fn grad(&self, grads: &Gradients<f32, Dev>) -> Vec<f32> {
        let mut grad = vec![0.0; self.numel()];
        grads.get(&self.value).copy_into(&mut grad);
        grad
    }
}

/// A callback receiving each parameter in a fixed order.
pub type ParamVisitor<'a, Dev> = dyn FnMut(&mut dyn ParamTensor<Dev>) + 'a;

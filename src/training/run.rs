//! One run, top to bottom: data → model → train → eval → record.
//! A panic anywhere inside is caught and recorded as a failed run.

use super::record::{Provenance, RunRecord, Status};
use super::spec::RunSpec;
use crate::model::{with_widths, PositionStructure, Transformer, WithWidths};
use crate::nn::kernels::Kernels;
use crate::options::seeds::stream;
use crate::tasks::{self, Task};
use crate::training::eval::{self, EvalByLength};
use crate::training::train::{
    self, DeviceKind, PositionLoss, Progress, TrainOutcome, TrainReport, TrainStreams,
};
use dfdx::prelude::*;
use rand::RngCore;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the pipeline measured.
struct Measured {
    training: TrainReport,
    eval: Vec<EvalByLength>,
    structure: Option<PositionStructure>,
    params: usize,
}

/// Positions shown in the position-structure chart (at most).
const STRUCTURE_POSITIONS: usize = 32;

/// Trains and evaluates `spec`; never panics.
pub fn execute(
    spec: &RunSpec,
    provenance: &Provenance,
    progress: &mut dyn FnMut(Progress),
) -> RunRecord {
    let started_at_unix = unix_now();
    let clock = Instant::now();
    // A task that cannot be rebuilt (e.g. its text file vanished since
    // validation) fails the run, with default length facts.
    let task = catch_unwind(|| tasks::build(&spec.config.task));
    let (length_unit, language_model, (train_min, train_max)) = match &task {
        Ok(task) => (
            task.length_unit().to_string(),
            task.language_model(),
            task.seen_lengths(),
        ),
        Err(_) => Default::default(),
    };
    let outcome = task.and_then(|task| {
        catch_unwind(AssertUnwindSafe(|| {
            inject_failure(&spec.run_id);
            let task = task.as_ref();
            with_widths(
                &spec.config.model,
                Pipeline {
                    spec,
                    task,
                    progress,
                },
            )
        }))
    });
    let mut record = RunRecord {
        run_id: spec.run_id.clone(),
        group_id: spec.group_id.clone(),
        experiment: spec.experiment.clone(),
        seed: spec.seed,
        plan_index: spec.plan_index,
        config: serde_json::to_value(&spec.config).expect("run config serializes"),
        status: Status::Failed,
        error: None,
        diverged_step: None,
        params: 0,
        train_tokens: 0,
        train_seconds: 0.0,
        train_tokens_per_s: 0.0,
        wall_time_s: 0.0,
        final_train_loss: None,
        length_unit,
        language_model,
        train_min,
        train_max,
        eval: Vec::new(),
        curves: Vec::new(),
        position_structure: None,
        provenance: provenance.clone(),
        started_at_unix,
        finished_at_unix: 0.0,
    };
    match outcome {
        Ok(measured) => {
            let t = &measured.training;
            record.params = measured.params;
            record.train_tokens = t.tokens;
            record.train_seconds = t.seconds;
            record.train_tokens_per_s = t.tokens as f64 / t.seconds.max(1e-9);
            record.final_train_loss = Some(t.final_loss).filter(|l| l.is_finite());
            record.curves = t.curves.clone();
            record.eval = measured.eval;
            record.position_structure = measured.structure;
            match &t.outcome {
                TrainOutcome::Completed => record.status = Status::Ok,
                TrainOutcome::Diverged { step, reason } => {
                    record.status = Status::Diverged;
                    record.diverged_step = Some(*step);
                    record.error = Some(format!("diverged: {reason}"));
                }
            }
        }
        Err(panic) => record.error = Some(panic_message(panic.as_ref())),
    }
    record.wall_time_s = clock.elapsed().as_secs_f64();
    record.finished_at_unix = unix_now();
    record
}

struct Pipeline<'a> {
    spec: &'a RunSpec,
    task: &'a dyn Task,
    progress: &'a mut dyn FnMut(Progress),
}

impl WithWidths for Pipeline<'_> {
    type Output = Measured;
    fn run<const D: usize, const F: usize>(self) -> Measured {
        let dropout_seed = stream(self.spec.seed, "dropout").next_u64();
        match self.spec.config.train.device {
            DeviceKind::Cpu => on_device::<D, F, Cpu>(
                self.spec,
                self.task,
                Cpu::seed_from_u64(dropout_seed),
                self.progress,
            ),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => on_device::<D, F, Cuda>(
                self.spec,
                self.task,
                Cuda::seed_from_u64(dropout_seed),
                self.progress,
            ),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda => {
                unreachable!("device cuda is rejected at config time without the cuda feature")
            }
        }
    }
}

fn on_device<const D: usize, const F: usize, Dev: Kernels>(
    spec: &RunSpec,
    task: &dyn Task,
    dev: Dev,
    progress: &mut dyn FnMut(Progress),
) -> Measured {
    let cfg = &spec.config;
    let mut weights = stream(spec.seed, "weights");
    let mut model = Transformer::<D, F, Dev>::new(
        &dev,
        &cfg.model,
        &cfg.positional,
        task.vocab_size(),
        PositionLoss::probe_buckets(&cfg.train.position_loss),
        &mut weights,
    );
    let mut streams = TrainStreams {
        data: stream(spec.seed, "data"),
        positions: stream(spec.seed, "positions"),
    };
    let training = train::train(
        &mut model,
        task,
        &cfg.positional,
        &cfg.train,
        &mut streams,
        progress,
    );
    let (eval, structure) = match training.outcome {
        TrainOutcome::Completed => {
            let longest = cfg.eval.lengths.iter().copied().max().unwrap_or(0);
            let positions = task
                .input_len(longest.max(task.train_lengths().1))
                .min(STRUCTURE_POSITIONS);
            (
                eval::evaluate(&model, task, &cfg.positional, &cfg.eval),
                model.position_structure(positions),
            )
        }
        TrainOutcome::Diverged { .. } => (Vec::new(), None),
    };
    Measured {
        training,
        eval,
        structure,
        params: model.num_params(),
    }
}

/// Fault injection for testing failure isolation: the runs named in the
/// comma-separated `POSEMBED_FAIL_RUN` panic before training.
fn inject_failure(run_id: &str) {
    if std::env::var("POSEMBED_FAIL_RUN").is_ok_and(|ids| ids.split(',').any(|id| id == run_id)) {
        panic!("injected failure (POSEMBED_FAIL_RUN)");
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panicked: {text}")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

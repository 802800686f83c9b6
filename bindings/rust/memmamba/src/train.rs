//! Training: a trainer owns float32 master weights and the optimizer state.
use std::mem::size_of;
use std::os::raw::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};

use memmamba_sys as sys;

use crate::error::{check, check_thread, invalid, Code, Error, Result};
use crate::model::{check_abi, path_to_cstring, Device, Math, Model, ModelOptions};
use crate::session::Session;

/// AdamW and accumulation settings (`mm_trainer_options`). `Default` gives
/// the library's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerOptions {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled, on matrices and embeddings only.
    pub weight_decay: f32,
    /// Clip the global gradient L2 norm to this; 0 = off.
    pub grad_clip: f32,
    /// `train_step` calls per optimizer update.
    pub accum_steps: u32,
    /// 0 = OMP_NUM_THREADS, else every CPU the process may use.
    pub n_threads: i32,
    /// The straight-through estimator of note selection (DESIGN 6).
    pub note_straight_through: bool,
    /// Where the trainer runs: `Device::Cuda` keeps its state on the GPU
    /// (`Code::NoDevice` without one, `Code::Unsupported` without CUDA).
    pub device: Device,
    /// How the GPU trainer's products are computed (`Math::Tf32`: TF32
    /// tensor cores; master weights and moments stay fp32; `Math::Bf16` is
    /// refused with `Code::Unsupported`).
    pub math: Math,
}

impl Default for TrainerOptions {
    fn default() -> TrainerOptions {
        let mut raw = sys::mm_trainer_options::default();
        let status =
            unsafe { sys::mm_trainer_options_init(&mut raw, size_of::<sys::mm_trainer_options>()) };
        if status != sys::MM_OK {
            // A library without training: the header's documented defaults
            // (creating a trainer will then report the real problem).
            return TrainerOptions {
                learning_rate: 1e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                grad_clip: 1.0,
                accum_steps: 1,
                n_threads: 0,
                note_straight_through: false,
                device: Device::Cpu,
                math: Math::Fp32,
            };
        }
        TrainerOptions {
            learning_rate: raw.learning_rate,
            beta1: raw.beta1,
            beta2: raw.beta2,
            eps: raw.eps,
            weight_decay: raw.weight_decay,
            grad_clip: raw.grad_clip,
            accum_steps: raw.accum_steps,
            n_threads: raw.n_threads,
            note_straight_through: raw.note_straight_through,
            device: if raw.device == sys::MM_DEVICE_CUDA { Device::Cuda } else { Device::Cpu },
            math: if raw.math == sys::MM_MATH_TF32 { Math::Tf32 } else { Math::Fp32 },
        }
    }
}

impl TrainerOptions {
    fn to_raw(&self) -> sys::mm_trainer_options {
        sys::mm_trainer_options {
            struct_size: size_of::<sys::mm_trainer_options>() as u32,
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            grad_clip: self.grad_clip,
            accum_steps: self.accum_steps,
            n_threads: self.n_threads,
            note_straight_through: self.note_straight_through,
            device: match self.device {
                Device::Cpu => sys::MM_DEVICE_CPU,
                Device::Cuda => sys::MM_DEVICE_CUDA,
            },
            math: self.math.to_raw(),
        }
    }
}

/// The inputs of one training call (`mm_train_batch`): `batch` sequences of
/// `seq_len` token ids, row-major, and what else the call may take. Start
/// from `TrainBatch::new`; fields may be added in later versions.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct TrainBatch<'a> {
    pub tokens: &'a [i32],
    pub batch: usize,
    pub seq_len: usize,
    /// One byte per token: non-zero makes the token a target (entries at
    /// t = 0 are ignored). `None`: every token from t = 1 on.
    pub loss_mask: Option<&'a [u8]>,
    /// One entry per sequence: the session whose stream it continues
    /// (`None`: empty state), as in `Trainer::train_step_from`.
    pub sessions: Option<&'a [Option<&'a Session>]>,
    /// One byte per token: non-zero at (b, t) zeroes sequence b's recurrent
    /// state (every layer's scan state and conv inputs) before position t,
    /// while its notes and pools go on: the function a session computes
    /// with `Session::reset_recurrent` between feeding positions < t and
    /// >= t. The answer's gradient then reaches the note block only through
    /// the notes. CPU trainers only.
    pub recurrent_resets: Option<&'a [u8]>,
}

impl<'a> TrainBatch<'a> {
    /// `batch` sequences of `seq_len` tokens from empty state, every token
    /// from t = 1 on a target, no resets.
    pub fn new(tokens: &'a [i32], batch: usize, seq_len: usize) -> Self {
        TrainBatch {
            tokens,
            batch,
            seq_len,
            loss_mask: None,
            sessions: None,
            recurrent_resets: None,
        }
    }
}

/// What one training call did (`mm_train_result`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainResult {
    /// Mean cross-entropy (nats) over this call's targets.
    pub loss: f32,
    /// Global gradient norm before clipping; meaningful when `updated`.
    pub grad_norm: f32,
    /// Targets counted.
    pub tokens: u64,
    /// This call completed an accumulation and updated the weights.
    pub updated: bool,
    /// Optimizer updates so far.
    pub step: u64,
}

/// Trains a model's weights with AdamW. `Send`, not `Sync`: one thread at a
/// time. Independent of the model it started from, which may be dropped.
pub struct Trainer {
    ptr: NonNull<sys::mm_trainer>,
    n_layer: usize,
}

unsafe impl Send for Trainer {}

impl Drop for Trainer {
    fn drop(&mut self) {
        unsafe { sys::mm_trainer_free(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.step_count())
            .finish()
    }
}

fn no_handle() -> Error {
    Error::new(Code::Internal, "the library returned no trainer")
}

impl Trainer {
    /// A trainer starting from `model`'s weights.
    pub fn new(model: &Model, options: &TrainerOptions) -> Result<Trainer> {
        check_abi()?;
        let raw = options.to_raw();
        let mut out = ptr::null_mut();
        check_thread(unsafe { sys::mm_trainer_create(&mut out, model.as_ptr(), &raw) })?;
        let ptr = NonNull::new(out).ok_or_else(no_handle)?;
        Ok(Trainer {
            ptr,
            n_layer: model.config().n_layer as usize,
        })
    }

    /// Loads a trainer written by `save`; training continues exactly where
    /// it stopped. `n_threads` 0 = OMP_NUM_THREADS, else every CPU the process may use.
    pub fn load(path: impl AsRef<Path>, n_threads: i32) -> Result<Trainer> {
        Trainer::load_on(path, n_threads, Device::Cpu)
    }

    /// `load`, continuing on `device`: a trainer saved on either device
    /// resumes on either (`mm_trainer_load_on`).
    pub fn load_on(path: impl AsRef<Path>, n_threads: i32, device: Device) -> Result<Trainer> {
        check_abi()?;
        let c_path = path_to_cstring(path.as_ref())?;
        let mut out = ptr::null_mut();
        let device = match device {
            Device::Cpu => sys::MM_DEVICE_CPU,
            Device::Cuda => sys::MM_DEVICE_CUDA,
        };
        check_thread(unsafe {
            sys::mm_trainer_load_on(&mut out, c_path.as_ptr(), n_threads, device)
        })?;
        let ptr = NonNull::new(out).ok_or_else(no_handle)?;
        let mut trainer = Trainer { ptr, n_layer: 0 };
        // The C API has no call giving a trainer's configuration; the layer
        // count (for keep_fraction) comes from one exported model.
        trainer.n_layer = trainer.export_model()?.config().n_layer as usize;
        Ok(trainer)
    }

    fn last_error(&self) -> *const c_char {
        unsafe { sys::mm_trainer_last_error(self.ptr.as_ptr()) }
    }

    pub(crate) fn last_error_ptr(&self) -> *const c_char {
        self.last_error()
    }

    pub(crate) fn raw(&self) -> *mut sys::mm_trainer {
        self.ptr.as_ptr()
    }

    /// One training call on `batch` sequences of `seq_len` tokens, row-major.
    /// `mask`, if given, holds one byte per token: non-zero makes the token
    /// a target (entries at t = 0 are ignored). On error nothing changes.
    pub fn train_step(
        &mut self,
        tokens: &[i32],
        batch: usize,
        seq_len: usize,
        mask: Option<&[u8]>,
    ) -> Result<TrainResult> {
        let mut b = TrainBatch::new(tokens, batch, seq_len);
        b.loss_mask = mask;
        self.train_step_batch(&b)
    }

    /// `train_step` where sequence b continues the stream of `sessions[b]`
    /// instead of starting from empty state (`None`: empty state): its
    /// forward starts from that session's state and its reads see the
    /// session's pools (`mm_train_step_from`). The sessions are only read,
    /// never changed (feed a session the sequence to advance it); their
    /// state is a constant of the gradient. `sessions.len()` must equal
    /// `batch`, and each session must run on a model of the trainer's
    /// configuration at a position that is a multiple of `note_window`
    /// (else `Code::InvalidArgument`). A trainer on a GPU gives
    /// `Code::Unsupported`. On error nothing changes.
    pub fn train_step_from(
        &mut self,
        sessions: &[Option<&Session>],
        tokens: &[i32],
        batch: usize,
        seq_len: usize,
        mask: Option<&[u8]>,
    ) -> Result<TrainResult> {
        let mut b = TrainBatch::new(tokens, batch, seq_len);
        b.loss_mask = mask;
        b.sessions = Some(sessions);
        self.train_step_batch(&b)
    }

    /// One training call on the inputs `batch` describes
    /// (`mm_train_step_batch`): `train_step`, `train_step_from`, and
    /// recurrent resets (see `TrainBatch`). A trainer on a GPU gives
    /// `Code::Unsupported` for resets and for sessions. On error nothing
    /// changes.
    pub fn train_step_batch(&mut self, batch: &TrainBatch<'_>) -> Result<TrainResult> {
        let expected = batch.batch.checked_mul(batch.seq_len).ok_or_else(|| {
            invalid(format!(
                "batch {} x seq_len {} overflows",
                batch.batch, batch.seq_len
            ))
        })?;
        if batch.tokens.len() != expected {
            return Err(invalid(format!(
                "{} tokens for a batch of {} x {} = {}",
                batch.tokens.len(),
                batch.batch,
                batch.seq_len,
                expected
            )));
        }
        for (what, bytes) in [
            ("a loss mask", batch.loss_mask),
            ("recurrent resets", batch.recurrent_resets),
        ] {
            if let Some(b) = bytes {
                if b.len() != expected {
                    return Err(invalid(format!(
                        "{} of {} bytes for {} tokens",
                        what,
                        b.len(),
                        expected
                    )));
                }
            }
        }
        let handles: Option<Vec<*const sys::mm_session>> = match batch.sessions {
            None => None,
            Some(s) if s.len() != batch.batch => {
                return Err(invalid(format!(
                    "{} sessions for a batch of {} sequences",
                    s.len(),
                    batch.batch
                )));
            }
            Some(s) => Some(
                s.iter()
                    .map(|s| s.map_or(ptr::null(), |s| s.as_ptr()))
                    .collect(),
            ),
        };
        let bytes_ptr = |b: Option<&[u8]>| b.map_or(ptr::null(), |b| b.as_ptr());
        let raw_batch = sys::mm_train_batch {
            struct_size: size_of::<sys::mm_train_batch>() as u32,
            tokens: batch.tokens.as_ptr(),
            batch: batch.batch,
            seq_len: batch.seq_len,
            loss_mask: bytes_ptr(batch.loss_mask),
            sessions: handles.as_ref().map_or(ptr::null(), |h| h.as_ptr()),
            recurrent_resets: bytes_ptr(batch.recurrent_resets),
        };
        let mut raw = sys::mm_train_result::default();
        raw.struct_size = size_of::<sys::mm_train_result>() as u32;
        let status =
            unsafe { sys::mm_train_step_batch(self.ptr.as_ptr(), &raw_batch, &mut raw) };
        check(status, || self.last_error())?;
        Ok(TrainResult {
            loss: raw.loss,
            grad_norm: raw.grad_norm,
            tokens: raw.tokens,
            updated: raw.updated,
            step: raw.step,
        })
    }

    /// The learning rate of the following updates.
    pub fn set_learning_rate(&mut self, learning_rate: f32) -> Result<()> {
        let status = unsafe { sys::mm_trainer_set_learning_rate(self.ptr.as_ptr(), learning_rate) };
        check(status, || self.last_error())
    }

    /// Optimizer updates applied so far.
    pub fn step_count(&self) -> u64 {
        unsafe { sys::mm_trainer_step_count(self.ptr.as_ptr()) }
    }

    /// Per layer, the fraction of the note windows closed by the last
    /// `train_step` whose score passed the threshold (0 = a dead layer).
    pub fn keep_fraction(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.n_layer];
        let status = unsafe {
            sys::mm_trainer_keep_fraction(self.ptr.as_ptr(), out.as_mut_ptr(), out.len())
        };
        check(status, || self.last_error())?;
        Ok(out)
    }

    /// A new immutable model of the current weights (float32, default options).
    pub fn export_model(&self) -> Result<Model> {
        self.export_model_with(&ModelOptions::default())
    }

    pub fn export_model_with(&self, options: &ModelOptions) -> Result<Model> {
        let raw = options.to_raw();
        let mut out = ptr::null_mut();
        let status = unsafe { sys::mm_trainer_export_model(self.ptr.as_ptr(), &raw, &mut out) };
        check(status, || self.last_error())?;
        Model::from_raw(out)
    }

    /// Writes the whole trainer to `path`, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_cstring(path.as_ref())?;
        let status = unsafe { sys::mm_trainer_save(self.ptr.as_ptr(), c_path.as_ptr()) };
        check(status, || self.last_error())
    }
}

//! Models: configuration, creation, files, and evaluation.
use std::ffi::CString;
use std::mem::size_of;
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use memmamba_sys as sys;

use crate::error::{check_thread, invalid, Code, Error, Result};

/// How a full note pool chooses what to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolPolicy {
    /// Keep the highest-scored notes.
    Priority,
    /// Keep the most recent notes.
    Fifo,
}

impl PoolPolicy {
    pub(crate) fn raw(self) -> i32 {
        match self {
            PoolPolicy::Priority => sys::MM_POOL_PRIORITY,
            PoolPolicy::Fifo => sys::MM_POOL_FIFO,
        }
    }
    pub(crate) fn from_raw(raw: i32) -> Result<PoolPolicy> {
        match raw {
            sys::MM_POOL_PRIORITY => Ok(PoolPolicy::Priority),
            sys::MM_POOL_FIFO => Ok(PoolPolicy::Fifo),
            other => Err(Error::new(
                Code::Internal,
                format!("unknown pool policy {}", other),
            )),
        }
    }
}

/// How the pool reads join the residual stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fusion {
    /// A learned per-channel alpha.
    Weighted,
    /// Alpha = 1.
    Residual,
    /// Alpha = sigmoid(fuse.weight * a), per channel.
    Gated,
}

impl Fusion {
    fn raw(self) -> i32 {
        match self {
            Fusion::Weighted => sys::MM_FUSION_WEIGHTED,
            Fusion::Residual => sys::MM_FUSION_RESIDUAL,
            Fusion::Gated => sys::MM_FUSION_GATED,
        }
    }
    fn from_raw(raw: i32) -> Result<Fusion> {
        match raw {
            sys::MM_FUSION_WEIGHTED => Ok(Fusion::Weighted),
            sys::MM_FUSION_RESIDUAL => Ok(Fusion::Residual),
            sys::MM_FUSION_GATED => Ok(Fusion::Gated),
            other => Err(Error::new(
                Code::Internal,
                format!("unknown fusion {}", other),
            )),
        }
    }
}

/// A model's shape and memory knobs (`mm_model_config`). `Default` gives the
/// library's defaults; the header and README describe every field.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub vocab_size: u32,
    pub d_model: u32,
    pub n_layer: u32,
    pub d_state: u32,
    pub d_conv: u32,
    pub expand: u32,
    /// 0 = ceil(d_model / 16); `Model::config` reports the resolved value.
    pub dt_rank: u32,
    pub note_window: u32,
    pub summary_dim: u32,
    /// 0 = no memory: plain Mamba.
    pub pool_capacity: u32,
    pub pool_policy: PoolPolicy,
    pub note_threshold: f32,
    pub attn_heads: u32,
    pub gate_threshold: f32,
    /// 0 = no cross-layer reads.
    pub cross_layer_period: u32,
    pub cross_layer_span: u32,
    pub fusion: Fusion,
    pub norm_eps: f32,
    pub tie_embeddings: bool,
}

impl Default for Config {
    fn default() -> Config {
        let mut raw = sys::mm_model_config::default();
        // Cannot fail: a valid pointer and this struct's own size.
        unsafe { sys::mm_model_config_init(&mut raw, size_of::<sys::mm_model_config>()) };
        Config::from_raw(&raw).expect("the library's default configuration")
    }
}

impl Config {
    pub(crate) fn to_raw(&self) -> sys::mm_model_config {
        sys::mm_model_config {
            struct_size: size_of::<sys::mm_model_config>() as u32,
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            n_layer: self.n_layer,
            d_state: self.d_state,
            d_conv: self.d_conv,
            expand: self.expand,
            dt_rank: self.dt_rank,
            note_window: self.note_window,
            summary_dim: self.summary_dim,
            pool_capacity: self.pool_capacity,
            pool_policy: self.pool_policy.raw(),
            note_threshold: self.note_threshold,
            attn_heads: self.attn_heads,
            gate_threshold: self.gate_threshold,
            cross_layer_period: self.cross_layer_period,
            cross_layer_span: self.cross_layer_span,
            fusion: self.fusion.raw(),
            norm_eps: self.norm_eps,
            tie_embeddings: self.tie_embeddings as i32,
        }
    }

    pub(crate) fn from_raw(raw: &sys::mm_model_config) -> Result<Config> {
        Ok(Config {
            vocab_size: raw.vocab_size,
            d_model: raw.d_model,
            n_layer: raw.n_layer,
            d_state: raw.d_state,
            d_conv: raw.d_conv,
            expand: raw.expand,
            dt_rank: raw.dt_rank,
            note_window: raw.note_window,
            summary_dim: raw.summary_dim,
            pool_capacity: raw.pool_capacity,
            pool_policy: PoolPolicy::from_raw(raw.pool_policy)?,
            note_threshold: raw.note_threshold,
            attn_heads: raw.attn_heads,
            gate_threshold: raw.gate_threshold,
            cross_layer_period: raw.cross_layer_period,
            cross_layer_span: raw.cross_layer_span,
            fusion: Fusion::from_raw(raw.fusion)?,
            norm_eps: raw.norm_eps,
            tie_embeddings: raw.tie_embeddings != 0,
        })
    }
}

/// Where a model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    /// An NVIDIA GPU: a model's sessions keep their state and run there, and
    /// trainers train there (`TrainerOptions::device`); `Code::NoDevice`
    /// without a GPU, `Code::Unsupported` without CUDA.
    Cuda,
}

/// How weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    /// Matrices in bfloat16 (inference).
    Bf16,
}

/// How matrix products are computed (`mm_math`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Math {
    /// fp32 arithmetic on every device.
    Fp32,
    /// On a GPU, fp32 products may use TF32 tensor cores (~1e-3 relative
    /// error, several times faster at many rows); the CPU ignores it.
    Tf32,
    /// On a GPU, the mixers' in and out projections and the LM head in bf16
    /// on the device (~1e-2 relative error); models only (a trainer refuses
    /// it); the CPU ignores it.
    Bf16,
}

impl Math {
    pub(crate) fn to_raw(self) -> i32 {
        match self {
            Math::Fp32 => sys::MM_MATH_FP32,
            Math::Tf32 => sys::MM_MATH_TF32,
            Math::Bf16 => sys::MM_MATH_BF16,
        }
    }
}

/// How a model runs (`mm_model_options`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    pub device: Device,
    pub weight_dtype: Dtype,
    /// Threads used by calls on the model; 0 = OMP_NUM_THREADS, else every CPU the process may use.
    pub n_threads: i32,
    /// How the model's matrix products are computed.
    pub math: Math,
}

impl Default for ModelOptions {
    fn default() -> ModelOptions {
        ModelOptions {
            device: Device::Cpu,
            weight_dtype: Dtype::F32,
            n_threads: 0,
            math: Math::Fp32,
        }
    }
}

impl ModelOptions {
    pub(crate) fn to_raw(&self) -> sys::mm_model_options {
        let mut raw = sys::mm_model_options::default();
        unsafe { sys::mm_model_options_init(&mut raw, size_of::<sys::mm_model_options>()) };
        raw.device = match self.device {
            Device::Cpu => sys::MM_DEVICE_CPU,
            Device::Cuda => sys::MM_DEVICE_CUDA,
        };
        raw.weight_dtype = match self.weight_dtype {
            Dtype::F32 => sys::MM_DTYPE_F32,
            Dtype::Bf16 => sys::MM_DTYPE_BF16,
        };
        raw.n_threads = self.n_threads;
        raw.math = self.math.to_raw();
        raw
    }
}

pub(crate) struct ModelInner {
    ptr: NonNull<sys::mm_model>,
    config: Config,
}

// The library's models are immutable once created and documented as usable
// from any thread, by any number of threads at once.
unsafe impl Send for ModelInner {}
unsafe impl Sync for ModelInner {}

impl Drop for ModelInner {
    fn drop(&mut self) {
        // Sessions hold a `Model` (an Arc of this), so none is left.
        unsafe { sys::mm_model_free(self.ptr.as_ptr()) }
    }
}

/// An immutable model, shared by any number of sessions and threads.
///
/// `Model` is a reference-counted handle: `clone()` is cheap and gives
/// another handle to the same model. Every `Session` holds one, so a model
/// lives as long as its last session and can never be freed under one.
/// (An Arc rather than a borrow: sessions then move freely between threads
/// and into long-lived structures, with no lifetime parameter to carry.)
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.inner.config)
            .finish()
    }
}

pub(crate) fn path_to_cstring(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| invalid(format!("path {:?} is not valid UTF-8", path)))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| invalid(format!("path {:?} contains a NUL byte", path)))
}

/// Refuses a library of another ABI than these bindings were written for.
pub(crate) fn check_abi() -> Result<()> {
    let abi = unsafe { sys::mm_abi_version() };
    if abi == sys::MM_ABI_VERSION {
        Ok(())
    } else {
        Err(Error::new(
            Code::Unsupported,
            format!(
                "the library has ABI version {}, these bindings {}",
                abi,
                sys::MM_ABI_VERSION
            ),
        ))
    }
}

impl Model {
    /// Takes ownership of a model the library created.
    pub(crate) fn from_raw(ptr: *mut sys::mm_model) -> Result<Model> {
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| Error::new(Code::Internal, "the library returned no model"))?;
        let mut raw = sys::mm_model_config::default();
        raw.struct_size = size_of::<sys::mm_model_config>() as u32;
        let status = unsafe { sys::mm_model_get_config(ptr.as_ptr(), &mut raw) };
        let config = check_thread(status).and_then(|_| Config::from_raw(&raw));
        match config {
            Ok(config) => Ok(Model {
                inner: Arc::new(ModelInner { ptr, config }),
            }),
            Err(e) => {
                unsafe { sys::mm_model_free(ptr.as_ptr()) };
                Err(e)
            }
        }
    }

    pub(crate) fn as_ptr(&self) -> *const sys::mm_model {
        self.inner.ptr.as_ptr()
    }

    /// A model with fresh weights drawn from `seed`, on the CPU with OpenMP's default thread count.
    pub fn create(config: &Config, seed: u64) -> Result<Model> {
        Model::create_with(config, seed, &ModelOptions::default())
    }

    /// A model with fresh weights drawn from `seed`.
    pub fn create_with(config: &Config, seed: u64, options: &ModelOptions) -> Result<Model> {
        check_abi()?;
        let raw_config = config.to_raw();
        let raw_options = options.to_raw();
        let mut out = ptr::null_mut();
        check_thread(unsafe { sys::mm_model_create(&mut out, &raw_config, seed, &raw_options) })?;
        Model::from_raw(out)
    }

    /// Loads a model saved by `save` (safetensors, configuration inside).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ModelOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, options: &ModelOptions) -> Result<Model> {
        check_abi()?;
        let c_path = path_to_cstring(path.as_ref())?;
        let raw_options = options.to_raw();
        let mut out = ptr::null_mut();
        check_thread(unsafe { sys::mm_model_load(&mut out, c_path.as_ptr(), &raw_options) })?;
        Model::from_raw(out)
    }

    /// Imports a Mamba v1 checkpoint (reference naming, safetensors). Its
    /// shapes come from the file; the memory knobs from `memory_config`;
    /// the memory weights are drawn from `seed`.
    pub fn import_mamba(
        path: impl AsRef<Path>,
        memory_config: &Config,
        seed: u64,
        options: &ModelOptions,
    ) -> Result<Model> {
        check_abi()?;
        let c_path = path_to_cstring(path.as_ref())?;
        let raw_config = memory_config.to_raw();
        let raw_options = options.to_raw();
        let mut out = ptr::null_mut();
        check_thread(unsafe {
            sys::mm_model_import_mamba(&mut out, c_path.as_ptr(), &raw_config, seed, &raw_options)
        })?;
        Model::from_raw(out)
    }

    /// Writes the model to `path` (safetensors), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_cstring(path.as_ref())?;
        check_thread(unsafe { sys::mm_model_save(self.as_ptr(), c_path.as_ptr()) })
    }

    /// The model's resolved configuration (`dt_rank` filled in).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.config.vocab_size as usize
    }

    /// Number of parameters (scalars).
    pub fn parameter_count(&self) -> u64 {
        unsafe { sys::mm_model_parameter_count(self.as_ptr()) }
    }

    /// A hash of the configuration and weights; snapshots restore only onto
    /// a model with the same fingerprint.
    pub fn fingerprint(&self) -> u64 {
        unsafe { sys::mm_model_fingerprint(self.as_ptr()) }
    }

    /// True when both handles are the same model.
    pub fn same_as(&self, other: &Model) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

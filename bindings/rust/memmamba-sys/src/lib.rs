//! Raw declarations of memmamba's C API, written by hand from
//! `include/memmamba/memmamba.h` (the contract: every function's ownership,
//! NULL and thread rules are documented there). Use the safe `memmamba`
//! crate unless you need the C calls themselves.
//!
//! Structs are `#[repr(C)]` mirrors of the header's; their sizes are checked
//! by this crate's tests. Each starts with `struct_size`, which the caller
//! sets (through the `_init` calls) to `size_of` the mirror.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_void};

// --- Versions ---------------------------------------------------------------

pub const MM_VERSION_MAJOR: u32 = 0;
pub const MM_VERSION_MINOR: u32 = 1;
pub const MM_VERSION_PATCH: u32 = 0;
pub const MM_VERSION_NUMBER: u32 =
    MM_VERSION_MAJOR * 10000 + MM_VERSION_MINOR * 100 + MM_VERSION_PATCH;
/// The ABI these declarations describe; compare with `mm_abi_version()`.
pub const MM_ABI_VERSION: u32 = 1;

// --- Status codes -----------------------------------------------------------

pub type mm_status = i32;
pub const MM_OK: mm_status = 0;
pub const MM_ERR_INVALID_ARGUMENT: mm_status = -1;
pub const MM_ERR_STRUCT_SIZE: mm_status = -2;
pub const MM_ERR_TOKEN_OUT_OF_RANGE: mm_status = -3;
pub const MM_ERR_OUT_OF_MEMORY: mm_status = -4;
pub const MM_ERR_IO: mm_status = -5;
pub const MM_ERR_CORRUPT_FILE: mm_status = -6;
pub const MM_ERR_TENSOR_MISSING: mm_status = -7;
pub const MM_ERR_TENSOR_SHAPE: mm_status = -8;
pub const MM_ERR_TENSOR_DTYPE: mm_status = -9;
pub const MM_ERR_NON_FINITE: mm_status = -10;
pub const MM_ERR_CONFIG: mm_status = -11;
pub const MM_ERR_MODEL_MISMATCH: mm_status = -12;
pub const MM_ERR_UNSUPPORTED: mm_status = -13;
pub const MM_ERR_BUFFER_TOO_SMALL: mm_status = -14;
pub const MM_ERR_INTERNAL: mm_status = -15;
pub const MM_ERR_CHECKSUM: mm_status = -16;
pub const MM_ERR_VERSION: mm_status = -17;
pub const MM_ERR_NO_DEVICE: mm_status = -18;
pub const MM_ERR_COMM: mm_status = -19;

// --- Enums (passed as int32_t) ----------------------------------------------

pub const MM_POOL_PRIORITY: i32 = 0;
pub const MM_POOL_FIFO: i32 = 1;

pub const MM_FUSION_WEIGHTED: i32 = 0;
pub const MM_FUSION_RESIDUAL: i32 = 1;
pub const MM_FUSION_GATED: i32 = 2;

pub const MM_DEVICE_CPU: i32 = 0;
pub const MM_DEVICE_CUDA: i32 = 1;

pub const MM_DTYPE_F32: i32 = 0;
pub const MM_DTYPE_BF16: i32 = 1;

pub const MM_MATH_FP32: i32 = 0;
pub const MM_MATH_TF32: i32 = 1;
pub const MM_MATH_BF16: i32 = 2;

pub const MM_LOGITS_NONE: i32 = 0;
pub const MM_LOGITS_LAST: i32 = 1;
pub const MM_LOGITS_ALL: i32 = 2;

// --- Opaque handles -----------------------------------------------------------

/// Opaque; only ever behind a pointer.
#[repr(C)]
pub struct mm_model {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct mm_session {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct mm_trainer {
    _opaque: [u8; 0],
}

// --- Structs --------------------------------------------------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mm_model_config {
    pub struct_size: u32,
    pub vocab_size: u32,
    pub d_model: u32,
    pub n_layer: u32,
    pub d_state: u32,
    pub d_conv: u32,
    pub expand: u32,
    pub dt_rank: u32,
    pub note_window: u32,
    pub summary_dim: u32,
    pub pool_capacity: u32,
    pub pool_policy: i32,
    pub note_threshold: f32,
    pub attn_heads: u32,
    pub gate_threshold: f32,
    pub cross_layer_period: u32,
    pub cross_layer_span: u32,
    pub fusion: i32,
    pub norm_eps: f32,
    pub tie_embeddings: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mm_model_options {
    pub struct_size: u32,
    pub device: i32,
    pub weight_dtype: i32,
    pub n_threads: i32,
    pub math: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mm_session_options {
    pub struct_size: u32,
    pub max_chunk: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct mm_sample_options {
    pub struct_size: u32,
    pub temperature: f32,
    pub seed: u64,
    pub seeds: *const u64,
}

impl Default for mm_sample_options {
    fn default() -> Self {
        mm_sample_options {
            struct_size: 0,
            temperature: 0.0,
            seed: 0,
            seeds: std::ptr::null(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mm_snapshot_info {
    pub struct_size: u32,
    pub format_version: u32,
    pub position: u64,
    pub model_fingerprint: u64,
    pub n_layer: u32,
    pub d_model: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub d_conv: u32,
    pub summary_dim: u32,
    pub note_window: u32,
    pub pool_capacity: u32,
    pub pool_policy: i32,
    pub notes_total: u32,
    pub state_bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mm_trainer_options {
    pub struct_size: u32,
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub grad_clip: f32,
    pub accum_steps: u32,
    pub n_threads: i32,
    pub note_straight_through: bool,
    pub device: i32,
    pub math: i32,
}

pub const MM_NCCL_ID_BYTES: usize = 128;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct mm_data_parallel_options {
    pub struct_size: u32,
    pub world_size: u32,
    pub rank: u32,
    pub device: i32,
    pub nccl_id: [u8; MM_NCCL_ID_BYTES],
}

impl Default for mm_data_parallel_options {
    fn default() -> Self {
        mm_data_parallel_options {
            struct_size: 0,
            world_size: 0,
            rank: 0,
            device: 0,
            nccl_id: [0; MM_NCCL_ID_BYTES],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mm_train_result {
    pub struct_size: u32,
    pub loss: f32,
    pub grad_norm: f32,
    pub tokens: u64,
    pub updated: bool,
    pub step: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mm_train_batch {
    pub struct_size: u32,
    pub tokens: *const i32,
    pub batch: usize,
    pub seq_len: usize,
    pub loss_mask: *const u8,
    pub sessions: *const *const mm_session,
    pub recurrent_resets: *const u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mm_eval_result {
    pub struct_size: u32,
    pub loss: f64,
    pub perplexity: f64,
    pub tokens: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct mm_fidelity {
    pub struct_size: u32,
    pub etmf: f64,
    pub eclmf: [f64; 3],
    pub tokens: u64,
}

// --- Functions ------------------------------------------------------------------

extern "C" {
    // Versions
    pub fn mm_version() -> u32;
    pub fn mm_version_string() -> *const c_char;
    pub fn mm_abi_version() -> u32;

    // Errors and buffers
    pub fn mm_status_string(status: mm_status) -> *const c_char;
    pub fn mm_last_error() -> *const c_char;
    pub fn mm_free(ptr: *mut c_void);

    // Configuration and models
    pub fn mm_model_config_init(config: *mut mm_model_config, size: usize) -> mm_status;
    pub fn mm_model_options_init(options: *mut mm_model_options, size: usize) -> mm_status;
    pub fn mm_model_create(
        out: *mut *mut mm_model,
        config: *const mm_model_config,
        seed: u64,
        options: *const mm_model_options,
    ) -> mm_status;
    pub fn mm_model_load(
        out: *mut *mut mm_model,
        path: *const c_char,
        options: *const mm_model_options,
    ) -> mm_status;
    pub fn mm_model_save(model: *const mm_model, path: *const c_char) -> mm_status;
    pub fn mm_model_import_mamba(
        out: *mut *mut mm_model,
        path: *const c_char,
        memory_config: *const mm_model_config,
        seed: u64,
        options: *const mm_model_options,
    ) -> mm_status;
    pub fn mm_model_get_config(model: *const mm_model, config: *mut mm_model_config) -> mm_status;
    pub fn mm_model_parameter_count(model: *const mm_model) -> u64;
    pub fn mm_model_fingerprint(model: *const mm_model) -> u64;
    pub fn mm_model_free(model: *mut mm_model);

    // Sessions
    pub fn mm_session_options_init(options: *mut mm_session_options, size: usize) -> mm_status;
    pub fn mm_session_create(
        out: *mut *mut mm_session,
        model: *const mm_model,
        options: *const mm_session_options,
    ) -> mm_status;
    pub fn mm_session_free(session: *mut mm_session);
    pub fn mm_session_feed(
        session: *mut mm_session,
        tokens: *const i32,
        n_tokens: usize,
        mode: i32,
        logits: *mut f32,
        logits_capacity: usize,
    ) -> mm_status;
    pub fn mm_sessions_step(
        sessions: *const *mut mm_session,
        n_sessions: usize,
        tokens: *const i32,
        logits: *mut f32,
        logits_capacity: usize,
    ) -> mm_status;
    pub fn mm_sample_options_init(options: *mut mm_sample_options, size: usize) -> mm_status;
    pub fn mm_sessions_step_sample(
        sessions: *const *mut mm_session,
        n_sessions: usize,
        tokens: *const i32,
        options: *const mm_sample_options,
        next_tokens: *mut i32,
    ) -> mm_status;
    pub fn mm_session_reset(session: *mut mm_session) -> mm_status;
    pub fn mm_session_reset_recurrent(session: *mut mm_session) -> mm_status;
    pub fn mm_session_position(session: *const mm_session) -> u64;
    pub fn mm_session_state_bytes(session: *const mm_session) -> u64;
    pub fn mm_session_pool_size(session: *const mm_session, layer: u32) -> i32;
    pub fn mm_session_pool_notes(
        session: *const mm_session,
        layer: u32,
        windows: *mut i64,
        scores: *mut f32,
        summaries: *mut f32,
        capacity: usize,
        count: *mut usize,
    ) -> mm_status;
    pub fn mm_session_last_error(session: *const mm_session) -> *const c_char;

    // Snapshots
    pub fn mm_session_snapshot_size(session: *const mm_session, size: *mut usize) -> mm_status;
    pub fn mm_session_snapshot(
        session: *const mm_session,
        buffer: *mut c_void,
        capacity: usize,
        written: *mut usize,
    ) -> mm_status;
    pub fn mm_session_snapshot_alloc(
        session: *const mm_session,
        out: *mut *mut c_void,
        size: *mut usize,
    ) -> mm_status;
    pub fn mm_session_snapshot_file(session: *const mm_session, path: *const c_char) -> mm_status;
    pub fn mm_session_restore(
        session: *mut mm_session,
        data: *const c_void,
        size: usize,
    ) -> mm_status;
    pub fn mm_session_restore_file(session: *mut mm_session, path: *const c_char) -> mm_status;
    pub fn mm_snapshot_info_init(info: *mut mm_snapshot_info, size: usize) -> mm_status;
    pub fn mm_snapshot_inspect(
        data: *const c_void,
        size: usize,
        info: *mut mm_snapshot_info,
    ) -> mm_status;
    pub fn mm_snapshot_inspect_file(path: *const c_char, info: *mut mm_snapshot_info) -> mm_status;

    // Training
    pub fn mm_trainer_options_init(options: *mut mm_trainer_options, size: usize) -> mm_status;
    pub fn mm_trainer_create(
        out: *mut *mut mm_trainer,
        model: *const mm_model,
        options: *const mm_trainer_options,
    ) -> mm_status;
    pub fn mm_trainer_free(trainer: *mut mm_trainer);
    pub fn mm_train_result_init(result: *mut mm_train_result, size: usize) -> mm_status;
    pub fn mm_train_step(
        trainer: *mut mm_trainer,
        tokens: *const i32,
        batch: usize,
        seq_len: usize,
        loss_mask: *const u8,
        result: *mut mm_train_result,
    ) -> mm_status;
    pub fn mm_train_step_from(
        trainer: *mut mm_trainer,
        sessions: *const *const mm_session,
        tokens: *const i32,
        batch: usize,
        seq_len: usize,
        loss_mask: *const u8,
        result: *mut mm_train_result,
    ) -> mm_status;
    pub fn mm_train_batch_init(batch: *mut mm_train_batch, size: usize) -> mm_status;
    pub fn mm_train_step_batch(
        trainer: *mut mm_trainer,
        batch: *const mm_train_batch,
        result: *mut mm_train_result,
    ) -> mm_status;
    pub fn mm_trainer_set_learning_rate(trainer: *mut mm_trainer, learning_rate: f32) -> mm_status;
    pub fn mm_trainer_step_count(trainer: *const mm_trainer) -> u64;
    pub fn mm_trainer_keep_fraction(
        trainer: *const mm_trainer,
        fractions: *mut f32,
        capacity: usize,
    ) -> mm_status;
    pub fn mm_trainer_export_model(
        trainer: *const mm_trainer,
        options: *const mm_model_options,
        out: *mut *mut mm_model,
    ) -> mm_status;
    pub fn mm_trainer_save(trainer: *const mm_trainer, path: *const c_char) -> mm_status;
    pub fn mm_trainer_load(
        out: *mut *mut mm_trainer,
        path: *const c_char,
        n_threads: i32,
    ) -> mm_status;
    pub fn mm_trainer_load_on(
        out: *mut *mut mm_trainer,
        path: *const c_char,
        n_threads: i32,
        device: i32,
    ) -> mm_status;
    pub fn mm_trainer_last_error(trainer: *const mm_trainer) -> *const c_char;

    // Data-parallel training
    pub fn mm_data_parallel_options_init(
        options: *mut mm_data_parallel_options,
        size: usize,
    ) -> mm_status;
    pub fn mm_trainer_join(
        trainer: *mut mm_trainer,
        options: *const mm_data_parallel_options,
    ) -> mm_status;
    pub fn mm_trainer_world_size(trainer: *const mm_trainer) -> u32;
    pub fn mm_nccl_id_create(id: *mut u8) -> mm_status;
    pub fn mm_nccl_id_to_hex(id: *const u8, hex: *mut c_char, capacity: usize) -> mm_status;
    pub fn mm_nccl_id_from_hex(id: *mut u8, hex: *const c_char) -> mm_status;
    pub fn mm_nccl_id_write_file(path: *const c_char, id: *const u8) -> mm_status;
    pub fn mm_nccl_id_read_file(id: *mut u8, path: *const c_char, timeout_ms: u32) -> mm_status;

    // Evaluation
    pub fn mm_eval_result_init(result: *mut mm_eval_result, size: usize) -> mm_status;
    pub fn mm_eval_loss(
        model: *const mm_model,
        tokens: *const i32,
        n_tokens: usize,
        context: usize,
        result: *mut mm_eval_result,
    ) -> mm_status;
    pub fn mm_fidelity_init(result: *mut mm_fidelity, size: usize) -> mm_status;
    pub fn mm_eval_fidelity(
        model: *const mm_model,
        tokens: *const i32,
        n_tokens: usize,
        result: *mut mm_fidelity,
    ) -> mm_status;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    // Sizes and alignments the header's structs have under the C ABI of
    // every 64-bit target the library builds for (LP64 and LLP64 agree:
    // the structs hold only fixed-width types and bool).
    #[test]
    fn struct_layouts_match_the_header() {
        assert_eq!(size_of::<mm_model_config>(), 80);
        assert_eq!(size_of::<mm_model_options>(), 20);
        assert_eq!(size_of::<mm_session_options>(), 8);
        assert_eq!(size_of::<mm_sample_options>(), 24);
        assert_eq!(align_of::<mm_sample_options>(), 8);
        assert_eq!(size_of::<mm_snapshot_info>(), 72);
        assert_eq!(align_of::<mm_snapshot_info>(), 8);
        assert_eq!(size_of::<mm_trainer_options>(), 48);
        assert_eq!(size_of::<mm_train_result>(), 40);
        assert_eq!(size_of::<mm_eval_result>(), 32);
        assert_eq!(size_of::<mm_fidelity>(), 48);
    }

    #[test]
    fn linked_library_has_this_abi() {
        assert_eq!(unsafe { mm_abi_version() }, MM_ABI_VERSION);
    }

    #[test]
    fn init_calls_accept_our_sizes() {
        unsafe {
            let mut c = mm_model_config::default();
            assert_eq!(
                mm_model_config_init(&mut c, size_of::<mm_model_config>()),
                MM_OK
            );
            assert_eq!(c.struct_size as usize, size_of::<mm_model_config>());
            assert_eq!(c.vocab_size, 256);
            let mut o = mm_model_options::default();
            assert_eq!(
                mm_model_options_init(&mut o, size_of::<mm_model_options>()),
                MM_OK
            );
            let mut s = mm_session_options::default();
            assert_eq!(
                mm_session_options_init(&mut s, size_of::<mm_session_options>()),
                MM_OK
            );
            let mut i = mm_snapshot_info::default();
            assert_eq!(
                mm_snapshot_info_init(&mut i, size_of::<mm_snapshot_info>()),
                MM_OK
            );
            let mut so = mm_sample_options::default();
            assert_eq!(
                mm_sample_options_init(&mut so, size_of::<mm_sample_options>()),
                MM_OK
            );
            assert_eq!(so.temperature, 1.0);
            assert_eq!(mm_model_config_init(&mut c, 3), MM_ERR_STRUCT_SIZE);
        }
    }
}

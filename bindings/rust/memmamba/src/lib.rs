//! Safe Rust bindings of memmamba: stream token sequences through MemMamba
//! models (Mamba with a bounded note-taking memory), snapshot and restore
//! streams, train and evaluate.
//!
//! ```no_run
//! use memmamba::{Config, Logits, Model, Session};
//!
//! fn main() -> Result<(), memmamba::Error> {
//!     let model = Model::create(&Config::default(), 42)?;
//!     let mut session = Session::new(&model)?;
//!     let logits = session.feed(&[72, 105, 33], Logits::Last)?;
//!     assert_eq!(logits.len(), model.vocab_size());
//!     let saved = session.snapshot()?;
//!     session.feed(&[10], Logits::None)?;
//!     session.restore(&saved)?; // back to position 3
//!     Ok(())
//! }
//! ```
//!
//! Every fallible call returns `Result<T, Error>`; a failed call changes
//! nothing. Handles free themselves on drop. `Model` is `Send + Sync` and
//! cheap to clone (a shared handle); `Session` and `Trainer` are `Send`.
//!
//! The library is found at build time from `MEMMAMBA_LIB_DIR` or
//! `pkg-config` (see `memmamba-sys`).

mod data_parallel;
mod error;
mod eval;
mod model;
mod session;
mod snapshot;
mod train;

pub use data_parallel::{DataParallel, NcclId};
pub use error::{Code, Error, Result};
pub use eval::{EvalResult, Fidelity};
pub use model::{Config, Device, Dtype, Fusion, Math, Model, ModelOptions, PoolPolicy};
pub use session::{Logits, Note, Session, SessionOptions};
pub use snapshot::SnapshotInfo;
pub use train::{TrainBatch, TrainResult, Trainer, TrainerOptions};

/// The raw C declarations, for what the safe API does not cover.
pub use memmamba_sys as sys;

/// The library's version, e.g. "0.1.0".
pub fn version() -> String {
    unsafe { error::string_from(sys::mm_version_string()) }
}

/// The library's version number (MAJOR*10000 + MINOR*100 + PATCH).
pub fn version_number() -> u32 {
    unsafe { sys::mm_version() }
}

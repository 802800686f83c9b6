//! Inspecting snapshots without a model.
use std::mem::size_of;
use std::os::raw::c_void;
use std::path::Path;

use memmamba_sys as sys;

use crate::error::{check_thread, Result};
use crate::model::{path_to_cstring, PoolPolicy};

/// What a snapshot says about itself (`mm_snapshot_info`), after the same
/// complete checks a restore runs (less the model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub format_version: u32,
    /// Tokens the stream had consumed.
    pub position: u64,
    /// `Model::fingerprint` of its model.
    pub model_fingerprint: u64,
    pub n_layer: u32,
    pub d_model: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub d_conv: u32,
    pub summary_dim: u32,
    pub note_window: u32,
    pub pool_capacity: u32,
    pub pool_policy: PoolPolicy,
    /// Notes held, all layers together.
    pub notes_total: u32,
    /// Bytes of state it carries.
    pub state_bytes: u64,
}

impl SnapshotInfo {
    /// Checks and describes the snapshot `data`.
    pub fn inspect(data: &[u8]) -> Result<SnapshotInfo> {
        let mut raw = new_raw();
        check_thread(unsafe {
            sys::mm_snapshot_inspect(data.as_ptr() as *const c_void, data.len(), &mut raw)
        })?;
        SnapshotInfo::from_raw(&raw)
    }

    /// Checks and describes the snapshot file `path`.
    pub fn inspect_file(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        let c_path = path_to_cstring(path.as_ref())?;
        let mut raw = new_raw();
        check_thread(unsafe { sys::mm_snapshot_inspect_file(c_path.as_ptr(), &mut raw) })?;
        SnapshotInfo::from_raw(&raw)
    }

    /// Notes held over notes possible (0 for a model without memory).
    pub fn pool_fill(&self) -> f64 {
        let slots = self.n_layer as f64 * self.pool_capacity as f64;
        if slots > 0.0 {
            self.notes_total as f64 / slots
        } else {
            0.0
        }
    }

    fn from_raw(raw: &sys::mm_snapshot_info) -> Result<SnapshotInfo> {
        Ok(SnapshotInfo {
            format_version: raw.format_version,
            position: raw.position,
            model_fingerprint: raw.model_fingerprint,
            n_layer: raw.n_layer,
            d_model: raw.d_model,
            d_inner: raw.d_inner,
            d_state: raw.d_state,
            d_conv: raw.d_conv,
            summary_dim: raw.summary_dim,
            note_window: raw.note_window,
            pool_capacity: raw.pool_capacity,
            pool_policy: PoolPolicy::from_raw(raw.pool_policy)?,
            notes_total: raw.notes_total,
            state_bytes: raw.state_bytes,
        })
    }
}

fn new_raw() -> sys::mm_snapshot_info {
    let mut raw = sys::mm_snapshot_info::default();
    unsafe { sys::mm_snapshot_info_init(&mut raw, size_of::<sys::mm_snapshot_info>()) };
    raw
}

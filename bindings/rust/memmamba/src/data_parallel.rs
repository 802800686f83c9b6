//! Data-parallel training over several GPUs (`mm_trainer_join`, NCCL).
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;
use std::time::Duration;

use memmamba_sys as sys;

use crate::error::{check, check_thread, invalid, Result};
use crate::model::path_to_cstring;
use crate::train::Trainer;

/// The id of a data-parallel group: made by one rank (`NcclId::create`) and
/// handed to every rank by the caller (a file, an environment variable as
/// `to_hex`, or its own channel).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NcclId(pub [u8; sys::MM_NCCL_ID_BYTES]);

impl std::fmt::Debug for NcclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclId({})", self.to_hex())
    }
}

impl NcclId {
    /// A new id from NCCL (`Code::Unsupported` without the CUDA backend or NCCL).
    pub fn create() -> Result<NcclId> {
        let mut id = [0u8; sys::MM_NCCL_ID_BYTES];
        check_thread(unsafe { sys::mm_nccl_id_create(id.as_mut_ptr()) })?;
        Ok(NcclId(id))
    }

    /// 256 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut buf = [0 as c_char; 2 * sys::MM_NCCL_ID_BYTES + 1];
        unsafe { sys::mm_nccl_id_to_hex(self.0.as_ptr(), buf.as_mut_ptr(), buf.len()) };
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Parses `to_hex`'s text (`Code::InvalidArgument` for anything else).
    pub fn from_hex(hex: &str) -> Result<NcclId> {
        let c = CString::new(hex).map_err(|_| invalid("the hex text holds a NUL byte"))?;
        let mut id = [0u8; sys::MM_NCCL_ID_BYTES];
        check_thread(unsafe { sys::mm_nccl_id_from_hex(id.as_mut_ptr(), c.as_ptr()) })?;
        Ok(NcclId(id))
    }

    /// Writes the id to `path` atomically (a reader never sees half of it).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let c = path_to_cstring(path.as_ref())?;
        check_thread(unsafe { sys::mm_nccl_id_write_file(c.as_ptr(), self.0.as_ptr()) })
    }

    /// Reads an id written by `write_file`, waiting up to `timeout` for the
    /// file to appear (`Code::Io` after that).
    pub fn read_file(path: impl AsRef<Path>, timeout: Duration) -> Result<NcclId> {
        let c = path_to_cstring(path.as_ref())?;
        let ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        let mut id = [0u8; sys::MM_NCCL_ID_BYTES];
        check_thread(unsafe { sys::mm_nccl_id_read_file(id.as_mut_ptr(), c.as_ptr(), ms) })?;
        Ok(NcclId(id))
    }
}

/// A trainer's place in a data-parallel group (`mm_data_parallel_options`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataParallel {
    /// Trainers in the group, one GPU each.
    pub world_size: u32,
    /// This trainer's place, `0..world_size`.
    pub rank: u32,
    /// The CUDA device ordinal; `None` = the rank.
    pub device: Option<u32>,
    /// The same on every rank.
    pub id: NcclId,
}

impl Trainer {
    /// Joins a data-parallel group (collective: returns once every rank has
    /// joined). From then on each `train_step` sums the ranks' gradients and
    /// every rank applies the same update; the result reports the group's
    /// loss and targets. A trainer on `Device::Cuda` only
    /// (`Code::Unsupported` otherwise), between updates, once.
    pub fn join(&mut self, group: &DataParallel) -> Result<()> {
        let mut raw = sys::mm_data_parallel_options::default();
        unsafe {
            sys::mm_data_parallel_options_init(
                &mut raw,
                std::mem::size_of::<sys::mm_data_parallel_options>(),
            )
        };
        raw.world_size = group.world_size;
        raw.rank = group.rank;
        raw.device = match group.device {
            Some(d) => i32::try_from(d).map_err(|_| invalid("device ordinal out of range"))?,
            None => -1,
        };
        raw.nccl_id = group.id.0;
        let status = unsafe { sys::mm_trainer_join(self.raw(), &raw) };
        check(status, || self.last_error_ptr())
    }

    /// The size of the trainer's data-parallel group (1 before `join`).
    pub fn world_size(&self) -> u32 {
        unsafe { sys::mm_trainer_world_size(self.raw()) }
    }
}

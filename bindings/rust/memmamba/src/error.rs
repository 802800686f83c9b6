//! `Error`: a status code of the C API plus the library's message.
use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_char;

use memmamba_sys as sys;

/// The C API's status codes (`mm_status`), whose values never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// A bad argument: a count, an enum value, a length that disagrees.
    InvalidArgument,
    /// An options struct of a size the library does not know.
    StructSize,
    /// A token id below 0 or at least the vocabulary size.
    TokenOutOfRange,
    OutOfMemory,
    /// A file could not be opened, read or written.
    Io,
    /// A file (or snapshot) is truncated or malformed.
    CorruptFile,
    TensorMissing,
    TensorShape,
    TensorDtype,
    /// NaN or infinity in weights, a loss or a gradient.
    NonFinite,
    /// An invalid model configuration.
    Config,
    /// Handles (or a snapshot) that belong to different models.
    ModelMismatch,
    /// Not available in this build or on this machine.
    Unsupported,
    BufferTooSmall,
    /// A bug in the library.
    Internal,
    /// A snapshot's bytes were changed after it was written.
    Checksum,
    /// A snapshot of a newer format than this library reads.
    Version,
    /// `Device::Cuda`: the CUDA backend is there but no GPU or driver answers.
    NoDevice,
    /// Data-parallel training: a collective between the trainers failed.
    Comm,
    /// A code this version of the bindings does not know.
    Other(i32),
}

impl Code {
    /// The code of a raw (negative) `mm_status`.
    pub fn from_raw(status: i32) -> Code {
        match status {
            sys::MM_ERR_INVALID_ARGUMENT => Code::InvalidArgument,
            sys::MM_ERR_STRUCT_SIZE => Code::StructSize,
            sys::MM_ERR_TOKEN_OUT_OF_RANGE => Code::TokenOutOfRange,
            sys::MM_ERR_OUT_OF_MEMORY => Code::OutOfMemory,
            sys::MM_ERR_IO => Code::Io,
            sys::MM_ERR_CORRUPT_FILE => Code::CorruptFile,
            sys::MM_ERR_TENSOR_MISSING => Code::TensorMissing,
            sys::MM_ERR_TENSOR_SHAPE => Code::TensorShape,
            sys::MM_ERR_TENSOR_DTYPE => Code::TensorDtype,
            sys::MM_ERR_NON_FINITE => Code::NonFinite,
            sys::MM_ERR_CONFIG => Code::Config,
            sys::MM_ERR_MODEL_MISMATCH => Code::ModelMismatch,
            sys::MM_ERR_UNSUPPORTED => Code::Unsupported,
            sys::MM_ERR_BUFFER_TOO_SMALL => Code::BufferTooSmall,
            sys::MM_ERR_INTERNAL => Code::Internal,
            sys::MM_ERR_CHECKSUM => Code::Checksum,
            sys::MM_ERR_VERSION => Code::Version,
            sys::MM_ERR_NO_DEVICE => Code::NoDevice,
            sys::MM_ERR_COMM => Code::Comm,
            other => Code::Other(other),
        }
    }

    /// The raw `mm_status` value.
    pub fn raw(self) -> i32 {
        match self {
            Code::InvalidArgument => sys::MM_ERR_INVALID_ARGUMENT,
            Code::StructSize => sys::MM_ERR_STRUCT_SIZE,
            Code::TokenOutOfRange => sys::MM_ERR_TOKEN_OUT_OF_RANGE,
            Code::OutOfMemory => sys::MM_ERR_OUT_OF_MEMORY,
            Code::Io => sys::MM_ERR_IO,
            Code::CorruptFile => sys::MM_ERR_CORRUPT_FILE,
            Code::TensorMissing => sys::MM_ERR_TENSOR_MISSING,
            Code::TensorShape => sys::MM_ERR_TENSOR_SHAPE,
            Code::TensorDtype => sys::MM_ERR_TENSOR_DTYPE,
            Code::NonFinite => sys::MM_ERR_NON_FINITE,
            Code::Config => sys::MM_ERR_CONFIG,
            Code::ModelMismatch => sys::MM_ERR_MODEL_MISMATCH,
            Code::Unsupported => sys::MM_ERR_UNSUPPORTED,
            Code::BufferTooSmall => sys::MM_ERR_BUFFER_TOO_SMALL,
            Code::Internal => sys::MM_ERR_INTERNAL,
            Code::Checksum => sys::MM_ERR_CHECKSUM,
            Code::Version => sys::MM_ERR_VERSION,
            Code::NoDevice => sys::MM_ERR_NO_DEVICE,
            Code::Comm => sys::MM_ERR_COMM,
            Code::Other(raw) => raw,
        }
    }

    /// The library's static name and description of the code
    /// ("MM_ERR_IO: input/output error").
    pub fn description(self) -> String {
        unsafe { string_from(sys::mm_status_string(self.raw())) }
    }
}

/// A failed call: its status code and what the library (or these bindings,
/// for checks done on the Rust side) said about it. A failed call changes
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// The raw `mm_status` value (negative).
    pub fn raw_code(&self) -> i32 {
        self.code.raw()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.code.description();
        if self.message.is_empty() {
            write!(f, "{}", name)
        } else {
            write!(f, "{}: {}", name, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// `std::result::Result` with this crate's `Error`.
pub type Result<T> = std::result::Result<T, Error>;

/// Copies a NUL-terminated string owned by the library (NULL gives "").
pub(crate) unsafe fn string_from(ptr: *const c_char) -> String {
    if ptr.is_null() {
        String::new()
    } else {
        CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// Ok for MM_OK, else an Error whose message is read by `message` (called
/// at once, on this thread, so the thread-local message is the call's own).
pub(crate) fn check(status: i32, message: impl FnOnce() -> *const c_char) -> Result<()> {
    if status == sys::MM_OK {
        Ok(())
    } else {
        let text = unsafe { string_from(message()) };
        Err(Error::new(Code::from_raw(status), text))
    }
}

/// `check` with the thread's last error (calls that have no handle yet).
pub(crate) fn check_thread(status: i32) -> Result<()> {
    check(status, || unsafe { sys::mm_last_error() })
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(Code::InvalidArgument, message)
}

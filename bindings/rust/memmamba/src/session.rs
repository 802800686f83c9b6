//! Sessions: one token stream each, with snapshots.
use std::mem::size_of;
use std::os::raw::c_void;
use std::path::Path;
use std::ptr::{self, NonNull};

use memmamba_sys as sys;

use crate::error::{check, check_thread, invalid, Result};
use crate::model::{path_to_cstring, Model};

/// Which logits a feed returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Logits {
    /// None.
    None,
    /// `vocab_size` floats: the next-token logits after the last token.
    Last,
    /// `n_tokens * vocab_size` floats, row i after token i.
    All,
}

impl Logits {
    fn raw(self) -> i32 {
        match self {
            Logits::None => sys::MM_LOGITS_NONE,
            Logits::Last => sys::MM_LOGITS_LAST,
            Logits::All => sys::MM_LOGITS_ALL,
        }
    }
}

/// How a session runs (`mm_session_options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// Tokens per internal block of a feed (bounds scratch memory); 0 = the
    /// library's default. Results do not depend on it.
    pub max_chunk: u32,
}

/// One note of a pool (`Session::pool_notes`).
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// The note window it summarises: stream positions
    /// `[window * note_window, (window + 1) * note_window)`.
    pub window: i64,
    /// Its score.
    pub score: f32,
    /// Its summary: `summary_dim` floats.
    pub summary: Vec<f32>,
}

/// A token stream on a model. Feeding a sequence at once, in chunks or one
/// token at a time gives the same logits; a failed call leaves the session
/// exactly as it was.
///
/// `Session` is `Send` (use it from one thread at a time, as the C API
/// requires) but not `Sync`. It holds its `Model`, which therefore outlives
/// it.
pub struct Session {
    ptr: NonNull<sys::mm_session>,
    model: Model,
}

// A session is used by one thread at a time (enforced by &mut and !Sync);
// moving it to another thread is allowed by the C API.
unsafe impl Send for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { sys::mm_session_free(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("position", &self.position())
            .finish()
    }
}

fn logits_len(mode: Logits, n_tokens: usize, vocab: usize) -> Result<usize> {
    match mode {
        Logits::None => Ok(0),
        Logits::Last => Ok(vocab),
        Logits::All => n_tokens.checked_mul(vocab).ok_or_else(|| {
            invalid(format!(
                "{} tokens of logits do not fit in memory",
                n_tokens
            ))
        }),
    }
}

impl Session {
    /// A new stream at position 0 on `model`.
    pub fn new(model: &Model) -> Result<Session> {
        Session::with_options(model, &SessionOptions::default())
    }

    pub fn with_options(model: &Model, options: &SessionOptions) -> Result<Session> {
        let mut raw = sys::mm_session_options::default();
        unsafe { sys::mm_session_options_init(&mut raw, size_of::<sys::mm_session_options>()) };
        raw.max_chunk = options.max_chunk;
        let mut out = ptr::null_mut();
        check_thread(unsafe { sys::mm_session_create(&mut out, model.as_ptr(), &raw) })?;
        let ptr = NonNull::new(out).ok_or_else(|| {
            crate::Error::new(crate::Code::Internal, "the library returned no session")
        })?;
        Ok(Session {
            ptr,
            model: model.clone(),
        })
    }

    /// The model the session runs on.
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub(crate) fn as_ptr(&self) -> *const sys::mm_session {
        self.ptr.as_ptr()
    }

    fn last_error(&self) -> *const std::os::raw::c_char {
        unsafe { sys::mm_session_last_error(self.ptr.as_ptr()) }
    }

    /// Feeds `tokens` and returns the logits `mode` asks for (an empty
    /// vector for `Logits::None`).
    pub fn feed(&mut self, tokens: &[i32], mode: Logits) -> Result<Vec<f32>> {
        let n = logits_len(mode, tokens.len(), self.model.vocab_size())?;
        let mut logits = vec![0f32; n];
        self.feed_into(tokens, mode, &mut logits)?;
        Ok(logits)
    }

    /// Feeds `tokens`, writing the logits `mode` asks for into `logits`
    /// (`Code::BufferTooSmall` if it is too short; nothing changes then).
    /// Returns the number of floats written.
    pub fn feed_into(&mut self, tokens: &[i32], mode: Logits, logits: &mut [f32]) -> Result<usize> {
        let n = logits_len(mode, tokens.len(), self.model.vocab_size())?;
        let out = if mode == Logits::None {
            ptr::null_mut()
        } else {
            logits.as_mut_ptr()
        };
        let capacity = if mode == Logits::None {
            0
        } else {
            logits.len()
        };
        let status = unsafe {
            sys::mm_session_feed(
                self.ptr.as_ptr(),
                tokens.as_ptr(),
                tokens.len(),
                mode.raw(),
                out,
                capacity,
            )
        };
        check(status, || self.last_error())?;
        Ok(n)
    }

    /// Steps many sessions by one token each in one batched call:
    /// `tokens[i]` goes to `sessions[i]`. All must be on the same model
    /// (else `Code::ModelMismatch`). Returns `sessions.len() * vocab_size`
    /// logits, row i for session i. On error no session changes.
    pub fn step(sessions: &mut [&mut Session], tokens: &[i32]) -> Result<Vec<f32>> {
        // On success all sessions share one model, hence one vocabulary; the
        // largest one sizes the buffer so that a mixed call reaches the
        // library's own model check.
        let vocab = sessions
            .iter()
            .map(|s| s.model.vocab_size())
            .max()
            .unwrap_or(0);
        let n = sessions
            .len()
            .checked_mul(vocab)
            .ok_or_else(|| invalid("too many sessions"))?;
        let mut logits = vec![0f32; n];
        Session::step_into(sessions, tokens, Some(&mut logits))?;
        Ok(logits)
    }

    /// `step` writing into a caller buffer, or without logits (`None`).
    pub fn step_into(
        sessions: &mut [&mut Session],
        tokens: &[i32],
        logits: Option<&mut [f32]>,
    ) -> Result<()> {
        let handles = Session::handles(sessions, tokens)?;
        let (out, capacity) = match logits {
            Some(buf) => (buf.as_mut_ptr(), buf.len()),
            None => (ptr::null_mut(), 0),
        };
        let status = unsafe {
            sys::mm_sessions_step(
                handles.as_ptr(),
                handles.len(),
                tokens.as_ptr(),
                out,
                capacity,
            )
        };
        check_thread(status)
    }

    /// Steps many sessions by one token each, as `step`, and returns each
    /// session's next token drawn from its logits (where they are computed:
    /// on a GPU model only the ids come back). `temperature` 0 is greedy;
    /// above 0 the draw is from softmax(logits / temperature), fixed by
    /// `seed` and each session's position (the header documents it). The
    /// returned tokens are not fed: pass them to the next call. On error no
    /// session changes.
    pub fn step_sample(
        sessions: &mut [&mut Session],
        tokens: &[i32],
        temperature: f32,
        seed: u64,
    ) -> Result<Vec<i32>> {
        Session::sample_impl(sessions, tokens, temperature, seed, None)
    }

    /// `step_sample` with a seed per session (`seeds[i]` for `sessions[i]`),
    /// so that sessions at the same position draw independently.
    pub fn step_sample_seeded(
        sessions: &mut [&mut Session],
        tokens: &[i32],
        temperature: f32,
        seeds: &[u64],
    ) -> Result<Vec<i32>> {
        if seeds.len() != sessions.len() {
            return Err(invalid(format!(
                "{} sessions but {} seeds",
                sessions.len(),
                seeds.len()
            )));
        }
        Session::sample_impl(sessions, tokens, temperature, 0, Some(seeds))
    }

    fn sample_impl(
        sessions: &mut [&mut Session],
        tokens: &[i32],
        temperature: f32,
        seed: u64,
        seeds: Option<&[u64]>,
    ) -> Result<Vec<i32>> {
        let handles = Session::handles(sessions, tokens)?;
        let mut options = sys::mm_sample_options::default();
        let status = unsafe {
            sys::mm_sample_options_init(&mut options, size_of::<sys::mm_sample_options>())
        };
        check_thread(status)?;
        options.temperature = temperature;
        options.seed = seed;
        options.seeds = seeds.map_or(ptr::null(), |s| s.as_ptr());
        let mut next = vec![0i32; sessions.len()];
        let status = unsafe {
            sys::mm_sessions_step_sample(
                handles.as_ptr(),
                handles.len(),
                tokens.as_ptr(),
                &options,
                next.as_mut_ptr(),
            )
        };
        check_thread(status)?;
        Ok(next)
    }

    // The handles of a batched step, one token each.
    fn handles(sessions: &[&mut Session], tokens: &[i32]) -> Result<Vec<*mut sys::mm_session>> {
        if sessions.len() != tokens.len() {
            return Err(invalid(format!(
                "{} sessions but {} tokens",
                sessions.len(),
                tokens.len()
            )));
        }
        // Distinct by construction: each is a unique &mut borrow.
        Ok(sessions.iter().map(|s| s.ptr.as_ptr()).collect())
    }

    /// Back to position 0 with empty pools.
    pub fn reset(&mut self) -> Result<()> {
        let status = unsafe { sys::mm_session_reset(self.ptr.as_ptr()) };
        check(status, || self.last_error())
    }

    /// Zeroes every layer's recurrent state and keeps the position, the
    /// pools and the pending note windows: what came before survives only
    /// in the notes.
    pub fn reset_recurrent(&mut self) -> Result<()> {
        let status = unsafe { sys::mm_session_reset_recurrent(self.ptr.as_ptr()) };
        check(status, || self.last_error())
    }

    /// Tokens consumed since creation or the last reset.
    pub fn position(&self) -> u64 {
        unsafe { sys::mm_session_position(self.ptr.as_ptr()) }
    }

    /// Bytes of recurrent state the session keeps (constant in the stream's length).
    pub fn state_bytes(&self) -> u64 {
        unsafe { sys::mm_session_state_bytes(self.ptr.as_ptr()) }
    }

    /// Notes in layer `layer`'s pool, or `None` for a layer out of range.
    pub fn pool_size(&self, layer: u32) -> Option<usize> {
        let n = unsafe { sys::mm_session_pool_size(self.ptr.as_ptr(), layer) };
        if n < 0 {
            None
        } else {
            Some(n as usize)
        }
    }

    /// What the stream remembers in layer `layer`: its pool's notes in pool
    /// order (ascending window); `pool_size(layer)` of them.
    /// `Code::InvalidArgument` for a layer out of range. The session is not
    /// changed.
    pub fn pool_notes(&self, layer: u32) -> Result<Vec<Note>> {
        let mut count = 0usize;
        let status = unsafe {
            sys::mm_session_pool_notes(
                self.ptr.as_ptr(),
                layer,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
                &mut count,
            )
        };
        check(status, || self.last_error())?;
        let dim = self.model.config().summary_dim as usize;
        let floats = count
            .checked_mul(dim)
            .ok_or_else(|| invalid(format!("{} notes do not fit in memory", count)))?;
        let capacity = count;
        let mut windows = vec![0i64; capacity];
        let mut scores = vec![0f32; capacity];
        let mut summaries = vec![0f32; floats];
        let status = unsafe {
            sys::mm_session_pool_notes(
                self.ptr.as_ptr(),
                layer,
                windows.as_mut_ptr(),
                scores.as_mut_ptr(),
                summaries.as_mut_ptr(),
                capacity,
                &mut count,
            )
        };
        check(status, || self.last_error())?;
        let n = count.min(capacity);
        Ok((0..n)
            .map(|i| Note {
                window: windows[i],
                score: scores[i],
                summary: summaries[i * dim..(i + 1) * dim].to_vec(),
            })
            .collect())
    }

    /// The exact size in bytes of a snapshot of the current state.
    pub fn snapshot_size(&self) -> Result<usize> {
        let mut size = 0usize;
        let status = unsafe { sys::mm_session_snapshot_size(self.ptr.as_ptr(), &mut size) };
        check(status, || self.last_error())?;
        Ok(size)
    }

    /// A snapshot of the stream (everything it holds) as bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.snapshot_size()?];
        let written = self.snapshot_into(&mut buf)?;
        buf.truncate(written);
        Ok(buf)
    }

    /// Writes a snapshot into `buf`; returns its length. A short buffer gives
    /// `Code::BufferTooSmall` (the message says the size needed).
    pub fn snapshot_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut written = 0usize;
        let data = if buf.is_empty() {
            ptr::null_mut()
        } else {
            buf.as_mut_ptr() as *mut c_void
        };
        let status =
            unsafe { sys::mm_session_snapshot(self.ptr.as_ptr(), data, buf.len(), &mut written) };
        check(status, || self.last_error())?;
        Ok(written)
    }

    /// Writes a snapshot to the file `path`, atomically.
    pub fn snapshot_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_cstring(path.as_ref())?;
        let status = unsafe { sys::mm_session_snapshot_file(self.ptr.as_ptr(), c_path.as_ptr()) };
        check(status, || self.last_error())
    }

    /// Replaces the stream with the snapshot `data`, which must come from a
    /// session on the same model. On error the session is unchanged.
    pub fn restore(&mut self, data: &[u8]) -> Result<()> {
        // A non-NULL pointer also for an empty slice: the library then
        // reports the empty snapshot itself (MM_ERR_CORRUPT_FILE).
        let status = unsafe {
            sys::mm_session_restore(
                self.ptr.as_ptr(),
                data.as_ptr() as *const c_void,
                data.len(),
            )
        };
        check(status, || self.last_error())
    }

    /// `restore` from the file `path`.
    pub fn restore_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let c_path = path_to_cstring(path.as_ref())?;
        let status = unsafe { sys::mm_session_restore_file(self.ptr.as_ptr(), c_path.as_ptr()) };
        check(status, || self.last_error())
    }
}

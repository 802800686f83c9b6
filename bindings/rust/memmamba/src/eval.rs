//! Evaluation measures (DESIGN 7).
use std::mem::size_of;

use memmamba_sys as sys;

use crate::error::{check_thread, Result};
use crate::model::Model;

/// Mean next-token loss (`mm_eval_result`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    /// Mean next-token cross-entropy, nats.
    pub loss: f64,
    pub perplexity: f64,
    /// Targets counted.
    pub tokens: u64,
}

/// The memory measures (`mm_fidelity`).
#[derive(Clone, Debug, PartialEq)]
pub struct Fidelity {
    pub etmf: f64,
    /// ECLMF for G = 2, 5, 10; NaN where G > n_layer.
    pub eclmf: [f64; 3],
    /// Positions used.
    pub tokens: u64,
}

impl Model {
    /// Mean next-token loss over `tokens`, read in consecutive pieces of
    /// `context` tokens from an empty state (0 = one stream).
    pub fn eval_loss(&self, tokens: &[i32], context: usize) -> Result<EvalResult> {
        let mut raw = sys::mm_eval_result::default();
        raw.struct_size = size_of::<sys::mm_eval_result>() as u32;
        check_thread(unsafe {
            sys::mm_eval_loss(
                self.as_ptr(),
                tokens.as_ptr(),
                tokens.len(),
                context,
                &mut raw,
            )
        })?;
        Ok(EvalResult {
            loss: raw.loss,
            perplexity: raw.perplexity,
            tokens: raw.tokens,
        })
    }

    /// ETMF and ECLMF over one stream (holds all hidden states: meant for
    /// excerpts).
    pub fn eval_fidelity(&self, tokens: &[i32]) -> Result<Fidelity> {
        let mut raw = sys::mm_fidelity::default();
        raw.struct_size = size_of::<sys::mm_fidelity>() as u32;
        check_thread(unsafe {
            sys::mm_eval_fidelity(self.as_ptr(), tokens.as_ptr(), tokens.len(), &mut raw)
        })?;
        Ok(Fidelity {
            etmf: raw.etmf,
            eclmf: raw.eclmf,
            tokens: raw.tokens,
        })
    }
}

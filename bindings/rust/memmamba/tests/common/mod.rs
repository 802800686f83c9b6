//! Helpers shared by the test files.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use memmamba::{Code, Config, Error, Model, ModelOptions, PoolPolicy};

/// A small model with memory: notes every 4 tokens, pools of 4, one
/// cross-layer read.
pub fn small_config() -> Config {
    Config {
        vocab_size: 64,
        d_model: 32,
        n_layer: 2,
        d_state: 8,
        summary_dim: 16,
        attn_heads: 4,
        note_window: 4,
        pool_capacity: 4,
        pool_policy: PoolPolicy::Priority,
        cross_layer_period: 2,
        cross_layer_span: 1,
        ..Config::default()
    }
}

pub fn one_thread() -> ModelOptions {
    ModelOptions {
        n_threads: 1,
        ..ModelOptions::default()
    }
}

pub fn small_model(seed: u64) -> Model {
    Model::create_with(&small_config(), seed, &one_thread()).expect("create a small model")
}

/// Deterministic pseudo-random tokens in 0..vocab.
pub fn tokens(n: usize, vocab: u32, seed: u64) -> Vec<i32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as i32
        })
        .collect()
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("memmamba-rs-{}-{}-{}", tag, std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts `result` failed with `code`, with a message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Error>, code: Code) -> Error {
    match result {
        Ok(v) => panic!("expected {:?}, got Ok({:?})", code, v),
        Err(e) => {
            assert_eq!(e.code, code, "wrong code; error: {}", e);
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

/// Prints a notice that the test could not run, past the test harness's
/// output capture, so that it shows in the run's log.
pub fn skip(test: &str, why: &str) {
    // One write, so that lines of parallel tests do not interleave.
    let line = format!("SKIPPED {}: {}\n", test, why);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Bit-for-bit equality of float slices (NaN-safe).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Largest |a-b| / max(1, |b|).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Writes a Mamba v1 checkpoint in the reference naming (safetensors, F32)
/// with V=40, D=16, L=2, E=32, K=4, N=4, R=3 and deterministic values.
pub fn write_mamba_checkpoint(path: &Path) {
    let (v, d, l, e, k, n, r) = (40usize, 16usize, 2usize, 32usize, 4usize, 4usize, 3usize);
    let mut tensors: Vec<(String, Vec<usize>, f32)> =
        vec![("backbone.embedding.weight".into(), vec![v, d], 0.0)];
    for i in 0..l {
        let p = format!("backbone.layers.{}.", i);
        tensors.push((p.clone() + "norm.weight", vec![d], 1.0));
        tensors.push((p.clone() + "mixer.in_proj.weight", vec![2 * e, d], 0.0));
        tensors.push((p.clone() + "mixer.conv1d.weight", vec![e, 1, k], 0.0));
        tensors.push((p.clone() + "mixer.conv1d.bias", vec![e], 0.0));
        tensors.push((p.clone() + "mixer.x_proj.weight", vec![r + 2 * n, e], 0.0));
        tensors.push((p.clone() + "mixer.dt_proj.weight", vec![e, r], 0.0));
        tensors.push((p.clone() + "mixer.dt_proj.bias", vec![e], -3.0));
        tensors.push((p.clone() + "mixer.A_log", vec![e, n], 0.5));
        tensors.push((p.clone() + "mixer.D", vec![e], 1.0));
        tensors.push((p + "mixer.out_proj.weight", vec![d, e], 0.0));
    }
    tensors.push(("backbone.norm_f.weight".into(), vec![d], 1.0));

    let mut header = String::from("{");
    let mut data: Vec<u8> = Vec::new();
    let mut state = 12345u32;
    for (i, (name, shape, offset)) in tensors.iter().enumerate() {
        let count: usize = shape.iter().product();
        let begin = data.len();
        for _ in 0..count {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2;
            data.extend_from_slice(&(offset + noise).to_le_bytes());
        }
        let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            name,
            dims.join(","),
            begin,
            data.len()
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = Vec::new();
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(path, file).expect("write the checkpoint");
}

//! The bindings compute what the C library computes, bit for bit, and lay
//! out the structs as the C compiler does. The reference comes from
//! tests/packaging/agreement_fixture.c through the directory named by
//! MEMMAMBA_TEST_DIR (CTest sets it); without it these tests say so and pass.
mod common;

use std::mem::size_of;
use std::path::PathBuf;

use common::*;
use memmamba::{sys, Logits, Model, Session, SnapshotInfo};

fn fixture_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("MEMMAMBA_TEST_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            skip(test, "MEMMAMBA_TEST_DIR is not set (CTest sets it)");
            None
        }
    }
}

fn read_i32(path: PathBuf) -> Vec<i32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read_f32(path: PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn logits_equal_the_c_librarys_bit_for_bit() {
    let dir = match fixture_dir("logits_equal_the_c_librarys_bit_for_bit") {
        Some(d) => d,
        None => return,
    };
    let model = Model::load_with(dir.join("model.safetensors"), &one_thread()).unwrap();
    let toks = read_i32(dir.join("tokens.i32"));
    let expected = read_f32(dir.join("logits.f32"));
    assert_eq!(expected.len(), toks.len() * model.vocab_size());
    let mut s = Session::new(&model).unwrap();
    let got = s.feed(&toks, Logits::All).unwrap();
    let first_diff = got
        .iter()
        .zip(&expected)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(
        first_diff, None,
        "logits differ from C's first at float {:?}",
        first_diff
    );
}

#[test]
fn a_c_snapshot_resumes_bit_for_bit() {
    let dir = match fixture_dir("a_c_snapshot_resumes_bit_for_bit") {
        Some(d) => d,
        None => return,
    };
    let model = Model::load_with(dir.join("model.safetensors"), &one_thread()).unwrap();
    let toks = read_i32(dir.join("tokens.i32"));
    let half = toks.len() / 2;
    let snap = dir.join("snapshot.mmsnap");
    let info = SnapshotInfo::inspect_file(&snap).unwrap();
    assert_eq!(info.position as usize, half);
    assert_eq!(info.model_fingerprint, model.fingerprint());
    let mut s = Session::new(&model).unwrap();
    s.restore_file(&snap).unwrap();
    let got = s.feed(&toks[half..], Logits::All).unwrap();
    assert!(same_bits(&got, &read_f32(dir.join("resumed.f32"))));
    // And our own snapshot of the same stream restores the same way.
    let mut ours = Session::new(&model).unwrap();
    ours.feed(&toks[..half], Logits::None).unwrap();
    let mut again = Session::new(&model).unwrap();
    again.restore(&ours.snapshot().unwrap()).unwrap();
    assert!(same_bits(
        &again.feed(&toks[half..], Logits::All).unwrap(),
        &got
    ));
}

#[test]
fn struct_sizes_equal_the_c_compilers() {
    let dir = match fixture_dir("struct_sizes_equal_the_c_compilers") {
        Some(d) => d,
        None => return,
    };
    let text = std::fs::read_to_string(dir.join("struct_sizes.txt")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (name, size) = match (parts.next(), parts.next()) {
            (Some(n), Some(s)) => (n, s.parse::<usize>().unwrap()),
            _ => continue,
        };
        let ours = match name {
            "mm_model_config" => size_of::<sys::mm_model_config>(),
            "mm_model_options" => size_of::<sys::mm_model_options>(),
            "mm_session_options" => size_of::<sys::mm_session_options>(),
            "mm_snapshot_info" => size_of::<sys::mm_snapshot_info>(),
            "mm_trainer_options" => size_of::<sys::mm_trainer_options>(),
            "mm_train_result" => size_of::<sys::mm_train_result>(),
            "mm_eval_result" => size_of::<sys::mm_eval_result>(),
            "mm_fidelity" => size_of::<sys::mm_fidelity>(),
            "mm_sample_options" => size_of::<sys::mm_sample_options>(),
            "mm_train_batch" => size_of::<sys::mm_train_batch>(),
            other => panic!("unknown struct {} in struct_sizes.txt", other),
        };
        assert_eq!(ours, size, "{}", name);
        checked += 1;
    }
    assert_eq!(checked, 10);
}

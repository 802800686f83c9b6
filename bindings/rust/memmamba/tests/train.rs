//! Training and evaluation through the bindings, and their error paths.
//!
//! Where the linked library reports training or evaluation as unsupported
//! (MM_ERR_UNSUPPORTED), each test prints "SKIPPED <test>: ..." and returns.
mod common;

use common::*;
use memmamba::{Code, Logits, Model, Session, TrainBatch, Trainer, TrainerOptions};

fn options() -> TrainerOptions {
    TrainerOptions {
        learning_rate: 1e-2,
        n_threads: 1,
        ..TrainerOptions::default()
    }
}

/// A trainer on `model`, or None (with a notice) where the library has no
/// training.
fn trainer_or_skip(test: &str, model: &Model, opts: &TrainerOptions) -> Option<Trainer> {
    match Trainer::new(model, opts) {
        Ok(t) => Some(t),
        Err(e) if e.code == Code::Unsupported => {
            skip(test, &format!("the library has no training: {}", e));
            None
        }
        Err(e) => panic!("Trainer::new: {}", e),
    }
}

/// A batch of `batch` sequences of `seq_len` tokens repeating a short
/// pattern, which a model learns within a few steps.
fn pattern_batch(batch: usize, seq_len: usize) -> Vec<i32> {
    (0..batch * seq_len)
        .map(|i| [3, 1, 4, 1, 5, 9, 2, 6][(i + i / seq_len) % 8])
        .collect()
}

/// The exported model's logits on a fixed probe: the trainer's weights.
fn weights_probe(t: &Trainer) -> Vec<f32> {
    let model = t.export_model().unwrap();
    Session::new(&model)
        .unwrap()
        .feed(&tokens(16, 64, 99), Logits::All)
        .unwrap()
}

#[test]
fn trainer_options_defaults_are_the_headers() {
    let o = TrainerOptions::default();
    assert_eq!(o.learning_rate, 1e-3);
    assert_eq!(o.beta1, 0.9);
    assert_eq!(o.beta2, 0.95);
    assert_eq!(o.eps, 1e-8);
    assert_eq!(o.weight_decay, 0.1);
    assert_eq!(o.grad_clip, 1.0);
    assert_eq!(o.accum_steps, 1);
    assert_eq!(o.n_threads, 0);
    assert!(!o.note_straight_through);
}

#[test]
fn train_steps_lower_the_loss() {
    let model = small_model(1);
    let mut t = match trainer_or_skip("train_steps_lower_the_loss", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    assert_eq!(t.step_count(), 0);
    let batch = pattern_batch(2, 24);
    let first = t.train_step(&batch, 2, 24, None).unwrap();
    assert!(first.loss.is_finite() && first.loss > 0.0);
    assert_eq!(first.tokens, 2 * 23);
    assert!(first.updated);
    assert_eq!(first.step, 1);
    assert!(first.grad_norm.is_finite() && first.grad_norm > 0.0);
    let mut last = first.clone();
    for _ in 0..7 {
        last = t.train_step(&batch, 2, 24, None).unwrap();
    }
    assert_eq!(t.step_count(), 8);
    assert_eq!(last.step, 8);
    assert!(
        last.loss < first.loss,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    let keep = t.keep_fraction().unwrap();
    assert_eq!(keep.len(), 2);
    assert!(keep.iter().all(|k| (0.0..=1.0).contains(k)), "{:?}", keep);

    // The exported model carries the new weights; the original is untouched.
    let trained = t.export_model().unwrap();
    assert_ne!(trained.fingerprint(), model.fingerprint());
    assert_eq!(trained.config(), model.config());
    let before = model.eval_loss(&batch, 24);
    let after = trained.eval_loss(&batch, 24);
    if let (Ok(b), Ok(a)) = (before, after) {
        assert!(a.loss < b.loss, "eval loss {} -> {}", b.loss, a.loss);
    }
}

#[test]
fn untrained_export_equals_the_model() {
    let model = small_model(2);
    let t = match trainer_or_skip("untrained_export_equals_the_model", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let exported = t.export_model().unwrap();
    assert_eq!(exported.fingerprint(), model.fingerprint());
}

#[test]
fn loss_mask_selects_the_targets() {
    let model = small_model(3);
    let mut t = match trainer_or_skip("loss_mask_selects_the_targets", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let batch = pattern_batch(2, 10);
    let mut mask = vec![0u8; 20];
    for i in [0, 3, 4, 9, 10, 15] {
        mask[i] = 1; // positions 0 and 10 are t = 0 of their sequence: ignored
    }
    let r = t.train_step(&batch, 2, 10, Some(&mask)).unwrap();
    assert_eq!(r.tokens, 4);
}

#[test]
fn accumulation_updates_every_n_calls() {
    let model = small_model(4);
    let opts = TrainerOptions {
        accum_steps: 2,
        ..options()
    };
    let mut t = match trainer_or_skip("accumulation_updates_every_n_calls", &model, &opts) {
        Some(t) => t,
        None => return,
    };
    let batch = pattern_batch(1, 16);
    let r1 = t.train_step(&batch, 1, 16, None).unwrap();
    assert!(!r1.updated);
    assert_eq!((r1.step, t.step_count()), (0, 0));
    let r2 = t.train_step(&batch, 1, 16, None).unwrap();
    assert!(r2.updated);
    assert_eq!((r2.step, t.step_count()), (1, 1));
}

#[test]
fn save_and_load_continue_exactly() {
    let dir = TempDir::new("trainer");
    let model = small_model(5);
    let mut straight = match trainer_or_skip("save_and_load_continue_exactly", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let batches: Vec<Vec<i32>> = (0..4).map(|i| tokens(2 * 12, 64, 40 + i)).collect();
    for b in &batches {
        straight.train_step(b, 2, 12, None).unwrap();
    }
    let mut first = Trainer::new(&model, &options()).unwrap();
    for b in &batches[..2] {
        first.train_step(b, 2, 12, None).unwrap();
    }
    let path = dir.path("t.safetensors");
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Trainer::load(&path, 1).unwrap();
    assert_eq!(resumed.step_count(), 2);
    assert_eq!(resumed.keep_fraction().unwrap().len(), 2);
    for b in &batches[2..] {
        resumed.train_step(b, 2, 12, None).unwrap();
    }
    assert_eq!(resumed.step_count(), 4);
    assert!(same_bits(
        &weights_probe(&resumed),
        &weights_probe(&straight)
    ));
}

#[test]
fn a_trainer_file_is_not_a_model_file() {
    // mm_trainer_save: "It is not a model file (mm_model_load refuses it):
    // export the model for that."
    let dir = TempDir::new("trainer-not-model");
    let model = small_model(11);
    let mut t = match trainer_or_skip("a_trainer_file_is_not_a_model_file", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    t.train_step(&pattern_batch(2, 12), 2, 12, None).unwrap();
    let path = dir.path("t.safetensors");
    t.save(&path).unwrap();
    let e = Model::load(&path).expect_err("mm_model_load must refuse a trainer file");
    assert!(!e.message.is_empty(), "{}", e);
    let exported = dir.path("exported.safetensors");
    t.export_model().unwrap().save(&exported).unwrap();
    let loaded = Model::load_with(&exported, &one_thread()).unwrap();
    assert_eq!(
        loaded.fingerprint(),
        t.export_model().unwrap().fingerprint()
    );
}

#[test]
fn bad_batches_are_refused_and_change_nothing() {
    let model = small_model(6);
    let test = "bad_batches_are_refused_and_change_nothing";
    let mut t = match trainer_or_skip(test, &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let good = pattern_batch(2, 8);
    t.train_step(&good, 2, 8, None).unwrap();
    let weights = weights_probe(&t);

    // Lengths that disagree (checked by the bindings).
    expect_code(t.train_step(&good, 2, 7, None), Code::InvalidArgument);
    expect_code(
        t.train_step(&good, 2, 8, Some(&[1u8; 15])),
        Code::InvalidArgument,
    );
    expect_code(
        t.train_step(&good, usize::MAX, 2, None),
        Code::InvalidArgument,
    );
    // Shapes the library refuses.
    expect_code(t.train_step(&[], 0, 8, None), Code::InvalidArgument);
    expect_code(t.train_step(&[5], 1, 1, None), Code::InvalidArgument);
    expect_code(
        t.train_step(&good, 2, 8, Some(&[0u8; 16])),
        Code::InvalidArgument,
    );
    // A target-less mask: only t = 0 positions set.
    let mut only_first = [0u8; 16];
    only_first[0] = 1;
    only_first[8] = 1;
    expect_code(
        t.train_step(&good, 2, 8, Some(&only_first)),
        Code::InvalidArgument,
    );
    // Tokens out of range.
    for bad in [64, -1] {
        let mut b = good.clone();
        b[11] = bad;
        let e = expect_code(t.train_step(&b, 2, 8, None), Code::TokenOutOfRange);
        assert!(!e.message.is_empty());
    }
    assert_eq!(t.step_count(), 1);
    assert!(
        same_bits(&weights_probe(&t), &weights),
        "a failed step changed the weights"
    );
    // And training goes on.
    assert_eq!(t.train_step(&good, 2, 8, None).unwrap().step, 2);
}

#[test]
fn train_step_from_continues_a_session() {
    let model = small_model(7);
    let test = "train_step_from_continues_a_session";
    let mut from = match trainer_or_skip(test, &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let mut fresh = Trainer::new(&model, &options()).unwrap();
    // 40 tokens: a multiple of the small model's note_window (4).
    assert_eq!(40 % model.config().note_window, 0);
    let mut session = Session::new(&model).unwrap();
    session.feed(&tokens(40, 64, 11), Logits::None).unwrap();
    let before = session.snapshot().unwrap();

    let batch = pattern_batch(1, 16);
    let r = match from.train_step_from(&[Some(&session)], &batch, 1, 16, None) {
        Ok(r) => r,
        Err(e) if e.code == Code::Unsupported => {
            skip(
                test,
                &format!("the library cannot train from sessions: {}", e),
            );
            return;
        }
        Err(e) => panic!("train_step_from: {}", e),
    };
    assert!(r.loss.is_finite() && r.loss > 0.0);
    assert_eq!(r.tokens, 15);
    assert_eq!(r.step, 1);
    let empty = fresh.train_step(&batch, 1, 16, None).unwrap();
    assert!(empty.loss.is_finite());
    assert_ne!(r.loss, empty.loss, "the session's state made no difference");
    // The session is read, not changed.
    assert_eq!(session.position(), 40);
    assert_eq!(session.snapshot().unwrap(), before);

    // A sessions slice that is not one per sequence is refused, and nothing changes.
    let weights = weights_probe(&from);
    expect_code(
        from.train_step_from(&[], &batch, 1, 16, None),
        Code::InvalidArgument,
    );
    expect_code(
        from.train_step_from(&[Some(&session), None], &batch, 1, 16, None),
        Code::InvalidArgument,
    );
    assert_eq!(from.step_count(), 1);
    assert!(same_bits(&weights_probe(&from), &weights));
    // None is the empty state: a second sequence from scratch trains on.
    let two = pattern_batch(2, 16);
    assert_eq!(
        from.train_step_from(&[Some(&session), None], &two, 2, 16, None)
            .unwrap()
            .step,
        2
    );
}

#[test]
fn bad_options_and_learning_rates_are_refused() {
    let model = small_model(7);
    let test = "bad_options_and_learning_rates_are_refused";
    let mut t = match trainer_or_skip(test, &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let bad = [
        TrainerOptions {
            learning_rate: 0.0,
            ..options()
        },
        TrainerOptions {
            learning_rate: f32::NAN,
            ..options()
        },
        TrainerOptions {
            learning_rate: f32::INFINITY,
            ..options()
        },
        TrainerOptions {
            beta1: 1.0,
            ..options()
        },
        TrainerOptions {
            beta2: -0.1,
            ..options()
        },
        TrainerOptions {
            eps: 0.0,
            ..options()
        },
        TrainerOptions {
            weight_decay: -1.0,
            ..options()
        },
        TrainerOptions {
            grad_clip: -1.0,
            ..options()
        },
        TrainerOptions {
            accum_steps: 0,
            ..options()
        },
    ];
    for o in &bad {
        let e = expect_code(Trainer::new(&model, o), Code::InvalidArgument);
        assert!(!e.message.is_empty(), "{:?}", o);
    }
    for lr in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        expect_code(t.set_learning_rate(lr), Code::InvalidArgument);
    }
    t.set_learning_rate(5e-3).unwrap();
}

#[test]
fn trainer_file_errors() {
    let dir = TempDir::new("trainerfile");
    let model = small_model(8);
    let t = match trainer_or_skip("trainer_file_errors", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    expect_code(Trainer::load(dir.path("missing.safetensors"), 1), Code::Io);
    expect_code(t.save(dir.path("no/such/dir/t.safetensors")), Code::Io);
    expect_code(t.save("bad\0name"), Code::InvalidArgument);
    expect_code(Trainer::load("bad\0name", 1), Code::InvalidArgument);
    let path = dir.path("t.safetensors");
    t.save(&path).unwrap();
    // On the GPU: resumes where there is one, else a clean NoDevice or
    // Unsupported (a build without CUDA); on the CPU it always loads.
    if let Err(e) = Trainer::load_on(&path, 1, memmamba::Device::Cuda) {
        assert!(e.code == Code::Unsupported || e.code == Code::NoDevice, "{}", e);
    }
    Trainer::load_on(&path, 1, memmamba::Device::Cpu).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path("cut.safetensors");
    for n in [0, 7, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..n]).unwrap();
        expect_code(Trainer::load(&cut, 1), Code::CorruptFile);
    }
    // A plain model file lacks the optimizer state.
    let plain = dir.path("model.safetensors");
    model.save(&plain).unwrap();
    assert!(Trainer::load(&plain, 1).is_err());
}

/// Some(value) or None with a notice where evaluation is unsupported.
fn eval_or_skip<T>(test: &str, r: memmamba::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.code == Code::Unsupported => {
            skip(test, &format!("the library has no evaluation: {}", e));
            None
        }
        Err(e) => panic!("{}: {}", test, e),
    }
}

#[test]
fn eval_loss_counts_pieces() {
    let model = small_model(9);
    let toks = tokens(35, 64, 50);
    let whole = match eval_or_skip("eval_loss_counts_pieces", model.eval_loss(&toks, 0)) {
        Some(r) => r,
        None => return,
    };
    assert_eq!(whole.tokens, 34);
    assert!(whole.loss.is_finite() && whole.loss > 0.0);
    assert!((whole.perplexity - whole.loss.exp()).abs() <= 1e-9 * whole.perplexity);
    // Pieces of 10, 10, 10, 5: each piece's first token is not a target.
    let pieces = model.eval_loss(&toks, 10).unwrap();
    assert_eq!(pieces.tokens, 9 * 3 + 4);
    // The loss over one stream is that of the session's logits.
    let mut s = Session::new(&model).unwrap();
    let logits = s.feed(&toks, Logits::All).unwrap();
    let mut nll = 0f64;
    for t in 0..34 {
        let row = &logits[t * 64..(t + 1) * 64];
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        nll += max + sum.ln() - row[toks[t + 1] as usize] as f64;
    }
    assert!(
        (nll / 34.0 - whole.loss).abs() < 1e-4,
        "{} vs {}",
        nll / 34.0,
        whole.loss
    );

    expect_code(model.eval_loss(&toks[..1], 0), Code::InvalidArgument);
    expect_code(model.eval_loss(&[], 0), Code::InvalidArgument);
    expect_code(model.eval_loss(&[1, 64, 2], 0), Code::TokenOutOfRange);
    expect_code(model.eval_loss(&[1, -1], 0), Code::TokenOutOfRange);
}

#[test]
fn eval_fidelity_measures() {
    let model = small_model(10);
    let toks = tokens(60, 64, 51);
    let f = match eval_or_skip("eval_fidelity_measures", model.eval_fidelity(&toks)) {
        Some(f) => f,
        None => return,
    };
    assert!(
        f.etmf.is_finite() && f.etmf >= -1.0 && f.etmf <= 1.0,
        "{:?}",
        f
    );
    assert!(f.eclmf[0].is_finite(), "G = 2 <= n_layer: {:?}", f);
    assert!(
        f.eclmf[1].is_nan() && f.eclmf[2].is_nan(),
        "G > n_layer: {:?}",
        f
    );
    assert!(f.tokens > 0);
    expect_code(model.eval_fidelity(&toks[..1]), Code::InvalidArgument);
    expect_code(model.eval_fidelity(&[3, 64]), Code::TokenOutOfRange);
}

#[test]
fn a_cuda_trainer_fails_cleanly_without_a_gpu() {
    let model = small_model(4);
    let opts = TrainerOptions {
        device: memmamba::Device::Cuda,
        ..options()
    };
    match Trainer::new(&model, &opts) {
        Ok(_) => {} // a machine with a GPU (tests/cuda covers training there)
        Err(e) => assert!(
            e.code == Code::NoDevice || e.code == Code::Unsupported,
            "{}",
            e
        ),
    }
}

#[test]
fn data_parallel_without_gpus() {
    let model = small_model(9);
    let mut t = match trainer_or_skip("data_parallel_without_gpus", &model, &options()) {
        Some(t) => t,
        None => return,
    };
    assert_eq!(t.world_size(), 1);
    let id = memmamba::NcclId([7u8; 128]);
    let group = memmamba::DataParallel { world_size: 1, rank: 0, device: None, id };
    // A CPU trainer cannot join; it trains on as before.
    expect_code(t.join(&group), Code::Unsupported);
    let bad = memmamba::DataParallel { world_size: 2, rank: 2, ..group.clone() };
    expect_code(t.join(&bad), Code::InvalidArgument);
    t.train_step(&tokens(2 * 12, 64, 1), 2, 12, None).unwrap();

    assert_eq!(id.to_hex().len(), 256);
    assert_eq!(memmamba::NcclId::from_hex(&id.to_hex()).unwrap(), id);
    expect_code(memmamba::NcclId::from_hex("zz"), Code::InvalidArgument);
    let dir = TempDir::new("ncclid");
    let path = dir.path("run.id");
    expect_code(
        memmamba::NcclId::read_file(&path, std::time::Duration::from_millis(20)),
        Code::Io,
    );
    id.write_file(&path).unwrap();
    assert_eq!(memmamba::NcclId::read_file(&path, std::time::Duration::from_secs(1)).unwrap(), id);
    if let Err(e) = memmamba::NcclId::create() {
        assert!(e.code == Code::Unsupported || e.code == Code::Comm, "{}", e);
    }
}

#[test]
fn train_step_batch_with_recurrent_resets() {
    let model = small_model(7);
    let test = "train_step_batch_with_recurrent_resets";
    let mut plain = match trainer_or_skip(test, &model, &options()) {
        Some(t) => t,
        None => return,
    };
    let mut resets = Trainer::new(&model, &options()).unwrap();
    let batch = pattern_batch(2, 16);
    let none = vec![0u8; batch.len()];

    // No byte set: the same call as train_step, bit for bit.
    let want = plain.train_step(&batch, 2, 16, None).unwrap();
    let mut b = TrainBatch::new(&batch, 2, 16);
    b.recurrent_resets = Some(&none);
    let got = match resets.train_step_batch(&b) {
        Ok(r) => r,
        Err(e) if e.code == Code::Unsupported => {
            skip(test, &format!("the library cannot reset in training: {}", e));
            return;
        }
        Err(e) => panic!("train_step_batch: {}", e),
    };
    assert_eq!(got, want);
    assert!(same_bits(&weights_probe(&resets), &weights_probe(&plain)));

    // A reset in the middle of the first sequence changes its loss.
    let mut mid = vec![0u8; batch.len()];
    mid[8] = 1;
    let want = plain.train_step(&batch, 2, 16, None).unwrap();
    b.recurrent_resets = Some(&mid);
    let got = resets.train_step_batch(&b).unwrap();
    assert_eq!((got.step, got.tokens), (2, want.tokens));
    assert_ne!(got.loss, want.loss, "a reset made no difference");

    // Resets of the wrong length are refused and change nothing.
    let weights = weights_probe(&resets);
    b.recurrent_resets = Some(&mid[..31]);
    expect_code(resets.train_step_batch(&b), Code::InvalidArgument);
    assert_eq!(resets.step_count(), 2);
    assert!(same_bits(&weights_probe(&resets), &weights));
}

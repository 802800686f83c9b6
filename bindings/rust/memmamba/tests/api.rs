//! Models, sessions, snapshots and every error path of them.
mod common;

use common::*;
use memmamba::{
    Code, Config, Fusion, Logits, Model, ModelOptions, PoolPolicy, Session, SessionOptions,
    SnapshotInfo, Trainer,
};

#[test]
fn version_and_abi() {
    use memmamba::sys::{MM_VERSION_MAJOR, MM_VERSION_MINOR, MM_VERSION_PATCH};
    assert_eq!(
        memmamba::version(),
        format!(
            "{}.{}.{}",
            MM_VERSION_MAJOR, MM_VERSION_MINOR, MM_VERSION_PATCH
        )
    );
    assert_eq!(
        memmamba::version_number(),
        memmamba::sys::MM_VERSION_NUMBER,
        "library {} vs bindings {}",
        memmamba::version(),
        memmamba::sys::MM_VERSION_NUMBER
    );
    assert!(!Code::Io.description().is_empty());
    assert_eq!(Code::from_raw(-5), Code::Io);
    assert_eq!(Code::from_raw(-999), Code::Other(-999));
    assert_eq!(Code::Other(-999).raw(), -999);
}

#[test]
fn handles_are_send_and_sync_as_documented() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Model>();
    sync::<Model>();
    send::<Session>();
    send::<Trainer>();
    send::<memmamba::Error>();
    sync::<memmamba::Error>();
}

#[test]
fn config_defaults_are_the_headers() {
    let c = Config::default();
    assert_eq!(c.vocab_size, 256);
    assert_eq!(c.d_model, 256);
    assert_eq!(c.n_layer, 8);
    assert_eq!(c.d_state, 16);
    assert_eq!(c.d_conv, 4);
    assert_eq!(c.expand, 2);
    assert_eq!(c.dt_rank, 0);
    assert_eq!(c.note_window, 32);
    assert_eq!(c.summary_dim, 64);
    assert_eq!(c.pool_capacity, 50);
    assert_eq!(c.pool_policy, PoolPolicy::Priority);
    assert_eq!(c.note_threshold, 0.5);
    assert_eq!(c.attn_heads, 4);
    assert_eq!(c.gate_threshold, 0.0);
    assert_eq!(c.cross_layer_period, 4);
    assert_eq!(c.cross_layer_span, 4);
    assert_eq!(c.fusion, Fusion::Weighted);
    assert_eq!(c.norm_eps, 1e-5);
    assert!(c.tie_embeddings);
}

#[test]
fn create_reports_config_parameters_and_fingerprint() {
    let model = small_model(1);
    let c = model.config();
    assert_eq!(c.d_model, 32);
    assert_eq!(c.dt_rank, 2, "dt_rank resolved to ceil(32/16)");
    assert_eq!(model.vocab_size(), 64);
    assert!(model.parameter_count() > 0);
    let fp = model.fingerprint();
    assert_ne!(fp, 0);
    assert_eq!(fp, model.fingerprint());
    assert_eq!(fp, small_model(1).fingerprint(), "same seed, same model");
    assert_ne!(fp, small_model(2).fingerprint(), "another seed");
    let clone = model.clone();
    assert!(clone.same_as(&model));
    assert!(!small_model(1).same_as(&model));
}

#[test]
fn invalid_configs_are_refused() {
    let mut c = small_config();
    c.attn_heads = 3; // does not divide summary_dim
    let e = expect_code(Model::create(&c, 1), Code::Config);
    assert!(!e.message.is_empty());
    assert!(e.to_string().contains("MM_ERR_CONFIG"), "{}", e);
    c = small_config();
    c.vocab_size = 0;
    expect_code(Model::create(&c, 1), Code::Config);
    c = small_config();
    c.d_model = 0;
    expect_code(Model::create(&c, 1), Code::Config);
    let bad_threads = ModelOptions {
        n_threads: -1,
        ..one_thread()
    };
    // A negative thread count is not a valid option.
    assert!(Model::create_with(&small_config(), 1, &bad_threads).is_err());
}

#[test]
fn cuda_is_reported_where_unavailable() {
    let options = ModelOptions {
        device: memmamba::Device::Cuda,
        ..one_thread()
    };
    match Model::create_with(&small_config(), 1, &options) {
        Ok(_) => {} // a build with a GPU
        Err(e) => assert!(
            e.code == Code::Unsupported || e.code == Code::NoDevice,
            "{}",
            e
        ),
    }
}

#[test]
fn feed_returns_what_the_mode_asks_for() {
    let model = small_model(3);
    let toks = tokens(10, 64, 1);
    let mut s = Session::new(&model).unwrap();
    assert_eq!(s.position(), 0);
    let none = s.feed(&toks, Logits::None).unwrap();
    assert!(none.is_empty());
    assert_eq!(s.position(), 10);
    let last = s.feed(&toks, Logits::Last).unwrap();
    assert_eq!(last.len(), 64);
    let all = s.feed(&toks, Logits::All).unwrap();
    assert_eq!(all.len(), 10 * 64);
    assert_eq!(s.position(), 30);
    assert!(all.iter().all(|x| x.is_finite()));
    // Zero tokens are allowed and change nothing.
    s.feed(&[], Logits::None).unwrap();
    assert_eq!(s.position(), 30);
}

#[test]
fn whole_chunked_and_token_by_token_agree() {
    let model = small_model(4);
    let toks = tokens(37, 64, 2);
    let mut whole = Session::new(&model).unwrap();
    let a = whole.feed(&toks, Logits::All).unwrap();
    let mut chunked = Session::with_options(&model, &SessionOptions { max_chunk: 5 }).unwrap();
    let mut b = Vec::new();
    for piece in toks.chunks(7) {
        b.extend(chunked.feed(piece, Logits::All).unwrap());
    }
    let mut single = Session::new(&model).unwrap();
    let mut c = Vec::new();
    for t in &toks {
        c.extend(single.feed(&[*t], Logits::Last).unwrap());
    }
    assert!(
        max_rel_diff(&b, &a) <= 1e-5,
        "chunked: {}",
        max_rel_diff(&b, &a)
    );
    assert!(
        max_rel_diff(&c, &a) <= 1e-5,
        "token by token: {}",
        max_rel_diff(&c, &a)
    );
}

#[test]
fn wrong_tokens_are_refused_and_change_nothing() {
    let model = small_model(5);
    let toks = tokens(12, 64, 3);
    let mut s = Session::new(&model).unwrap();
    s.feed(&toks[..6], Logits::None).unwrap();
    for bad in [64, -1, i32::MAX, i32::MIN] {
        let e = expect_code(s.feed(&[1, 2, bad], Logits::Last), Code::TokenOutOfRange);
        assert!(!e.message.is_empty());
        assert_eq!(s.position(), 6);
    }
    let after = s.feed(&toks[6..], Logits::All).unwrap();
    let mut fresh = Session::new(&model).unwrap();
    fresh.feed(&toks[..6], Logits::None).unwrap();
    let expected = fresh.feed(&toks[6..], Logits::All).unwrap();
    assert!(
        same_bits(&after, &expected),
        "a failed feed changed the stream"
    );
}

#[test]
fn short_logit_buffers_are_refused_and_change_nothing() {
    let model = small_model(6);
    let mut s = Session::new(&model).unwrap();
    let mut small = vec![0f32; 63];
    expect_code(
        s.feed_into(&[1, 2], Logits::Last, &mut small),
        Code::BufferTooSmall,
    );
    let mut row = vec![0f32; 64];
    expect_code(
        s.feed_into(&[1, 2], Logits::All, &mut row),
        Code::BufferTooSmall,
    );
    expect_code(
        s.feed_into(&[1, 2], Logits::Last, &mut []),
        Code::BufferTooSmall,
    );
    assert_eq!(s.position(), 0);
    assert_eq!(
        s.feed_into(&[1, 2], Logits::All, &mut vec![0f32; 200])
            .unwrap(),
        128
    );
    assert_eq!(s.feed_into(&[3], Logits::None, &mut []).unwrap(), 0);
    assert_eq!(s.position(), 3);
}

#[test]
fn snapshot_and_restore_continue_bit_for_bit() {
    let model = small_model(7);
    let toks = tokens(80, 64, 4);
    let mut s = Session::new(&model).unwrap();
    s.feed(&toks[..50], Logits::None).unwrap();
    let snap = s.snapshot().unwrap();
    assert_eq!(snap.len(), s.snapshot_size().unwrap());
    let expected = s.feed(&toks[50..], Logits::All).unwrap();

    // Into a fresh session...
    let mut fresh = Session::new(&model).unwrap();
    fresh.restore(&snap).unwrap();
    assert_eq!(fresh.position(), 50);
    assert!(same_bits(
        &fresh.feed(&toks[50..], Logits::All).unwrap(),
        &expected
    ));
    // ...and over a session in use (s itself, now at 80).
    s.restore(&snap).unwrap();
    assert_eq!(s.position(), 50);
    assert!(same_bits(
        &s.feed(&toks[50..], Logits::All).unwrap(),
        &expected
    ));
    // The pools hold notes after 50 tokens of windows of 4.
    assert!(s.pool_size(0).unwrap() > 0);
}

#[test]
fn snapshot_into_reports_short_buffers() {
    let model = small_model(8);
    let mut s = Session::new(&model).unwrap();
    s.feed(&tokens(9, 64, 5), Logits::None).unwrap();
    let size = s.snapshot_size().unwrap();
    let mut short = vec![0u8; size - 1];
    let e = expect_code(s.snapshot_into(&mut short), Code::BufferTooSmall);
    assert!(!e.message.is_empty());
    expect_code(s.snapshot_into(&mut []), Code::BufferTooSmall);
    let mut exact = vec![0u8; size];
    assert_eq!(s.snapshot_into(&mut exact).unwrap(), size);
    assert_eq!(exact, s.snapshot().unwrap());
}

#[test]
fn snapshot_files_and_inspection() {
    let dir = TempDir::new("snapfile");
    let model = small_model(9);
    let toks = tokens(41, 64, 6);
    let mut s = Session::new(&model).unwrap();
    s.feed(&toks, Logits::None).unwrap();
    let path = dir.path("stream.mmsnap");
    s.snapshot_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, s.snapshot().unwrap());

    let info = SnapshotInfo::inspect_file(&path).unwrap();
    assert_eq!(info, SnapshotInfo::inspect(&bytes).unwrap());
    assert_eq!(info.format_version, 2);
    assert_eq!(info.position, 41);
    assert_eq!(info.model_fingerprint, model.fingerprint());
    assert_eq!(info.n_layer, 2);
    assert_eq!(info.d_model, 32);
    assert_eq!(info.d_inner, 64);
    assert_eq!(info.d_state, 8);
    assert_eq!(info.d_conv, 4);
    assert_eq!(info.summary_dim, 16);
    assert_eq!(info.note_window, 4);
    assert_eq!(info.pool_capacity, 4);
    assert_eq!(info.pool_policy, PoolPolicy::Priority);
    let held: usize = (0..2).map(|l| s.pool_size(l).unwrap()).sum();
    assert_eq!(info.notes_total as usize, held);
    assert!(info.pool_fill() > 0.0 && info.pool_fill() <= 1.0);
    // The session also counts caches derived from the notes, which a
    // snapshot does not carry.
    assert!(info.state_bytes > 0 && info.state_bytes <= s.state_bytes());

    let mut other = Session::new(&model).unwrap();
    other.restore_file(&path).unwrap();
    assert_eq!(other.position(), 41);
    assert!(same_bits(
        &other.feed(&[1, 2, 3], Logits::All).unwrap(),
        &s.feed(&[1, 2, 3], Logits::All).unwrap()
    ));
}

/// Feeds `probe` into a copy of `s`'s stream (through a snapshot), to check
/// that failures left `s` as it was without disturbing it.
fn probe(s: &Session, probe: &[i32]) -> Vec<f32> {
    let mut copy = Session::new(s.model()).unwrap();
    copy.restore(&s.snapshot().unwrap()).unwrap();
    copy.feed(probe, Logits::All).unwrap()
}

#[test]
fn damaged_snapshots_are_refused_and_change_nothing() {
    let model = small_model(10);
    let mut s = Session::new(&model).unwrap();
    s.feed(&tokens(30, 64, 7), Logits::None).unwrap();
    let good = s.snapshot().unwrap();
    s.feed(&tokens(5, 64, 8), Logits::None).unwrap();
    let before = probe(&s, &[4, 5, 6]);

    expect_code(s.restore(&[]), Code::CorruptFile);
    expect_code(SnapshotInfo::inspect(&[]), Code::CorruptFile);
    let garbage: Vec<u8> = (0..good.len()).map(|i| (i * 31 % 251) as u8).collect();
    expect_code(s.restore(&garbage), Code::CorruptFile);
    expect_code(SnapshotInfo::inspect(&garbage), Code::CorruptFile);
    for cut in [1, 8, good.len() / 2, good.len() - 1] {
        expect_code(s.restore(&good[..cut]), Code::CorruptFile);
        expect_code(SnapshotInfo::inspect(&good[..cut]), Code::CorruptFile);
    }
    // Any changed byte is caught: by the checksum, or earlier as malformed.
    let mut checksum_seen = false;
    for at in (0..good.len())
        .step_by(good.len() / 23 + 1)
        .chain([good.len() / 2, good.len() - 1])
    {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        let e = s.restore(&bad).expect_err("a changed byte must be refused");
        assert!(
            e.code == Code::Checksum || e.code == Code::CorruptFile,
            "byte {}: {}",
            at,
            e
        );
        checksum_seen |= e.code == Code::Checksum;
        assert_eq!(SnapshotInfo::inspect(&bad).unwrap_err().code, e.code);
    }
    assert!(checksum_seen, "no flipped byte reached the checksum");
    assert_eq!(s.position(), 35);
    assert!(
        same_bits(&probe(&s, &[4, 5, 6]), &before),
        "a failed restore changed the stream"
    );
}

#[test]
fn snapshot_of_another_model_is_refused() {
    let a = small_model(11);
    let b = small_model(12);
    let mut sa = Session::new(&a).unwrap();
    sa.feed(&tokens(20, 64, 9), Logits::None).unwrap();
    let snap = sa.snapshot().unwrap();
    let mut sb = Session::new(&b).unwrap();
    sb.feed(&[1, 2, 3], Logits::None).unwrap();
    let before = probe(&sb, &[7]);
    let e = expect_code(sb.restore(&snap), Code::ModelMismatch);
    assert!(!e.message.is_empty());
    assert_eq!(sb.position(), 3);
    assert!(same_bits(&probe(&sb, &[7]), &before));
    // Another configuration is another model too.
    let mut c = small_config();
    c.pool_policy = PoolPolicy::Fifo;
    let fifo = Model::create_with(&c, 11, &one_thread()).unwrap();
    let mut sf = Session::new(&fifo).unwrap();
    assert!(sf.restore(&snap).is_err());
    assert_eq!(sf.position(), 0);
}

#[test]
fn stepping_many_sessions_equals_separate_feeds() {
    let model = small_model(13);
    let prefixes: Vec<Vec<i32>> = (0..3)
        .map(|i| tokens(5 + 3 * i, 64, 20 + i as u64))
        .collect();
    let mut sessions: Vec<Session> = Vec::new();
    let mut separate: Vec<Session> = Vec::new();
    for p in &prefixes {
        let mut s = Session::new(&model).unwrap();
        s.feed(p, Logits::None).unwrap();
        sessions.push(s);
        let mut t = Session::new(&model).unwrap();
        t.feed(p, Logits::None).unwrap();
        separate.push(t);
    }
    let step_tokens = [9, 19, 29];
    let mut refs: Vec<&mut Session> = sessions.iter_mut().collect();
    let batched = Session::step(&mut refs, &step_tokens).unwrap();
    assert_eq!(batched.len(), 3 * 64);
    for (i, t) in separate.iter_mut().enumerate() {
        let one = t.feed(&[step_tokens[i]], Logits::Last).unwrap();
        let row = &batched[i * 64..(i + 1) * 64];
        assert!(max_rel_diff(row, &one) <= 1e-5, "session {}", i);
    }
    // Without logits.
    Session::step_into(&mut refs, &[1, 2, 3], None).unwrap();
    for (s, p) in refs.iter().zip(&prefixes) {
        assert_eq!(s.position() as usize, p.len() + 2);
    }
}

#[test]
fn sampled_steps_pick_from_the_logits() {
    let model = small_model(16);
    let mut a = Session::new(&model).unwrap();
    let mut b = Session::new(&model).unwrap();
    let prefix = tokens(7, 64, 40);
    a.feed(&prefix, Logits::None).unwrap();
    b.feed(&prefix, Logits::None).unwrap();
    // Greedy: the highest of the twin's logits (the same bits on the CPU).
    let logits = Session::step(&mut [&mut a], &[3]).unwrap();
    let next = Session::step_sample(&mut [&mut b], &[3], 0.0, 0).unwrap();
    let mut best = 0;
    for (v, x) in logits.iter().enumerate() {
        if *x > logits[best] {
            best = v;
        }
    }
    assert_eq!(next, vec![best as i32]);
    assert_eq!(b.position(), a.position());
    // Tempered draws: valid ids, and a bad temperature changes nothing.
    let drawn = Session::step_sample(&mut [&mut b], &next, 1.0, 9).unwrap();
    assert!(drawn[0] >= 0 && drawn[0] < 64);
    let at = b.position();
    expect_code(
        Session::step_sample(&mut [&mut b], &drawn, -1.0, 9),
        Code::InvalidArgument,
    );
    assert_eq!(b.position(), at);
    // A seed per session: twins at the same position draw independently.
    let mut c = Session::new(&model).unwrap();
    let mut d = Session::new(&model).unwrap();
    let mut differed = false;
    let mut tok = [4, 4];
    for _ in 0..8 {
        let same = Session::step_sample(&mut [&mut c, &mut d], &tok, 3.0, 5).unwrap();
        assert_eq!(same[0], same[1]);
        let own =
            Session::step_sample_seeded(&mut [&mut c, &mut d], &[same[0], same[0]], 3.0, &[1, 2])
                .unwrap();
        differed |= own[0] != own[1];
        tok = [own[0], own[0]];
    }
    assert!(differed, "a seed per session never changed a draw");
    expect_code(
        Session::step_sample_seeded(&mut [&mut c, &mut d], &tok, 1.0, &[1]),
        Code::InvalidArgument,
    );
}

#[test]
fn stepping_errors_change_no_session() {
    let a = small_model(14);
    let b = small_model(15);
    let mut s1 = Session::new(&a).unwrap();
    let mut s2 = Session::new(&a).unwrap();
    let mut s3 = Session::new(&b).unwrap();
    // Lengths that disagree.
    expect_code(
        Session::step(&mut [&mut s1, &mut s2], &[1]),
        Code::InvalidArgument,
    );
    // A token out of range in any slot.
    expect_code(
        Session::step(&mut [&mut s1, &mut s2], &[1, 64]),
        Code::TokenOutOfRange,
    );
    // Sessions of different models.
    expect_code(
        Session::step(&mut [&mut s1, &mut s3], &[1, 2]),
        Code::ModelMismatch,
    );
    // A short caller buffer.
    let mut short = vec![0f32; 64];
    expect_code(
        Session::step_into(&mut [&mut s1, &mut s2], &[1, 2], Some(&mut short)),
        Code::BufferTooSmall,
    );
    assert_eq!((s1.position(), s2.position(), s3.position()), (0, 0, 0));
}

#[test]
fn reset_position_state_and_pools() {
    let model = small_model(16);
    let mut s = Session::new(&model).unwrap();
    assert!(s.state_bytes() > 0);
    let first = s.feed(&tokens(40, 64, 10), Logits::All).unwrap();
    assert_eq!(s.position(), 40);
    // The pools fill up to their capacity, then the state stops growing.
    let mut probe_session = Session::new(&model).unwrap();
    probe_session
        .feed(&tokens(100, 64, 30), Logits::None)
        .unwrap();
    let full = probe_session.state_bytes();
    probe_session
        .feed(&tokens(300, 64, 31), Logits::None)
        .unwrap();
    assert_eq!(probe_session.state_bytes(), full, "state is bounded");
    assert!(s.pool_size(0).unwrap() > 0);
    assert_eq!(s.pool_size(2), None, "layer out of range");
    assert_eq!(s.pool_size(u32::MAX), None);
    s.reset().unwrap();
    assert_eq!(s.position(), 0);
    assert_eq!(s.pool_size(0), Some(0));
    assert!(same_bits(
        &s.feed(&tokens(40, 64, 10), Logits::All).unwrap(),
        &first
    ));
}

#[test]
fn reset_recurrent_keeps_position_and_notes() {
    let model = small_model(16);
    let mut s = Session::new(&model).unwrap();
    let mut twin = Session::new(&model).unwrap();
    s.feed(&tokens(40, 64, 10), Logits::None).unwrap();
    twin.feed(&tokens(40, 64, 10), Logits::None).unwrap();
    let notes = s.pool_notes(0).unwrap();
    assert!(!notes.is_empty());
    s.reset_recurrent().unwrap();
    assert_eq!(s.position(), 40);
    assert_eq!(s.pool_notes(0).unwrap(), notes);
    let a = s.feed(&tokens(8, 64, 11), Logits::All).unwrap();
    let b = twin.feed(&tokens(8, 64, 11), Logits::All).unwrap();
    assert!(!same_bits(&a, &b), "the recurrent state was zeroed");
}

#[test]
fn pool_notes_list_what_the_pools_hold() {
    let model = small_model(16);
    let c = model.config().clone();
    let mut s = Session::new(&model).unwrap();
    assert!(
        s.pool_notes(0).unwrap().is_empty(),
        "a new stream has no notes"
    );
    s.feed(&tokens(40, 64, 10), Logits::None).unwrap();
    let before = s.snapshot().unwrap();
    for layer in 0..c.n_layer {
        let notes = s.pool_notes(layer).unwrap();
        assert_eq!(notes.len(), s.pool_size(layer).unwrap());
        assert!(
            !notes.is_empty(),
            "layer {} holds notes after 40 tokens",
            layer
        );
        assert!(notes.len() <= c.pool_capacity as usize);
        for pair in notes.windows(2) {
            assert!(pair[0].window < pair[1].window, "windows ascend");
        }
        let windows_seen = (s.position() / c.note_window as u64) as i64;
        for note in &notes {
            assert!(note.window >= 0 && note.window < windows_seen);
            assert!(note.score > 0.0 && note.score < 1.0, "score {}", note.score);
            assert_eq!(note.summary.len(), c.summary_dim as usize);
            assert!(note.summary.iter().all(|x| x.is_finite()));
        }
    }
    assert_eq!(s.snapshot().unwrap(), before, "listing changes nothing");
    let e = expect_code(s.pool_notes(2), Code::InvalidArgument);
    assert!(!e.message.is_empty());
    expect_code(s.pool_notes(u32::MAX), Code::InvalidArgument);
    s.reset().unwrap();
    assert!(s.pool_notes(0).unwrap().is_empty());
}

#[test]
fn plain_mamba_has_no_pools() {
    let mut c = small_config();
    c.pool_capacity = 0;
    let model = Model::create_with(&c, 17, &one_thread()).unwrap();
    let mut s = Session::new(&model).unwrap();
    s.feed(&tokens(20, 64, 11), Logits::None).unwrap();
    assert_eq!(s.pool_size(0), Some(0));
    assert!(s.pool_notes(0).unwrap().is_empty());
    let info = SnapshotInfo::inspect(&s.snapshot().unwrap()).unwrap();
    assert_eq!(info.notes_total, 0);
    assert_eq!(info.pool_fill(), 0.0);
}

#[test]
fn a_session_keeps_its_model_alive() {
    let mut s = {
        let model = small_model(18);
        Session::new(&model).unwrap()
    };
    assert_eq!(s.feed(&[1, 2, 3], Logits::Last).unwrap().len(), 64);
    assert_eq!(s.model().vocab_size(), 64);
}

#[test]
fn sessions_on_one_model_run_on_many_threads() {
    let model = small_model(19);
    let toks = tokens(30, 64, 12);
    let mut reference = Session::new(&model).unwrap();
    let expected = reference.feed(&toks, Logits::All).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let model = model.clone();
            let toks = toks.clone();
            std::thread::spawn(move || {
                let mut s = Session::new(&model).unwrap();
                s.feed(&toks, Logits::All).unwrap()
            })
        })
        .collect();
    for h in handles {
        assert!(same_bits(&h.join().unwrap(), &expected));
    }
    // A session moves to another thread and comes back.
    let mut s = Session::new(&model).unwrap();
    s.feed(&toks[..10], Logits::None).unwrap();
    let s = std::thread::spawn(move || {
        s.feed(&toks[10..], Logits::None).unwrap();
        s
    })
    .join()
    .unwrap();
    assert_eq!(s.position(), 30);
}

#[test]
fn model_files_round_trip_and_errors() {
    let dir = TempDir::new("modelfile");
    let model = small_model(20);
    let path = dir.path("m.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load_with(&path, &one_thread()).unwrap();
    assert_eq!(loaded.fingerprint(), model.fingerprint());
    assert_eq!(loaded.config(), model.config());
    let toks = tokens(17, 64, 13);
    assert!(same_bits(
        &Session::new(&loaded)
            .unwrap()
            .feed(&toks, Logits::All)
            .unwrap(),
        &Session::new(&model)
            .unwrap()
            .feed(&toks, Logits::All)
            .unwrap()
    ));

    // Missing, truncated, garbage.
    expect_code(Model::load(dir.path("missing.safetensors")), Code::Io);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.path("cut.safetensors");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        expect_code(Model::load(&p), Code::CorruptFile);
    }
    let p = dir.path("garbage.safetensors");
    std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
    expect_code(Model::load(&p), Code::CorruptFile);
    // Saving into a directory that does not exist.
    expect_code(model.save(dir.path("no/such/dir/m.safetensors")), Code::Io);
    // Paths with a NUL byte cannot reach the C API.
    expect_code(Model::load("bad\0name"), Code::InvalidArgument);
    expect_code(model.save("bad\0name"), Code::InvalidArgument);
}

#[test]
fn snapshot_file_errors() {
    let dir = TempDir::new("snaperr");
    let model = small_model(21);
    let mut s = Session::new(&model).unwrap();
    s.feed(&tokens(10, 64, 14), Logits::None).unwrap();
    expect_code(s.restore_file(dir.path("missing.mmsnap")), Code::Io);
    expect_code(
        SnapshotInfo::inspect_file(dir.path("missing.mmsnap")),
        Code::Io,
    );
    expect_code(s.snapshot_file(dir.path("no/such/dir/x.mmsnap")), Code::Io);
    expect_code(s.snapshot_file("bad\0name"), Code::InvalidArgument);
    expect_code(s.restore_file("bad\0name"), Code::InvalidArgument);
    expect_code(
        SnapshotInfo::inspect_file("bad\0name"),
        Code::InvalidArgument,
    );
    let path = dir.path("ok.mmsnap");
    s.snapshot_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path("cut.mmsnap");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    expect_code(s.restore_file(&cut), Code::CorruptFile);
    expect_code(SnapshotInfo::inspect_file(&cut), Code::CorruptFile);
    std::fs::write(&cut, b"").unwrap();
    expect_code(s.restore_file(&cut), Code::CorruptFile);
    assert_eq!(s.position(), 10);
}

#[test]
fn import_mamba_checkpoint() {
    let dir = TempDir::new("import");
    let path = dir.path("mamba.safetensors");
    write_mamba_checkpoint(&path);
    let memory = Config {
        note_window: 2,
        pool_capacity: 3,
        summary_dim: 8,
        attn_heads: 2,
        ..Config::default()
    };
    let model = Model::import_mamba(&path, &memory, 5, &one_thread()).unwrap();
    let c = model.config();
    assert_eq!(
        (c.vocab_size, c.d_model, c.n_layer, c.d_state, c.d_conv),
        (40, 16, 2, 4, 4)
    );
    assert_eq!((c.expand, c.dt_rank), (2, 3));
    assert_eq!((c.note_window, c.pool_capacity, c.summary_dim), (2, 3, 8));
    let mut s = Session::new(&model).unwrap();
    let logits = s.feed(&tokens(12, 40, 15), Logits::Last).unwrap();
    assert_eq!(logits.len(), 40);
    assert!(logits.iter().all(|x| x.is_finite()));

    expect_code(
        Model::import_mamba(dir.path("none.safetensors"), &memory, 5, &one_thread()),
        Code::Io,
    );
    // A memmamba model file lacks the reference names.
    let own = dir.path("own.safetensors");
    small_model(1).save(&own).unwrap();
    expect_code(
        Model::import_mamba(&own, &memory, 5, &one_thread()),
        Code::TensorMissing,
    );
}

#[test]
fn errors_display_code_and_message() {
    let e = memmamba::Error::new(Code::Io, "cannot open x");
    assert_eq!(e.raw_code(), -5);
    let text = e.to_string();
    assert!(
        text.contains("MM_ERR_IO") && text.contains("cannot open x"),
        "{}",
        text
    );
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().contains("cannot open x"));
}

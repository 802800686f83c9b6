//! Trains a small byte-level model on a text file for a few steps through
//! the training API and prints the loss; the held-out loss before and after
//! shows what the steps did.
use memmamba::{Config, Model, ModelOptions, Trainer, TrainerOptions};
use memmamba_samples::{die, Args};

const USAGE: &str = "usage: train FILE [--steps N] [--batch B] [--seq-len T] [--lr X] [--save PATH] [model options; fresh: d-model 64, n-layer 2]";

fn main() {
    let args = Args::parse(USAGE, &["steps", "batch", "seq-len", "lr", "save"], 1);
    let path = &args.positional[0];
    let steps: usize = args.get("steps", 20);
    let batch: usize = args.get("batch", 4);
    let seq_len: usize = args.get("seq-len", 128);
    let lr: f32 = args.get("lr", 3e-3);
    let seed: u64 = args.get("seed", 7);
    let text = std::fs::read(path).unwrap_or_else(|e| die(path, e));
    if text.len() < 2 * seq_len + 2 || seq_len < 2 || batch == 0 {
        die(
            path,
            format!(
                "need at least {} bytes for --seq-len {} and --batch >= 1",
                2 * seq_len + 2,
                seq_len
            ),
        );
    }
    let tokens: Vec<i32> = text.iter().map(|&b| b as i32).collect();
    // The last tenth (at least two sequences' worth) is held out.
    let held = (tokens.len() / 10).max(2 * seq_len);
    let (train, heldout) = tokens.split_at(tokens.len() - held);

    // A saved model to fine-tune, or a small fresh one.
    let options = ModelOptions {
        n_threads: args.get("threads", 0),
        ..ModelOptions::default()
    };
    let model = match args.get_str("model") {
        Some(p) => Model::load_with(&p, &options).unwrap_or_else(|e| die(&p, e)),
        None => {
            let config = Config {
                d_model: args.get("d-model", 64),
                n_layer: args.get("n-layer", 2),
                note_window: 8,
                summary_dim: 32,
                pool_capacity: 8,
                cross_layer_period: 2,
                cross_layer_span: 1,
                ..Config::default()
            };
            Model::create_with(&config, seed, &options)
                .unwrap_or_else(|e| die("creating the model", e))
        }
    };
    if model.vocab_size() != 256 {
        die(
            "--model",
            "this sample trains byte-level models (vocab_size 256)",
        );
    }
    let options = TrainerOptions {
        learning_rate: lr,
        n_threads: args.get("threads", 0),
        ..TrainerOptions::default()
    };
    let mut trainer =
        Trainer::new(&model, &options).unwrap_or_else(|e| die("creating the trainer", e));
    let before = model
        .eval_loss(heldout, seq_len)
        .unwrap_or_else(|e| die("eval", e));
    println!(
        "model: {} parameters; held-out loss {:.4} nats/byte before training",
        model.parameter_count(),
        before.loss
    );

    let mut rng = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut batch_tokens = Vec::with_capacity(batch * seq_len);
    for step in 1..=steps {
        batch_tokens.clear();
        for _ in 0..batch {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let start = (rng % (train.len() - seq_len) as u64) as usize;
            batch_tokens.extend_from_slice(&train[start..start + seq_len]);
        }
        let r = trainer
            .train_step(&batch_tokens, batch, seq_len, None)
            .unwrap_or_else(|e| die("train step", e));
        println!(
            "step {:>4}: loss {:.4}  grad norm {:.3}  ({} targets)",
            step, r.loss, r.grad_norm, r.tokens
        );
    }
    let keep = trainer
        .keep_fraction()
        .unwrap_or_else(|e| die("keep fraction", e));
    let trained = trainer.export_model().unwrap_or_else(|e| die("export", e));
    let after = trained
        .eval_loss(heldout, seq_len)
        .unwrap_or_else(|e| die("eval", e));
    println!(
        "held-out loss {:.4} -> {:.4} nats/byte after {} steps; notes kept per layer: {:?}",
        before.loss,
        after.loss,
        trainer.step_count(),
        keep
    );
    if let Some(out) = args.get_str("save") {
        trained.save(&out).unwrap_or_else(|e| die(&out, e));
        println!("saved the trained model to {}", out);
    }
}

//! What the samples share: argument parsing and byte-level scoring.

/// The options every sample takes to choose its model (see `model_from`).
pub const MODEL_OPTIONS: [&str; 5] = ["model", "seed", "d-model", "n-layer", "threads"];

/// Their usage text.
pub const MODEL_USAGE: &str = "model: --model PATH (a saved byte-level model), or fresh weights: \
[--seed S] [--d-model D] [--n-layer L] (default: the library's default shape); [--threads N]";

/// `--name value` options after positional arguments; exits with a usage
/// message on anything unexpected.
pub struct Args {
    pub positional: Vec<String>,
    options: Vec<(String, String)>,
    usage: &'static str,
}

impl Args {
    pub fn parse(usage: &'static str, known: &[&str], n_positional: usize) -> Args {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                println!("{}\n{}", usage, MODEL_USAGE);
                std::process::exit(0);
            } else if let Some(name) = arg.strip_prefix("--") {
                if !known.contains(&name) && !MODEL_OPTIONS.contains(&name) {
                    die_usage(usage, &format!("unknown option --{}", name));
                }
                match it.next() {
                    Some(v) => options.push((name.to_string(), v)),
                    None => die_usage(usage, &format!("--{} needs a value", name)),
                }
            } else {
                positional.push(arg);
            }
        }
        if positional.len() != n_positional {
            die_usage(usage, "wrong number of arguments");
        }
        Args {
            positional,
            options,
            usage,
        }
    }

    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.options.iter().rev().find(|(n, _)| n == name) {
            None => default,
            Some((_, v)) => v.parse().unwrap_or_else(|_| {
                die_usage(self.usage, &format!("--{}: cannot read {:?}", name, v))
            }),
        }
    }

    pub fn get_str(&self, name: &str) -> Option<String> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

pub fn die_usage(usage: &str, why: &str) -> ! {
    eprintln!("error: {}\n{}\n{}", why, usage, MODEL_USAGE);
    std::process::exit(2)
}

/// Prints the error and exits with status 1.
pub fn die(context: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("{}: {}", context, err);
    std::process::exit(1)
}

/// -log softmax(row)[token], in nats, computed in f64.
pub fn surprisal(row: &[f32], token: usize) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - row[token] as f64
}

/// The model a sample runs: a file given with --model, or fresh weights
/// from --seed, in the library's default byte-level shape or a smaller one
/// (--d-model, --n-layer).
pub fn model_from(args: &Args) -> memmamba::Model {
    let options = memmamba::ModelOptions {
        n_threads: args.get("threads", 0),
        ..Default::default()
    };
    match args.get_str("model") {
        Some(path) => memmamba::Model::load_with(&path, &options).unwrap_or_else(|e| die(&path, e)),
        None => {
            let defaults = memmamba::Config::default();
            let config = memmamba::Config {
                d_model: args.get("d-model", defaults.d_model),
                n_layer: args.get("n-layer", defaults.n_layer),
                ..defaults
            };
            memmamba::Model::create_with(&config, args.get("seed", 42u64), &options)
                .unwrap_or_else(|e| die("creating the model", e))
        }
    }
}

//! Streams a text file (a log) through a byte-level model and prints the
//! lines it found most surprising: each byte's surprisal is
//! -log softmax(logits)[byte] given everything before it, summed per line.
//! A trained model (--model) flags unusual lines; fresh weights only show
//! the mechanics.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use memmamba::{Logits, Session};
use memmamba_samples::{die, model_from, surprisal, Args};

const USAGE: &str = "usage: surprise FILE [--top N] [--limit BYTES] [model options]";

/// A scored line; ordered by score for the heap.
struct Scored {
    nats: f64,
    number: usize,
    text: String,
}
impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.nats == o.nats
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.nats.total_cmp(&o.nats)
    }
}

fn main() {
    let args = Args::parse(USAGE, &["top", "limit"], 1);
    let path = &args.positional[0];
    let top: usize = args.get("top", 5);
    let limit: u64 = args.get("limit", u64::MAX);
    let model = model_from(&args);
    if model.vocab_size() != 256 {
        die(
            path,
            "this sample needs a byte-level model (vocab_size 256)",
        );
    }
    let mut session = Session::new(&model).unwrap_or_else(|e| die("session", e));
    let file = File::open(path).unwrap_or_else(|e| die(path, e));
    let mut reader = BufReader::new(file);

    // The logits after the last byte fed so far: they score the next line's first byte.
    let mut carry: Option<Vec<f32>> = None;
    let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
    let (mut bytes, mut lines, mut total_nats) = (0u64, 0usize, 0f64);
    let mut line = Vec::new();
    let start = Instant::now();
    while bytes < limit {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => die(path, e),
        }
        line.truncate((limit - bytes).min(line.len() as u64) as usize);
        let tokens: Vec<i32> = line.iter().map(|&b| b as i32).collect();
        let logits = session
            .feed(&tokens, Logits::All)
            .unwrap_or_else(|e| die("feed", e));
        let v = 256;
        let mut nats = 0.0;
        for (i, &b) in line.iter().enumerate() {
            let row = if i == 0 {
                carry.as_deref()
            } else {
                Some(&logits[(i - 1) * v..i * v])
            };
            if let Some(row) = row {
                nats += surprisal(row, b as usize);
            }
        }
        carry = Some(logits[(line.len() - 1) * v..].to_vec());
        lines += 1;
        bytes += line.len() as u64;
        total_nats += nats;
        let text = String::from_utf8_lossy(&line)
            .trim_end()
            .chars()
            .take(100)
            .collect();
        best.push(Reverse(Scored {
            nats,
            number: lines,
            text,
        }));
        if best.len() > top {
            best.pop();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "streamed {} lines, {} bytes in {:.2} s ({:.0} tokens/s); mean {:.3} bits/byte; state {} bytes",
        lines,
        bytes,
        secs,
        bytes as f64 / secs.max(1e-9),
        total_nats / std::f64::consts::LN_2 / (bytes.max(1) as f64),
        session.state_bytes()
    );
    println!("the {} most surprising lines:", best.len());
    let mut ranked: Vec<Scored> = best.into_iter().map(|Reverse(s)| s).collect();
    ranked.sort_by(|a, b| b.cmp(a));
    for s in ranked {
        println!("  line {:>6}: {:9.1} nats  {}", s.number, s.nats, s.text);
    }
}

//! Streams a FASTA genome through a model as one byte stream, writing a
//! snapshot of the stream at the start of every contig (after its `>`
//! header line) into a directory. At the end it restores the last contig's
//! snapshot into a new session, feeds that contig again and checks that the
//! stream continues exactly as it did the first time (bit for bit).
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use memmamba::{Logits, Session, SnapshotInfo};
use memmamba_samples::{die, model_from, Args};

const USAGE: &str =
    "usage: contigs FASTA OUTDIR [--per-contig BYTES] [--limit BYTES] [--chunk N] [model options]";

/// Feeds the sequence lines of one contig, from the current position of
/// `reader` up to the next header (or the caps), in chunks of `chunk`
/// tokens. Returns the bytes fed, the last logits, and the header line that
/// ended the contig (if any).
fn feed_contig(
    session: &mut Session,
    reader: &mut BufReader<File>,
    per_contig: u64,
    budget: u64,
    chunk: usize,
) -> (u64, Option<Vec<f32>>, Option<Vec<u8>>) {
    let (mut fed, mut last) = (0u64, None);
    let mut pending: Vec<i32> = Vec::with_capacity(chunk);
    let mut line = Vec::new();
    let mut next_header = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| die("read", e));
        if n == 0 {
            break;
        }
        if line[0] == b'>' {
            next_header = Some(line.clone());
            break;
        }
        for &b in &line {
            if fed >= per_contig || fed >= budget {
                break;
            }
            pending.push(b as i32);
            fed += 1;
            if pending.len() == chunk {
                last = Some(
                    session
                        .feed(&pending, Logits::Last)
                        .unwrap_or_else(|e| die("feed", e)),
                );
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        last = Some(
            session
                .feed(&pending, Logits::Last)
                .unwrap_or_else(|e| die("feed", e)),
        );
    }
    (fed, last, next_header)
}

fn snapshot_name(index: usize, header: &[u8]) -> String {
    let name: String = String::from_utf8_lossy(&header[1..])
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{:03}-{}.mmsnap", index, name)
}

fn main() {
    let args = Args::parse(USAGE, &["per-contig", "limit", "chunk"], 2);
    let (fasta, outdir) = (&args.positional[0], Path::new(&args.positional[1]));
    let per_contig: u64 = args.get("per-contig", u64::MAX);
    let limit: u64 = args.get("limit", u64::MAX);
    let chunk: usize = args.get("chunk", 4096);
    if chunk == 0 {
        die("--chunk", "must be at least 1");
    }
    fs::create_dir_all(outdir).unwrap_or_else(|e| die(&outdir.display().to_string(), e));
    let model = model_from(&args);
    let mut session = Session::new(&model).unwrap_or_else(|e| die("session", e));
    let file = File::open(fasta).unwrap_or_else(|e| die(fasta, e));
    let mut reader = BufReader::new(file);

    // Skip to the first header.
    let mut header = Vec::new();
    loop {
        header.clear();
        if reader
            .read_until(b'\n', &mut header)
            .unwrap_or_else(|e| die(fasta, e))
            == 0
        {
            die(fasta, "no FASTA header ('>') found");
        }
        if header[0] == b'>' {
            break;
        }
    }
    let mut total = 0u64;
    let mut index = 0usize;
    // The loop ends with the last contig: its snapshot, where its sequence
    // starts in the file, the bytes fed and the final logits.
    let last: (PathBuf, u64, u64, Option<Vec<f32>>) = loop {
        let head: Vec<i32> = header.iter().map(|&b| b as i32).collect();
        session
            .feed(&head, Logits::None)
            .unwrap_or_else(|e| die("feed", e));
        total += head.len() as u64;
        let snap = outdir.join(snapshot_name(index, &header));
        session
            .snapshot_file(&snap)
            .unwrap_or_else(|e| die(&snap.display().to_string(), e));
        let offset = reader.stream_position().unwrap_or_else(|e| die(fasta, e));
        let budget = limit.saturating_sub(total);
        let (fed, logits, next) = feed_contig(&mut session, &mut reader, per_contig, budget, chunk);
        total += fed;
        let info = SnapshotInfo::inspect_file(&snap).unwrap_or_else(|e| die("inspect", e));
        println!(
            "{:<20} {:>9} bytes fed; snapshot at position {:>9}: {} ({} notes, {:.0}% pool)",
            String::from_utf8_lossy(&header).trim_end(),
            fed,
            info.position,
            snap.file_name().unwrap().to_string_lossy(),
            info.notes_total,
            100.0 * info.pool_fill()
        );
        index += 1;
        match next {
            Some(h) if total < limit => header = h,
            _ => break (snap, offset, fed, logits),
        }
    };
    println!(
        "streamed {} contigs, {} tokens; state {} bytes",
        index,
        total,
        session.state_bytes()
    );

    // Resume the last contig from its snapshot and replay it.
    let (snap, offset, fed, logits) = last;
    let mut resumed = Session::new(&model).unwrap_or_else(|e| die("session", e));
    resumed
        .restore_file(&snap)
        .unwrap_or_else(|e| die(&snap.display().to_string(), e));
    let mut again = BufReader::new(File::open(fasta).unwrap_or_else(|e| die(fasta, e)));
    again
        .seek(SeekFrom::Start(offset))
        .unwrap_or_else(|e| die(fasta, e));
    let (fed_again, logits_again, _) = feed_contig(&mut resumed, &mut again, fed, fed, chunk);
    let same = fed_again == fed
        && resumed.position() == session.position()
        && match (&logits, &logits_again) {
            (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            (None, None) => true,
            _ => false,
        };
    if same {
        println!(
            "resumed from {}: replayed {} tokens to position {}; logits identical bit for bit",
            snap.display(),
            fed_again,
            resumed.position()
        );
    } else {
        die("resume", "the restored stream differs from the original");
    }
}

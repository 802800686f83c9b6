// Command contigs streams a FASTA genome through a model as one byte
// stream, writing a snapshot of the stream at the start of every contig
// (after its '>' header line) into a directory. At the end it restores the
// last contig's snapshot into a new session, feeds that contig again and
// checks that the stream continues exactly as the first time (bit for bit).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"memmamba.dev/memmamba"
	"memmamba.dev/samples/internal/sample"
)

// feedContig feeds the sequence lines of one contig from r, up to the next
// header or the caps, in chunks of chunk tokens. It returns the bytes fed,
// the last logits, the header that ended the contig (nil at the end) and
// the offset in the file just past that header.
func feedContig(s *memmamba.Session, r *bufio.Reader, perContig, budget int64, chunk int) (int64, []float32, []byte) {
	var fed int64
	var last []float32
	pending := make([]int32, 0, chunk)
	flush := func() {
		if len(pending) == 0 {
			return
		}
		l, err := s.Feed(pending, memmamba.LogitsLast)
		if err != nil {
			sample.Die("feed", err)
		}
		last, pending = l, pending[:0]
	}
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 {
			if err != nil && err != io.EOF {
				sample.Die("read", err)
			}
			flush()
			return fed, last, nil
		}
		if line[0] == '>' {
			flush()
			return fed, last, line
		}
		for _, b := range line {
			if fed >= perContig || fed >= budget {
				break
			}
			pending = append(pending, int32(b))
			fed++
			if len(pending) == chunk {
				flush()
			}
		}
		if err == io.EOF {
			flush()
			return fed, last, nil
		}
	}
}

func snapshotName(index int, header []byte) string {
	fields := strings.Fields(string(header[1:]))
	name := ""
	if len(fields) > 0 {
		name = fields[0]
	}
	clean := []rune{}
	for _, c := range name {
		if len(clean) == 40 {
			break
		}
		if c < 128 && (c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			clean = append(clean, c)
		} else {
			clean = append(clean, '_')
		}
	}
	return fmt.Sprintf("%03d-%s.mmsnap", index, string(clean))
}

func main() {
	sample.Usage("contigs [flags] FASTA OUTDIR")
	perContig := flag.Int64("per-contig", math.MaxInt64, "sequence bytes fed per contig at most")
	limit := flag.Int64("limit", math.MaxInt64, "bytes fed in all at most")
	chunk := flag.Int("chunk", 4096, "tokens per feed")
	mf := sample.AddModelFlags(0, 0)
	flag.Parse()
	if flag.NArg() != 2 || *chunk < 1 {
		flag.Usage()
		os.Exit(2)
	}
	fasta, outdir := flag.Arg(0), flag.Arg(1)
	if err := os.MkdirAll(outdir, 0o755); err != nil {
		sample.Die(outdir, err)
	}
	model := mf.Model(nil)
	defer model.Close()
	s, err := model.NewSession(nil)
	if err != nil {
		sample.Die("session", err)
	}
	defer s.Close()
	f, err := os.Open(fasta)
	if err != nil {
		sample.Die(fasta, err)
	}
	defer f.Close()
	// A counting reader gives the file offset of each contig's sequence.
	cr := &countingReader{r: f}
	r := bufio.NewReader(cr)

	var header []byte
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[0] == '>' {
			header = line
			break
		}
		if err != nil {
			sample.Die(fasta, "no FASTA header ('>') found")
		}
	}
	var total int64
	index := 0
	var snap string
	var offset, fed int64
	var logits []float32
	for {
		head := sample.Tokens(header)
		if _, err := s.Feed(head, memmamba.LogitsNone); err != nil {
			sample.Die("feed", err)
		}
		total += int64(len(head))
		snap = filepath.Join(outdir, snapshotName(index, header))
		if err := s.SnapshotFile(snap); err != nil {
			sample.Die(snap, err)
		}
		offset = cr.n - int64(r.Buffered())
		var next []byte
		fed, logits, next = feedContig(s, r, *perContig, *limit-total, *chunk)
		total += fed
		info, err := memmamba.InspectSnapshotFile(snap)
		if err != nil {
			sample.Die("inspect", err)
		}
		fmt.Printf("%-20s %9d bytes fed; snapshot at position %9d: %s (%d notes, %.0f%% pool)\n",
			strings.TrimRight(string(header), "\r\n"), fed, info.Position, filepath.Base(snap),
			info.NotesTotal, 100*info.PoolFill())
		index++
		if next == nil || total >= *limit {
			break
		}
		header = next
	}
	fmt.Printf("streamed %d contigs, %d tokens; state %d bytes\n", index, total, s.StateBytes())

	// Resume the last contig from its snapshot and replay it.
	resumed, err := model.NewSession(nil)
	if err != nil {
		sample.Die("session", err)
	}
	defer resumed.Close()
	if err := resumed.RestoreFile(snap); err != nil {
		sample.Die(snap, err)
	}
	g, err := os.Open(fasta)
	if err != nil {
		sample.Die(fasta, err)
	}
	defer g.Close()
	if _, err := g.Seek(offset, io.SeekStart); err != nil {
		sample.Die(fasta, err)
	}
	fedAgain, logitsAgain, _ := feedContig(resumed, bufio.NewReader(g), fed, fed, *chunk)
	same := fedAgain == fed && resumed.Position() == s.Position() && len(logits) == len(logitsAgain)
	for i := 0; same && i < len(logits); i++ {
		same = math.Float32bits(logits[i]) == math.Float32bits(logitsAgain[i])
	}
	if !same {
		sample.Die("resume", "the restored stream differs from the original")
	}
	fmt.Printf("resumed from %s: replayed %d tokens to position %d; logits identical bit for bit\n",
		snap, fedAgain, resumed.Position())
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Command surprise streams a text file (a log) through a byte-level model
// and prints the lines it found most surprising: each byte's surprisal is
// -log softmax(logits)[byte] given everything before it, summed per line.
// A trained model (-model) flags unusual lines; fresh weights only show the
// mechanics.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"memmamba.dev/memmamba"
	"memmamba.dev/samples/internal/sample"
)

type scored struct {
	nats   float64
	number int
	text   string
}

func main() {
	sample.Usage("surprise [flags] FILE")
	top := flag.Int("top", 5, "lines to print")
	limit := flag.Int64("limit", math.MaxInt64, "bytes to read at most")
	mf := sample.AddModelFlags(0, 0)
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	model := mf.Model(nil)
	defer model.Close()
	s, err := model.NewSession(nil)
	if err != nil {
		sample.Die("session", err)
	}
	defer s.Close()
	f, err := os.Open(path)
	if err != nil {
		sample.Die(path, err)
	}
	defer f.Close()
	r := bufio.NewReader(f)

	const v = 256
	var carry []float32 // logits after the last byte: they score the next line's first byte
	var best []scored   // the top lines so far, most surprising first
	var bytes int64
	lines, total := 0, 0.0
	start := time.Now()
	for bytes < *limit {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 {
			if err != nil && err != io.EOF {
				sample.Die(path, err)
			}
			break
		}
		if int64(len(line)) > *limit-bytes {
			line = line[:*limit-bytes]
		}
		logits, ferr := s.Feed(sample.Tokens(line), memmamba.LogitsAll)
		if ferr != nil {
			sample.Die("feed", ferr)
		}
		nats := 0.0
		for i, b := range line {
			row := carry
			if i > 0 {
				row = logits[(i-1)*v : i*v]
			}
			if row != nil {
				nats += sample.Surprisal(row, int(b))
			}
		}
		carry = append(carry[:0], logits[(len(line)-1)*v:]...)
		lines++
		bytes += int64(len(line))
		total += nats
		text := strings.TrimRight(string(line), "\r\n")
		if len(text) > 100 {
			text = text[:100]
		}
		best = append(best, scored{nats, lines, text})
		sort.SliceStable(best, func(i, j int) bool { return best[i].nats > best[j].nats })
		if len(best) > *top {
			best = best[:*top]
		}
		if err == io.EOF {
			break
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("streamed %d lines, %d bytes in %.2f s (%.0f tokens/s); mean %.3f bits/byte; state %d bytes\n",
		lines, bytes, secs, float64(bytes)/math.Max(secs, 1e-9),
		total/math.Ln2/math.Max(float64(bytes), 1), s.StateBytes())
	fmt.Printf("the %d most surprising lines:\n", len(best))
	for _, b := range best {
		fmt.Printf("  line %6d: %9.1f nats  %s\n", b.number, b.nats, b.text)
	}
}

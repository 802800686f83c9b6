// Package sample holds what the samples share: the model flags and
// byte-level scoring.
package sample

import (
	"flag"
	"fmt"
	"math"
	"os"

	"memmamba.dev/memmamba"
)

// ModelFlags choose the model a sample runs.
type ModelFlags struct {
	Path    *string
	Seed    *uint64
	DModel  *uint
	NLayer  *uint
	Threads *int
}

// AddModelFlags registers -model, -seed, -d-model, -n-layer and -threads;
// dModel and nLayer are the defaults of a fresh model (0 = the library's).
func AddModelFlags(dModel, nLayer uint) ModelFlags {
	return ModelFlags{
		Path:    flag.String("model", "", "a saved byte-level model (default: fresh weights)"),
		Seed:    flag.Uint64("seed", 42, "seed of fresh weights"),
		DModel:  flag.Uint("d-model", dModel, "d_model of fresh weights (0 = the library's default)"),
		NLayer:  flag.Uint("n-layer", nLayer, "layers of fresh weights (0 = the library's default)"),
		Threads: flag.Int("threads", 0, "threads (0 = all cores)"),
	}
}

// Model loads or creates the model the flags describe; edit adjusts a
// fresh model's configuration (may be nil).
func (f ModelFlags) Model(edit func(*memmamba.Config)) *memmamba.Model {
	opts := &memmamba.ModelOptions{NThreads: int32(*f.Threads)}
	var m *memmamba.Model
	var err error
	if *f.Path != "" {
		m, err = memmamba.LoadModel(*f.Path, opts)
	} else {
		c := memmamba.DefaultConfig()
		if *f.DModel != 0 {
			c.DModel = uint32(*f.DModel)
		}
		if *f.NLayer != 0 {
			c.NLayer = uint32(*f.NLayer)
		}
		if edit != nil {
			edit(&c)
		}
		m, err = memmamba.NewModel(c, *f.Seed, opts)
	}
	if err != nil {
		Die("model", err)
	}
	if m.VocabSize() != 256 {
		Die("model", "the samples need a byte-level model (vocab size 256)")
	}
	return m
}

// Die prints what failed and exits with status 1.
func Die(context string, err interface{}) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", context, err)
	os.Exit(1)
}

// Usage sets the usage line printed before the flags.
func Usage(line string) {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s\n", line)
		flag.PrintDefaults()
	}
}

// Surprisal is -log softmax(row)[token] in nats, computed in float64.
func Surprisal(row []float32, token int) float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	sum := 0.0
	for _, x := range row {
		sum += math.Exp(float64(x) - mx)
	}
	return mx + math.Log(sum) - float64(row[token])
}

// Tokens turns bytes into byte-level token ids.
func Tokens(b []byte) []int32 {
	t := make([]int32, len(b))
	for i, c := range b {
		t[i] = int32(c)
	}
	return t
}

// Command train trains a small byte-level model on a text file for a few
// steps through the training API and prints the loss; the held-out loss
// before and after shows what the steps did.
package main

import (
	"flag"
	"fmt"
	"os"

	"memmamba.dev/memmamba"
	"memmamba.dev/samples/internal/sample"
)

func main() {
	sample.Usage("train [flags] FILE")
	steps := flag.Int("steps", 20, "training steps")
	batch := flag.Int("batch", 4, "sequences per step")
	seqLen := flag.Int("seq-len", 128, "tokens per sequence")
	lr := flag.Float64("lr", 3e-3, "learning rate")
	save := flag.String("save", "", "write the trained model here")
	mf := sample.AddModelFlags(64, 2)
	flag.Parse()
	if flag.NArg() != 1 || *seqLen < 2 || *batch < 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	text, err := os.ReadFile(path)
	if err != nil {
		sample.Die(path, err)
	}
	if len(text) < 2**seqLen+2 {
		sample.Die(path, fmt.Sprintf("need at least %d bytes for -seq-len %d", 2**seqLen+2, *seqLen))
	}
	tokens := sample.Tokens(text)
	held := len(tokens) / 10 // the last tenth, at least two sequences, is held out
	if held < 2**seqLen {
		held = 2 * *seqLen
	}
	train, heldout := tokens[:len(tokens)-held], tokens[len(tokens)-held:]

	model := mf.Model(func(c *memmamba.Config) {
		c.NoteWindow, c.SummaryDim, c.PoolCapacity = 8, 32, 8
		c.CrossLayerPeriod, c.CrossLayerSpan = 2, 1
	})
	defer model.Close()
	opts := memmamba.DefaultTrainerOptions()
	opts.LearningRate = float32(*lr)
	opts.NThreads = int32(*mf.Threads)
	trainer, err := memmamba.NewTrainer(model, &opts)
	if err != nil {
		sample.Die("creating the trainer", err)
	}
	defer trainer.Close()
	before, err := model.EvalLoss(heldout, *seqLen)
	if err != nil {
		sample.Die("eval", err)
	}
	fmt.Printf("model: %d parameters; held-out loss %.4f nats/byte before training\n",
		model.ParameterCount(), before.Loss)

	rng := *mf.Seed*0x9E3779B97F4A7C15 | 1
	b := make([]int32, 0, *batch**seqLen)
	for step := 1; step <= *steps; step++ {
		b = b[:0]
		for i := 0; i < *batch; i++ {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			start := int(rng % uint64(len(train)-*seqLen))
			b = append(b, train[start:start+*seqLen]...)
		}
		r, err := trainer.TrainStep(b, *batch, *seqLen, nil)
		if err != nil {
			sample.Die("train step", err)
		}
		fmt.Printf("step %4d: loss %.4f  grad norm %.3f  (%d targets)\n", step, r.Loss, r.GradNorm, r.Tokens)
	}
	keep, err := trainer.KeepFraction()
	if err != nil {
		sample.Die("keep fraction", err)
	}
	trained, err := trainer.ExportModel(nil)
	if err != nil {
		sample.Die("export", err)
	}
	defer trained.Close()
	after, err := trained.EvalLoss(heldout, *seqLen)
	if err != nil {
		sample.Die("eval", err)
	}
	fmt.Printf("held-out loss %.4f -> %.4f nats/byte after %d steps; notes kept per layer: %v\n",
		before.Loss, after.Loss, trainer.StepCount(), keep)
	if *save != "" {
		if err := trained.Save(*save); err != nil {
			sample.Die(*save, err)
		}
		fmt.Printf("saved the trained model to %s\n", *save)
	}
}

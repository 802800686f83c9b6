package memmamba

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Training and evaluation. Where the linked library reports them as
// unsupported (CodeUnsupported), the tests are skipped with that reason.

func trainOptions() *TrainerOptions {
	o := DefaultTrainerOptions()
	o.LearningRate = 1e-2
	o.NThreads = 1
	return &o
}

func skipIfUnsupported(t *testing.T, err error, what string) {
	t.Helper()
	var e *Error
	if errors.As(err, &e) && e.Code == CodeUnsupported {
		t.Skipf("the library has no %s: %v", what, err)
	}
}

func newTrainer(t *testing.T, m *Model, o *TrainerOptions) *Trainer {
	t.Helper()
	tr, err := NewTrainer(m, o)
	skipIfUnsupported(t, err, "training")
	must(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func patternBatch(batch, seqLen int) []int32 {
	p := []int32{3, 1, 4, 1, 5, 9, 2, 6}
	out := make([]int32, batch*seqLen)
	for i := range out {
		out[i] = p[(i+i/seqLen)%8]
	}
	return out
}

// weightsProbe is the exported model's logits on a fixed probe.
func weightsProbe(t *testing.T, tr *Trainer) []float32 {
	t.Helper()
	m, err := tr.ExportModel(oneThread)
	must(t, err)
	defer m.Close()
	s, err := m.NewSession(nil)
	must(t, err)
	defer s.Close()
	l, err := s.Feed(tokens(16, 64, 99), LogitsAll)
	must(t, err)
	return l
}

func TestTrain_OptionDefaults(t *testing.T) {
	got := DefaultTrainerOptions()
	want := TrainerOptions{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8,
		WeightDecay: 0.1, GradClip: 1.0, AccumSteps: 1}
	if got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
}

func TestTrain_StepsLowerTheLoss(t *testing.T) {
	m := smallModel(t, 1)
	tr := newTrainer(t, m, trainOptions())
	batch := patternBatch(2, 24)
	first, err := tr.TrainStep(batch, 2, 24, nil)
	must(t, err)
	if first.Tokens != 46 || !first.Updated || first.Step != 1 || first.Loss <= 0 ||
		math.IsNaN(float64(first.GradNorm)) || first.GradNorm <= 0 {
		t.Fatalf("first step %+v", first)
	}
	last := first
	for i := 0; i < 7; i++ {
		last, err = tr.TrainStep(batch, 2, 24, nil)
		must(t, err)
	}
	if tr.StepCount() != 8 || last.Step != 8 || last.Loss >= first.Loss {
		t.Fatalf("after 8 steps: %+v (first loss %g)", last, first.Loss)
	}
	keep, err := tr.KeepFraction()
	must(t, err)
	if len(keep) != 2 || keep[0] < 0 || keep[0] > 1 || keep[1] < 0 || keep[1] > 1 {
		t.Fatalf("keep fractions %v", keep)
	}
	trained, err := tr.ExportModel(oneThread)
	must(t, err)
	defer trained.Close()
	if trained.Fingerprint() == m.Fingerprint() || trained.Config() != m.Config() {
		t.Fatal("the exported model should carry new weights, same config")
	}
	before, err1 := m.EvalLoss(batch, 24)
	after, err2 := trained.EvalLoss(batch, 24)
	if err1 == nil && err2 == nil && after.Loss >= before.Loss {
		t.Fatalf("eval loss %g -> %g", before.Loss, after.Loss)
	}
}

func TestTrain_UntrainedExportEqualsTheModel(t *testing.T) {
	m := smallModel(t, 2)
	tr := newTrainer(t, m, trainOptions())
	e, err := tr.ExportModel(nil)
	must(t, err)
	defer e.Close()
	if e.Fingerprint() != m.Fingerprint() {
		t.Fatal("fingerprints differ")
	}
}

func TestTrain_LossMask(t *testing.T) {
	tr := newTrainer(t, smallModel(t, 3), trainOptions())
	mask := make([]byte, 20)
	for _, i := range []int{0, 3, 4, 9, 10, 15} {
		mask[i] = 1 // 0 and 10 are t = 0 of their sequence: ignored
	}
	r, err := tr.TrainStep(patternBatch(2, 10), 2, 10, mask)
	must(t, err)
	if r.Tokens != 4 {
		t.Fatalf("%d targets", r.Tokens)
	}
}

func TestTrain_Accumulation(t *testing.T) {
	o := trainOptions()
	o.AccumSteps = 2
	tr := newTrainer(t, smallModel(t, 4), o)
	b := patternBatch(1, 16)
	r1, err := tr.TrainStep(b, 1, 16, nil)
	must(t, err)
	r2, err := tr.TrainStep(b, 1, 16, nil)
	must(t, err)
	if r1.Updated || r1.Step != 0 || !r2.Updated || r2.Step != 1 || tr.StepCount() != 1 {
		t.Fatalf("%+v %+v", r1, r2)
	}
}

func TestTrain_SaveLoadContinuesExactly(t *testing.T) {
	dir := t.TempDir()
	m := smallModel(t, 5)
	straight := newTrainer(t, m, trainOptions())
	var batches [][]int32
	for i := 0; i < 4; i++ {
		batches = append(batches, tokens(24, 64, uint64(40+i)))
	}
	for _, b := range batches {
		_, err := straight.TrainStep(b, 2, 12, nil)
		must(t, err)
	}
	first := newTrainer(t, m, trainOptions())
	for _, b := range batches[:2] {
		_, err := first.TrainStep(b, 2, 12, nil)
		must(t, err)
	}
	path := filepath.Join(dir, "t.safetensors")
	must(t, first.Save(path))
	must(t, first.Close())
	resumed, err := LoadTrainer(path, 1)
	must(t, err)
	defer resumed.Close()
	if resumed.StepCount() != 2 {
		t.Fatalf("step %d", resumed.StepCount())
	}
	if k, err := resumed.KeepFraction(); err != nil || len(k) != 2 {
		t.Fatalf("keep %v %v", k, err)
	}
	for _, b := range batches[2:] {
		_, err := resumed.TrainStep(b, 2, 12, nil)
		must(t, err)
	}
	if !sameBits(weightsProbe(t, resumed), weightsProbe(t, straight)) {
		t.Fatal("a resumed run differs from an uninterrupted one")
	}
}

// mm_trainer_save: "It is not a model file (mm_model_load refuses it):
// export the model for that."
func TestTrain_TrainerFileIsNotAModelFile(t *testing.T) {
	tr := newTrainer(t, smallModel(t, 11), trainOptions())
	_, err := tr.TrainStep(patternBatch(2, 12), 2, 12, nil)
	must(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "t.safetensors")
	must(t, tr.Save(path))
	if m, err := LoadModel(path, nil); err == nil {
		m.Close()
		t.Fatal("LoadModel must refuse a trainer file")
	}
	exported, err := tr.ExportModel(nil)
	must(t, err)
	defer exported.Close()
	mp := filepath.Join(dir, "exported.safetensors")
	must(t, exported.Save(mp))
	loaded, err := LoadModel(mp, oneThread)
	must(t, err)
	defer loaded.Close()
	if loaded.Fingerprint() != exported.Fingerprint() {
		t.Fatal("the exported model does not round-trip")
	}
}

func TestTrain_BadBatchesChangeNothing(t *testing.T) {
	tr := newTrainer(t, smallModel(t, 6), trainOptions())
	good := patternBatch(2, 8)
	_, err := tr.TrainStep(good, 2, 8, nil)
	must(t, err)
	weights := weightsProbe(t, tr)
	cases := []struct {
		name   string
		tokens []int32
		b, s   int
		mask   []byte
		code   int
	}{
		{"length", good, 2, 7, nil, CodeInvalidArgument},
		{"mask length", good, 2, 8, make([]byte, 15), CodeInvalidArgument},
		{"negative", good, -2, -8, nil, CodeInvalidArgument},
		{"empty", nil, 0, 8, nil, CodeInvalidArgument},
		{"1x1", []int32{5}, 1, 1, nil, CodeInvalidArgument},
		{"no target", good, 2, 8, make([]byte, 16), CodeInvalidArgument},
		{"only t=0", good, 2, 8, append(append([]byte{1}, make([]byte, 7)...), append([]byte{1}, make([]byte, 7)...)...), CodeInvalidArgument},
	}
	for _, c := range cases {
		_, err := tr.TrainStep(c.tokens, c.b, c.s, c.mask)
		expectCode(t, err, c.code)
	}
	for _, bad := range []int32{64, -1} {
		b := append([]int32(nil), good...)
		b[11] = bad
		_, err := tr.TrainStep(b, 2, 8, nil)
		if e := expectCode(t, err, CodeTokenOutOfRange); e.Msg == "" {
			t.Fatal("no message")
		}
	}
	if tr.StepCount() != 1 || !sameBits(weightsProbe(t, tr), weights) {
		t.Fatal("a failed step changed the trainer")
	}
	if r, err := tr.TrainStep(good, 2, 8, nil); err != nil || r.Step != 2 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestTrain_StepFromContinuesASession(t *testing.T) {
	m := smallModel(t, 7)
	from := newTrainer(t, m, trainOptions())
	fresh := newTrainer(t, m, trainOptions())
	// 40 tokens: a multiple of the small model's NoteWindow (4).
	if 40%m.Config().NoteWindow != 0 {
		t.Fatalf("note window %d does not divide 40", m.Config().NoteWindow)
	}
	s := newSession(t, m)
	_, err := s.Feed(tokens(40, 64, 11), LogitsNone)
	must(t, err)
	before, err := s.Snapshot()
	must(t, err)

	batch := patternBatch(1, 16)
	r, err := from.TrainStepFrom([]*Session{s}, batch, 1, 16, nil)
	skipIfUnsupported(t, err, "training from sessions")
	must(t, err)
	if math.IsNaN(float64(r.Loss)) || math.IsInf(float64(r.Loss), 0) || r.Loss <= 0 ||
		r.Tokens != 15 || r.Step != 1 {
		t.Fatalf("step from a session %+v", r)
	}
	empty, err := fresh.TrainStep(batch, 1, 16, nil)
	must(t, err)
	if r.Loss == empty.Loss {
		t.Fatalf("the session's state made no difference: loss %v", r.Loss)
	}
	// The session is read, not changed.
	after, err := s.Snapshot()
	must(t, err)
	if s.Position() != 40 || !bytes.Equal(after, before) {
		t.Fatal("TrainStepFrom changed the session")
	}

	// A sessions slice that is not one per sequence is refused, and nothing changes.
	weights := weightsProbe(t, from)
	_, err = from.TrainStepFrom(nil, batch, 1, 16, nil)
	expectCode(t, err, CodeInvalidArgument)
	_, err = from.TrainStepFrom([]*Session{s, nil}, batch, 1, 16, nil)
	expectCode(t, err, CodeInvalidArgument)
	if from.StepCount() != 1 || !sameBits(weightsProbe(t, from), weights) {
		t.Fatal("a refused step changed the trainer")
	}
	// nil is the empty state: a second sequence from scratch trains on.
	if r, err := from.TrainStepFrom([]*Session{s, nil}, patternBatch(2, 16), 2, 16, nil); err != nil || r.Step != 2 {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestTrain_BadOptionsAndRates(t *testing.T) {
	m := smallModel(t, 7)
	tr := newTrainer(t, m, trainOptions())
	edits := []func(*TrainerOptions){
		func(o *TrainerOptions) { o.LearningRate = 0 },
		func(o *TrainerOptions) { o.LearningRate = float32(math.NaN()) },
		func(o *TrainerOptions) { o.LearningRate = float32(math.Inf(1)) },
		func(o *TrainerOptions) { o.Beta1 = 1 },
		func(o *TrainerOptions) { o.Beta2 = -0.1 },
		func(o *TrainerOptions) { o.Eps = 0 },
		func(o *TrainerOptions) { o.WeightDecay = -1 },
		func(o *TrainerOptions) { o.GradClip = -1 },
		func(o *TrainerOptions) { o.AccumSteps = 0 },
	}
	for i, edit := range edits {
		o := trainOptions()
		edit(o)
		bad, err := NewTrainer(m, o)
		if e := expectCode(t, err, CodeInvalidArgument); bad != nil || e.Msg == "" {
			t.Fatalf("option case %d", i)
		}
	}
	for _, lr := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		expectCode(t, tr.SetLearningRate(float32(lr)), CodeInvalidArgument)
	}
	must(t, tr.SetLearningRate(5e-3))
}

func TestTrain_FileErrors(t *testing.T) {
	dir := t.TempDir()
	m := smallModel(t, 8)
	tr := newTrainer(t, m, trainOptions())
	_, err := LoadTrainer(filepath.Join(dir, "missing.safetensors"), 1)
	expectCode(t, err, CodeIO)
	expectCode(t, tr.Save(filepath.Join(dir, "no", "dir", "t.safetensors")), CodeIO)
	expectCode(t, tr.Save("bad\x00name"), CodeInvalidArgument)
	_, err = LoadTrainer("bad\x00name", 1)
	expectCode(t, err, CodeInvalidArgument)
	path := filepath.Join(dir, "t.safetensors")
	must(t, tr.Save(path))
	// On the GPU: resumes where there is one, else a clean CodeNoDevice or
	// CodeUnsupported (a build without CUDA); on the CPU it always loads.
	if g, err := LoadTrainerOn(path, 1, DeviceCUDA); err == nil {
		g.Close()
	} else if e, ok := err.(*Error); !ok || (e.Code != CodeUnsupported && e.Code != CodeNoDevice) {
		t.Fatalf("a CUDA trainer without a GPU: %v", err)
	}
	if g, err := NewTrainer(m, &TrainerOptions{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.95,
		Eps: 1e-8, AccumSteps: 1, NThreads: 1, Device: DeviceCUDA}); err == nil {
		g.Close()
	} else if e, ok := err.(*Error); !ok || (e.Code != CodeUnsupported && e.Code != CodeNoDevice) {
		t.Fatalf("a CUDA trainer without a GPU: %v", err)
	}
	cpu, err := LoadTrainerOn(path, 1, DeviceCPU)
	must(t, err)
	must(t, cpu.Close())
	bytes, err := os.ReadFile(path)
	must(t, err)
	cut := filepath.Join(dir, "cut.safetensors")
	for _, n := range []int{0, 7, len(bytes) / 2, len(bytes) - 1} {
		must(t, os.WriteFile(cut, bytes[:n], 0o644))
		_, err := LoadTrainer(cut, 1)
		expectCode(t, err, CodeCorruptFile)
	}
	plain := filepath.Join(dir, "model.safetensors")
	must(t, m.Save(plain))
	if tr2, err := LoadTrainer(plain, 1); err == nil {
		tr2.Close()
		t.Fatal("a plain model file lacks the optimizer state")
	}
	must(t, tr.Close())
	_, err = tr.TrainStep(patternBatch(1, 4), 1, 4, nil)
	expectCode(t, err, CodeInvalidArgument)
}

func TestTrain_EvalLoss(t *testing.T) {
	m := smallModel(t, 9)
	toks := tokens(35, 64, 50)
	whole, err := m.EvalLoss(toks, 0)
	skipIfUnsupported(t, err, "evaluation")
	must(t, err)
	if whole.Tokens != 34 || whole.Loss <= 0 || math.Abs(whole.Perplexity-math.Exp(whole.Loss)) > 1e-9*whole.Perplexity {
		t.Fatalf("%+v", whole)
	}
	pieces, err := m.EvalLoss(toks, 10)
	must(t, err)
	if pieces.Tokens != 31 {
		t.Fatalf("pieces count %d targets", pieces.Tokens)
	}
	logits, err := newSession(t, m).Feed(toks, LogitsAll)
	must(t, err)
	nll := 0.0
	for i := 0; i < 34; i++ {
		row := logits[i*64 : (i+1)*64]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, float64(x))
		}
		sum := 0.0
		for _, x := range row {
			sum += math.Exp(float64(x) - mx)
		}
		nll += mx + math.Log(sum) - float64(row[toks[i+1]])
	}
	if math.Abs(nll/34-whole.Loss) > 1e-4 {
		t.Fatalf("loss %g vs logits %g", whole.Loss, nll/34)
	}
	_, err = m.EvalLoss(toks[:1], 0)
	expectCode(t, err, CodeInvalidArgument)
	_, err = m.EvalLoss(nil, 0)
	expectCode(t, err, CodeInvalidArgument)
	_, err = m.EvalLoss([]int32{1, 64, 2}, 0)
	expectCode(t, err, CodeTokenOutOfRange)
	_, err = m.EvalLoss(toks, -1)
	expectCode(t, err, CodeInvalidArgument)
}

func TestTrain_EvalFidelity(t *testing.T) {
	m := smallModel(t, 10)
	f, err := m.EvalFidelity(tokens(60, 64, 51))
	skipIfUnsupported(t, err, "evaluation")
	must(t, err)
	if math.IsNaN(f.ETMF) || f.ETMF < -1 || f.ETMF > 1 || math.IsNaN(f.ECLMF[0]) ||
		!math.IsNaN(f.ECLMF[1]) || !math.IsNaN(f.ECLMF[2]) || f.Tokens == 0 {
		t.Fatalf("%+v", f)
	}
	_, err = m.EvalFidelity([]int32{3})
	expectCode(t, err, CodeInvalidArgument)
	_, err = m.EvalFidelity([]int32{3, 64})
	expectCode(t, err, CodeTokenOutOfRange)
}

func TestTrain_DataParallelWithoutGPUs(t *testing.T) {
	m := smallModel(t, 9)
	tr := newTrainer(t, m, trainOptions())
	if tr.WorldSize() != 1 {
		t.Fatal("world size before Join")
	}
	// A CPU trainer cannot join; it trains on as before.
	expectCode(t, tr.Join(DataParallelOptions{WorldSize: 1, Device: -1}), CodeUnsupported)
	expectCode(t, tr.Join(DataParallelOptions{WorldSize: 2, Rank: 2}), CodeInvalidArgument)
	_, err := tr.TrainStep(tokens(24, 64, 1), 2, 12, nil)
	must(t, err)

	var id NCCLID
	for i := range id {
		id[i] = byte(i * 7)
	}
	back, err := NCCLIDFromHex(id.Hex())
	must(t, err)
	if back != id || len(id.Hex()) != 256 {
		t.Fatal("hex round trip")
	}
	_, err = NCCLIDFromHex("zz")
	expectCode(t, err, CodeInvalidArgument)
	path := filepath.Join(t.TempDir(), "run.id")
	_, err = ReadNCCLIDFile(path, 20*time.Millisecond)
	expectCode(t, err, CodeIO)
	must(t, id.WriteFile(path))
	back, err = ReadNCCLIDFile(path, time.Second)
	must(t, err)
	if back != id {
		t.Fatal("file round trip")
	}
	if _, err := NewNCCLID(); err != nil {
		if e, ok := err.(*Error); !ok || (e.Code != CodeUnsupported && e.Code != CodeComm) {
			t.Fatalf("NewNCCLID: %v", err)
		}
	}
}

func TestTrain_StepBatchWithRecurrentResets(t *testing.T) {
	m := smallModel(t, 7)
	plain := newTrainer(t, m, trainOptions())
	resets := newTrainer(t, m, trainOptions())
	batch := patternBatch(2, 16)
	none := make([]byte, len(batch))

	// No byte set: the same call as TrainStep, bit for bit.
	want, err := plain.TrainStep(batch, 2, 16, nil)
	must(t, err)
	got, err := resets.TrainStepBatch(&TrainBatch{Tokens: batch, Batch: 2, SeqLen: 16,
		RecurrentResets: none})
	skipIfUnsupported(t, err, "recurrent resets")
	must(t, err)
	if got != want || !sameBits(weightsProbe(t, resets), weightsProbe(t, plain)) {
		t.Fatalf("no resets %+v, TrainStep %+v", got, want)
	}

	// A reset in the middle of the first sequence changes its loss.
	mid := make([]byte, len(batch))
	mid[8] = 1
	want, err = plain.TrainStep(batch, 2, 16, nil)
	must(t, err)
	got, err = resets.TrainStepBatch(&TrainBatch{Tokens: batch, Batch: 2, SeqLen: 16,
		RecurrentResets: mid})
	must(t, err)
	if got.Step != 2 || got.Tokens != want.Tokens || got.Loss == want.Loss {
		t.Fatalf("a reset made no difference: %+v against %+v", got, want)
	}

	// Resets of the wrong length, or no batch at all, are refused and change nothing.
	weights := weightsProbe(t, resets)
	_, err = resets.TrainStepBatch(&TrainBatch{Tokens: batch, Batch: 2, SeqLen: 16,
		RecurrentResets: mid[:31]})
	expectCode(t, err, CodeInvalidArgument)
	_, err = resets.TrainStepBatch(nil)
	expectCode(t, err, CodeInvalidArgument)
	if resets.StepCount() != 2 || !sameBits(weightsProbe(t, resets), weights) {
		t.Fatal("a refused step changed the trainer")
	}
}

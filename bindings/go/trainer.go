package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"

// The batch struct is built on the C side: cgo may not store Go pointers
// (the caller's slices) in memory it passes to C, but may pass them as
// arguments.
static mm_status go_train_step_batch(mm_trainer *trainer, const int32_t *tokens, size_t batch,
                                     size_t seq_len, const uint8_t *loss_mask,
                                     const mm_session *const *sessions,
                                     const uint8_t *recurrent_resets, mm_train_result *result) {
  mm_train_batch in;
  mm_status st = mm_train_batch_init(&in, sizeof in);
  if (st != MM_OK) return st;
  in.tokens = tokens;
  in.batch = batch;
  in.seq_len = seq_len;
  in.loss_mask = loss_mask;
  in.sessions = sessions;
  in.recurrent_resets = recurrent_resets;
  return mm_train_step_batch(trainer, &in, result);
}
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// TrainerOptions are the AdamW and accumulation settings
// (mm_trainer_options). Start from DefaultTrainerOptions.
type TrainerOptions struct {
	LearningRate        float32
	Beta1               float32
	Beta2               float32
	Eps                 float32
	WeightDecay         float32 // decoupled, on matrices and embeddings only
	GradClip            float32 // clip the global gradient L2 norm; 0 = off
	AccumSteps          uint32  // TrainStep calls per optimizer update
	NThreads            int32   // 0 = OMP_NUM_THREADS, else every CPU the process may use
	NoteStraightThrough bool    // the straight-through estimator of note selection
	Device              Device  // DeviceCUDA: the whole step on the GPU (CodeNoDevice without one)
	Math                Math    // MathTF32: products on TF32 tensor cores; MathBF16 refused
}

// DefaultTrainerOptions is the library's defaults (the header's documented
// values where the library has no training).
func DefaultTrainerOptions() TrainerOptions {
	var c C.mm_trainer_options
	if C.mm_trainer_options_init(&c, C.sizeof_mm_trainer_options) != C.MM_OK {
		return TrainerOptions{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8,
			WeightDecay: 0.1, GradClip: 1.0, AccumSteps: 1}
	}
	return TrainerOptions{
		LearningRate:        float32(c.learning_rate),
		Beta1:               float32(c.beta1),
		Beta2:               float32(c.beta2),
		Eps:                 float32(c.eps),
		WeightDecay:         float32(c.weight_decay),
		GradClip:            float32(c.grad_clip),
		AccumSteps:          uint32(c.accum_steps),
		NThreads:            int32(c.n_threads),
		NoteStraightThrough: bool(c.note_straight_through),
		Device:              Device(c.device),
		Math:                Math(c.math),
	}
}

func (o *TrainerOptions) toC() C.mm_trainer_options {
	var c C.mm_trainer_options
	c.struct_size = C.sizeof_mm_trainer_options
	c.learning_rate = C.float(o.LearningRate)
	c.beta1 = C.float(o.Beta1)
	c.beta2 = C.float(o.Beta2)
	c.eps = C.float(o.Eps)
	c.weight_decay = C.float(o.WeightDecay)
	c.grad_clip = C.float(o.GradClip)
	c.accum_steps = C.uint32_t(o.AccumSteps)
	c.n_threads = C.int32_t(o.NThreads)
	c.note_straight_through = C.bool(o.NoteStraightThrough)
	c.device = C.int32_t(o.Device)
	c.math = C.int32_t(o.Math)
	return c
}

// TrainResult is what one TrainStep or TrainStepFrom did (mm_train_result).
type TrainResult struct {
	Loss     float32 // mean cross-entropy (nats) over this call's targets
	GradNorm float32 // global gradient norm before clipping; meaningful when Updated
	Tokens   uint64  // targets counted
	Updated  bool    // this call completed an accumulation and updated the weights
	Step     uint64  // optimizer updates so far
}

// Trainer trains a copy of a model's weights with AdamW. Use it from one
// goroutine at a time. It does not depend on the model it started from.
type Trainer struct {
	p      *C.mm_trainer
	nLayer int
}

func wrapTrainer(p *C.mm_trainer, nLayer int) *Trainer {
	t := &Trainer{p: p, nLayer: nLayer}
	runtime.SetFinalizer(t, (*Trainer).Close)
	return t
}

// NewTrainer starts training from the model's weights. opts nil = defaults.
func NewTrainer(m *Model, opts *TrainerOptions) (*Trainer, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	o := DefaultTrainerOptions()
	if opts != nil {
		o = *opts
	}
	co := o.toC()
	mp, err := m.use()
	if err != nil {
		return nil, err
	}
	defer m.done()
	var out *C.mm_trainer
	if err := threadCall(func() C.mm_status { return C.mm_trainer_create(&out, mp, &co) }); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, newError(CodeInternal, "the library returned no trainer")
	}
	return wrapTrainer(out, int(m.cfg.NLayer)), nil
}

// LoadTrainer loads a trainer written by Save; training continues exactly
// where it stopped. nThreads 0 = OMP_NUM_THREADS, else every CPU the process may use.
func LoadTrainer(path string, nThreads int32) (*Trainer, error) {
	return LoadTrainerOn(path, nThreads, DeviceCPU)
}

// LoadTrainerOn is LoadTrainer continuing on device: a trainer saved on
// either device resumes on either (mm_trainer_load_on).
func LoadTrainerOn(path string, nThreads int32, device Device) (*Trainer, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	cp, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer freeC(cp)
	var out *C.mm_trainer
	if err := threadCall(func() C.mm_status {
		return C.mm_trainer_load_on(&out, cp, C.int32_t(nThreads), C.int32_t(device))
	}); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, newError(CodeInternal, "the library returned no trainer")
	}
	t := wrapTrainer(out, 0)
	// The C API has no call giving a trainer's configuration; the layer
	// count (for KeepFraction) comes from one exported model.
	m, err := t.ExportModel(nil)
	if err != nil {
		t.Close()
		return nil, err
	}
	t.nLayer = int(m.cfg.NLayer)
	m.Close()
	return t, nil
}

// Close frees the trainer. Closing twice is a no-op.
func (t *Trainer) Close() error {
	if t.p == nil {
		return nil
	}
	C.mm_trainer_free(t.p)
	t.p = nil
	runtime.SetFinalizer(t, nil)
	return nil
}

func (t *Trainer) check(st C.mm_status) error {
	if st == C.MM_OK {
		return nil
	}
	return newError(int(st), C.GoString(C.mm_trainer_last_error(t.p)))
}

// TrainStep runs one training call on batch sequences of seqLen tokens
// (row-major). mask, if not nil, holds one byte per token: non-zero makes
// the token a target (entries at t = 0 are ignored). On error nothing
// changes.
func (t *Trainer) TrainStep(tokens []int32, batch, seqLen int, mask []byte) (TrainResult, error) {
	return t.TrainStepBatch(&TrainBatch{Tokens: tokens, Batch: batch, SeqLen: seqLen, LossMask: mask})
}

// TrainStepFrom is TrainStep where sequence b continues the stream of
// sessions[b] instead of starting from empty state (a nil entry: empty
// state): its forward starts from that session's state and its reads see
// the session's pools (mm_train_step_from). The sessions are only read,
// never changed (feed a session the sequence to advance it); their state is
// a constant of the gradient, and no other goroutine may use them during
// the call. len(sessions) must equal batch, and each session must run on a
// model of the trainer's configuration at a position that is a multiple of
// NoteWindow (else CodeInvalidArgument). A trainer on a GPU gives
// CodeUnsupported. On error nothing changes.
func (t *Trainer) TrainStepFrom(sessions []*Session, tokens []int32, batch, seqLen int,
	mask []byte) (TrainResult, error) {
	if len(sessions) != batch {
		return TrainResult{}, invalid("%d sessions for a batch of %d sequences", len(sessions), batch)
	}
	if sessions == nil {
		sessions = []*Session{} // batch 0: still a call from sessions
	}
	return t.TrainStepBatch(&TrainBatch{Tokens: tokens, Batch: batch, SeqLen: seqLen,
		LossMask: mask, Sessions: sessions})
}

// TrainBatch is the input of one training call (mm_train_batch): Batch
// sequences of SeqLen token ids, row-major, and what else the call may take.
type TrainBatch struct {
	Tokens   []int32
	Batch    int
	SeqLen   int
	LossMask []byte     // nil, or a byte per token: non-zero makes it a target (t = 0 ignored)
	Sessions []*Session // nil, or one per sequence: the stream it continues (nil entry: empty state)
	// RecurrentResets is nil, or a byte per token: non-zero at (b, t) zeroes
	// sequence b's recurrent state (every layer's scan state and conv
	// inputs) before position t while its notes and pools go on, the
	// function a session computes with ResetRecurrent between feeding
	// positions < t and >= t. The answer's gradient then reaches the note
	// block only through the notes. CPU trainers only.
	RecurrentResets []byte
}

// TrainStepBatch runs one training call on the inputs b describes
// (mm_train_step_batch): TrainStep, TrainStepFrom (b.Sessions), and
// recurrent resets. A trainer on a GPU gives CodeUnsupported for resets and
// for sessions. On error nothing changes.
func (t *Trainer) TrainStepBatch(b *TrainBatch) (TrainResult, error) {
	if t.p == nil {
		return TrainResult{}, closedError("trainer")
	}
	if b == nil {
		return TrainResult{}, invalid("no batch")
	}
	batch, seqLen := b.Batch, b.SeqLen
	if batch < 0 || seqLen < 0 || (seqLen > 0 && batch > int(^uint(0)>>1)/seqLen) {
		return TrainResult{}, invalid("batch %d x seq_len %d is not a valid shape", batch, seqLen)
	}
	n := batch * seqLen
	if len(b.Tokens) != n {
		return TrainResult{}, invalid("%d tokens for a batch of %d x %d = %d", len(b.Tokens), batch, seqLen, n)
	}
	bytesPtr := func(what string, v []byte) (*C.uint8_t, error) {
		if v == nil {
			return nil, nil
		}
		if len(v) != n {
			return nil, invalid("%s of %d bytes for %d tokens", what, len(v), n)
		}
		if n == 0 {
			return nil, nil
		}
		return (*C.uint8_t)(unsafe.Pointer(&v[0])), nil
	}
	maskPtr, err := bytesPtr("a loss mask", b.LossMask)
	if err != nil {
		return TrainResult{}, err
	}
	resetsPtr, err := bytesPtr("recurrent resets", b.RecurrentResets)
	if err != nil {
		return TrainResult{}, err
	}
	// C pointers in Go memory: allowed, and C reads them during the call only.
	var handles []*C.mm_session
	var hp **C.mm_session
	if b.Sessions != nil {
		if len(b.Sessions) != batch {
			return TrainResult{}, invalid("%d sessions for a batch of %d sequences", len(b.Sessions), batch)
		}
		handles = make([]*C.mm_session, len(b.Sessions)+1) // never empty: a non-NULL array
		for i, s := range b.Sessions {
			if s == nil {
				continue // empty state
			}
			if s.p == nil {
				return TrainResult{}, invalid("session %d is closed", i)
			}
			handles[i] = s.p
		}
		hp = &handles[0]
	}
	var r C.mm_train_result
	r.struct_size = C.sizeof_mm_train_result
	st := C.go_train_step_batch(t.p, tokensPtr(b.Tokens), C.size_t(batch), C.size_t(seqLen),
		maskPtr, hp, resetsPtr, &r)
	err = t.check(st)
	runtime.KeepAlive(t)
	for _, s := range b.Sessions {
		runtime.KeepAlive(s)
	}
	runtime.KeepAlive(b)
	if err != nil {
		return TrainResult{}, err
	}
	return TrainResult{
		Loss:     float32(r.loss),
		GradNorm: float32(r.grad_norm),
		Tokens:   uint64(r.tokens),
		Updated:  bool(r.updated),
		Step:     uint64(r.step),
	}, nil
}

// SetLearningRate sets the learning rate of the following updates.
func (t *Trainer) SetLearningRate(lr float32) error {
	if t.p == nil {
		return closedError("trainer")
	}
	err := t.check(C.mm_trainer_set_learning_rate(t.p, C.float(lr)))
	runtime.KeepAlive(t)
	return err
}

// StepCount is the number of optimizer updates applied so far.
func (t *Trainer) StepCount() uint64 {
	if t.p == nil {
		return 0
	}
	defer runtime.KeepAlive(t)
	return uint64(C.mm_trainer_step_count(t.p))
}

// KeepFraction is, per layer, the fraction of the note windows closed by the
// last TrainStep whose score passed the threshold (0 = a dead layer).
func (t *Trainer) KeepFraction() ([]float32, error) {
	if t.p == nil {
		return nil, closedError("trainer")
	}
	out := make([]float32, t.nLayer)
	err := t.check(C.mm_trainer_keep_fraction(t.p, floatsPtr(out), C.size_t(len(out))))
	runtime.KeepAlive(t)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ExportModel returns a new immutable model of the current weights.
// opts nil = defaults.
func (t *Trainer) ExportModel(opts *ModelOptions) (*Model, error) {
	if t.p == nil {
		return nil, closedError("trainer")
	}
	co := modelOptionsToC(opts)
	var out *C.mm_model
	err := t.check(C.mm_trainer_export_model(t.p, &co, &out))
	runtime.KeepAlive(t)
	if err != nil {
		return nil, err
	}
	return wrapModel(out)
}

// Save writes the whole trainer to path, atomically.
func (t *Trainer) Save(path string) error {
	if t.p == nil {
		return closedError("trainer")
	}
	cp, err := cPath(path)
	if err != nil {
		return err
	}
	defer freeC(cp)
	err = t.check(C.mm_trainer_save(t.p, cp))
	runtime.KeepAlive(t)
	return err
}

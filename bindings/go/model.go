package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// PoolPolicy is how a full note pool chooses what to keep.
type PoolPolicy int32

const (
	PoolPriority PoolPolicy = C.MM_POOL_PRIORITY // keep the highest-scored notes
	PoolFIFO     PoolPolicy = C.MM_POOL_FIFO     // keep the most recent notes
)

// Fusion is how pool reads join the residual stream.
type Fusion int32

const (
	FusionWeighted Fusion = C.MM_FUSION_WEIGHTED // learned per-channel alpha
	FusionResidual Fusion = C.MM_FUSION_RESIDUAL // alpha = 1
	FusionGated    Fusion = C.MM_FUSION_GATED    // alpha = sigmoid(fuse.weight * a)
)

// Device is where a model computes.
type Device int32

const (
	DeviceCPU  Device = C.MM_DEVICE_CPU
	DeviceCUDA Device = C.MM_DEVICE_CUDA // sessions and trainers on the GPU; CodeNoDevice without a GPU, CodeUnsupported without CUDA
)

// Dtype is how weights are stored.
type Dtype int32

const (
	DtypeF32  Dtype = C.MM_DTYPE_F32
	DtypeBF16 Dtype = C.MM_DTYPE_BF16 // matrices in bfloat16 (inference)
)

// Math is how matrix products are computed (mm_math).
type Math int32

const (
	MathFP32 Math = C.MM_MATH_FP32 // fp32 arithmetic on every device
	// MathTF32: on a GPU, fp32 products may use TF32 tensor cores (~1e-3
	// relative error, several times faster at many rows); the CPU ignores it.
	MathTF32 Math = C.MM_MATH_TF32
	// MathBF16: on a GPU, the mixers' in and out projections and the LM
	// head in bf16 on the device (~1e-2 relative error); models only (a
	// trainer refuses it); the CPU ignores it.
	MathBF16 Math = C.MM_MATH_BF16
)

// Config is a model's shape and memory knobs (mm_model_config; the header
// and README describe every field). Start from DefaultConfig.
type Config struct {
	VocabSize        uint32
	DModel           uint32
	NLayer           uint32
	DState           uint32
	DConv            uint32
	Expand           uint32
	DtRank           uint32 // 0 = ceil(DModel/16); Model.Config reports the resolved value
	NoteWindow       uint32
	SummaryDim       uint32
	PoolCapacity     uint32 // 0 = no memory: plain Mamba
	PoolPolicy       PoolPolicy
	NoteThreshold    float32
	AttnHeads        uint32
	GateThreshold    float32
	CrossLayerPeriod uint32 // 0 = no cross-layer reads
	CrossLayerSpan   uint32
	Fusion           Fusion
	NormEps          float32
	TieEmbeddings    bool
}

// DefaultConfig is the library's default configuration.
func DefaultConfig() Config {
	var c C.mm_model_config
	C.mm_model_config_init(&c, C.sizeof_mm_model_config)
	return configFromC(&c)
}

func configFromC(c *C.mm_model_config) Config {
	return Config{
		VocabSize:        uint32(c.vocab_size),
		DModel:           uint32(c.d_model),
		NLayer:           uint32(c.n_layer),
		DState:           uint32(c.d_state),
		DConv:            uint32(c.d_conv),
		Expand:           uint32(c.expand),
		DtRank:           uint32(c.dt_rank),
		NoteWindow:       uint32(c.note_window),
		SummaryDim:       uint32(c.summary_dim),
		PoolCapacity:     uint32(c.pool_capacity),
		PoolPolicy:       PoolPolicy(c.pool_policy),
		NoteThreshold:    float32(c.note_threshold),
		AttnHeads:        uint32(c.attn_heads),
		GateThreshold:    float32(c.gate_threshold),
		CrossLayerPeriod: uint32(c.cross_layer_period),
		CrossLayerSpan:   uint32(c.cross_layer_span),
		Fusion:           Fusion(c.fusion),
		NormEps:          float32(c.norm_eps),
		TieEmbeddings:    c.tie_embeddings != 0,
	}
}

func (cfg *Config) toC() C.mm_model_config {
	var c C.mm_model_config
	C.mm_model_config_init(&c, C.sizeof_mm_model_config)
	c.vocab_size = C.uint32_t(cfg.VocabSize)
	c.d_model = C.uint32_t(cfg.DModel)
	c.n_layer = C.uint32_t(cfg.NLayer)
	c.d_state = C.uint32_t(cfg.DState)
	c.d_conv = C.uint32_t(cfg.DConv)
	c.expand = C.uint32_t(cfg.Expand)
	c.dt_rank = C.uint32_t(cfg.DtRank)
	c.note_window = C.uint32_t(cfg.NoteWindow)
	c.summary_dim = C.uint32_t(cfg.SummaryDim)
	c.pool_capacity = C.uint32_t(cfg.PoolCapacity)
	c.pool_policy = C.int32_t(cfg.PoolPolicy)
	c.note_threshold = C.float(cfg.NoteThreshold)
	c.attn_heads = C.uint32_t(cfg.AttnHeads)
	c.gate_threshold = C.float(cfg.GateThreshold)
	c.cross_layer_period = C.uint32_t(cfg.CrossLayerPeriod)
	c.cross_layer_span = C.uint32_t(cfg.CrossLayerSpan)
	c.fusion = C.int32_t(cfg.Fusion)
	c.norm_eps = C.float(cfg.NormEps)
	c.tie_embeddings = 0
	if cfg.TieEmbeddings {
		c.tie_embeddings = 1
	}
	return c
}

// ModelOptions is how a model runs (mm_model_options). A nil
// *ModelOptions means the defaults: CPU, float32, OpenMP's default thread count.
type ModelOptions struct {
	Device      Device
	WeightDtype Dtype
	NThreads    int32 // threads used by calls on this model; 0 = OMP_NUM_THREADS, else every CPU the process may use
	Math        Math  // how matrix products are computed; MathFP32 by default
}

func modelOptionsToC(o *ModelOptions) C.mm_model_options {
	var c C.mm_model_options
	C.mm_model_options_init(&c, C.sizeof_mm_model_options)
	if o != nil {
		c.device = C.int32_t(o.Device)
		c.weight_dtype = C.int32_t(o.WeightDtype)
		c.n_threads = C.int32_t(o.NThreads)
		c.math = C.int32_t(o.Math)
	}
	return c
}

// Model is an immutable model, safe for concurrent use by any number of
// goroutines and sessions.
type Model struct {
	mu       sync.RWMutex // guards p against Close; calls take it shared
	p        *C.mm_model
	cfg      Config
	sessions int64 // open sessions (atomic)
}

// wrapModel takes ownership of a model the library created.
func wrapModel(p *C.mm_model) (*Model, error) {
	if p == nil {
		return nil, newError(CodeInternal, "the library returned no model")
	}
	var c C.mm_model_config
	c.struct_size = C.sizeof_mm_model_config
	if err := threadCall(func() C.mm_status { return C.mm_model_get_config(p, &c) }); err != nil {
		C.mm_model_free(p)
		return nil, err
	}
	m := &Model{p: p, cfg: configFromC(&c)}
	runtime.SetFinalizer(m, (*Model).finalize)
	return m, nil
}

func (m *Model) finalize() {
	if m.p != nil {
		C.mm_model_free(m.p)
		m.p = nil
	}
}

// NewModel creates a model with fresh weights drawn from seed.
func NewModel(cfg Config, seed uint64, opts *ModelOptions) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	cc := cfg.toC()
	co := modelOptionsToC(opts)
	var out *C.mm_model
	if err := threadCall(func() C.mm_status {
		return C.mm_model_create(&out, &cc, C.uint64_t(seed), &co)
	}); err != nil {
		return nil, err
	}
	return wrapModel(out)
}

// LoadModel loads a model saved by Save (safetensors, configuration inside).
func LoadModel(path string, opts *ModelOptions) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	cp, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer freeC(cp)
	co := modelOptionsToC(opts)
	var out *C.mm_model
	if err := threadCall(func() C.mm_status { return C.mm_model_load(&out, cp, &co) }); err != nil {
		return nil, err
	}
	return wrapModel(out)
}

// ImportMamba imports a Mamba v1 checkpoint in the reference naming: the
// shapes come from the file, the memory knobs from memory, and the memory
// weights are drawn from seed.
func ImportMamba(path string, memory Config, seed uint64, opts *ModelOptions) (*Model, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	cp, err := cPath(path)
	if err != nil {
		return nil, err
	}
	defer freeC(cp)
	cc := memory.toC()
	co := modelOptionsToC(opts)
	var out *C.mm_model
	if err := threadCall(func() C.mm_status {
		return C.mm_model_import_mamba(&out, cp, &cc, C.uint64_t(seed), &co)
	}); err != nil {
		return nil, err
	}
	return wrapModel(out)
}

// use returns the C handle with m.mu held shared; the caller calls done.
func (m *Model) use() (*C.mm_model, error) {
	m.mu.RLock()
	if m.p == nil {
		m.mu.RUnlock()
		return nil, closedError("model")
	}
	return m.p, nil
}

func (m *Model) done() {
	m.mu.RUnlock()
	runtime.KeepAlive(m)
}

// Save writes the model to path (safetensors), atomically.
func (m *Model) Save(path string) error {
	cp, err := cPath(path)
	if err != nil {
		return err
	}
	defer freeC(cp)
	p, err := m.use()
	if err != nil {
		return err
	}
	defer m.done()
	return threadCall(func() C.mm_status { return C.mm_model_save(p, cp) })
}

// Config is the model's resolved configuration.
func (m *Model) Config() Config { return m.cfg }

// VocabSize is the number of token ids (and of logits per position).
func (m *Model) VocabSize() int { return int(m.cfg.VocabSize) }

// ParameterCount is the number of parameters (scalars); 0 once closed.
func (m *Model) ParameterCount() uint64 {
	p, err := m.use()
	if err != nil {
		return 0
	}
	defer m.done()
	return uint64(C.mm_model_parameter_count(p))
}

// Fingerprint is a hash of the configuration and weights; snapshots
// restore only onto a model with the same one. 0 once closed.
func (m *Model) Fingerprint() uint64 {
	p, err := m.use()
	if err != nil {
		return 0
	}
	defer m.done()
	return uint64(C.mm_model_fingerprint(p))
}

// Close frees the model. It refuses (CodeInvalidArgument) while sessions
// created from it are open. Closing twice is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return nil
	}
	if n := atomic.LoadInt64(&m.sessions); n > 0 {
		return newError(CodeInvalidArgument, fmt.Sprintf("the model has %d open sessions", n))
	}
	C.mm_model_free(m.p)
	m.p = nil
	runtime.SetFinalizer(m, nil)
	return nil
}

package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import "runtime"

// EvalResult is a mean next-token loss (mm_eval_result).
type EvalResult struct {
	Loss       float64 // mean next-token cross-entropy, nats
	Perplexity float64
	Tokens     uint64 // targets counted
}

// Fidelity holds the memory measures (mm_fidelity).
type Fidelity struct {
	ETMF   float64
	ECLMF  [3]float64 // G = 2, 5, 10; NaN where G > NLayer
	Tokens uint64     // positions used
}

// EvalLoss is the mean next-token loss over tokens, read in consecutive
// pieces of context tokens from an empty state (0 = one stream).
func (m *Model) EvalLoss(tokens []int32, context int) (EvalResult, error) {
	if context < 0 {
		return EvalResult{}, invalid("context %d < 0", context)
	}
	mp, err := m.use()
	if err != nil {
		return EvalResult{}, err
	}
	defer m.done()
	var r C.mm_eval_result
	r.struct_size = C.sizeof_mm_eval_result
	err = threadCall(func() C.mm_status {
		return C.mm_eval_loss(mp, tokensPtr(tokens), C.size_t(len(tokens)), C.size_t(context), &r)
	})
	runtime.KeepAlive(tokens)
	if err != nil {
		return EvalResult{}, err
	}
	return EvalResult{Loss: float64(r.loss), Perplexity: float64(r.perplexity), Tokens: uint64(r.tokens)}, nil
}

// EvalFidelity computes ETMF and ECLMF over one stream (holding all hidden
// states: meant for excerpts).
func (m *Model) EvalFidelity(tokens []int32) (Fidelity, error) {
	mp, err := m.use()
	if err != nil {
		return Fidelity{}, err
	}
	defer m.done()
	var r C.mm_fidelity
	r.struct_size = C.sizeof_mm_fidelity
	err = threadCall(func() C.mm_status {
		return C.mm_eval_fidelity(mp, tokensPtr(tokens), C.size_t(len(tokens)), &r)
	})
	runtime.KeepAlive(tokens)
	if err != nil {
		return Fidelity{}, err
	}
	return Fidelity{
		ETMF:   float64(r.etmf),
		ECLMF:  [3]float64{float64(r.eclmf[0]), float64(r.eclmf[1]), float64(r.eclmf[2])},
		Tokens: uint64(r.tokens),
	}, nil
}

package memmamba

/*
#include "memmamba/memmamba.h"
*/
import "C"

// structSizes is the size cgo gives each struct of the header (the tests
// compare them with the C compiler's).
func structSizes() map[string]int {
	return map[string]int{
		"mm_model_config":    C.sizeof_mm_model_config,
		"mm_model_options":   C.sizeof_mm_model_options,
		"mm_session_options": C.sizeof_mm_session_options,
		"mm_snapshot_info":   C.sizeof_mm_snapshot_info,
		"mm_trainer_options": C.sizeof_mm_trainer_options,
		"mm_train_result":    C.sizeof_mm_train_result,
		"mm_eval_result":     C.sizeof_mm_eval_result,
		"mm_fidelity":        C.sizeof_mm_fidelity,
		"mm_sample_options":  C.sizeof_mm_sample_options,
		"mm_train_batch":     C.sizeof_mm_train_batch,
	}
}

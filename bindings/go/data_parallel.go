package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import (
	"runtime"
	"strings"
	"time"
	"unsafe"
)

// NCCLID identifies a data-parallel group: made by one rank (NewNCCLID) and
// handed to every rank by the caller (a file, an environment variable as
// Hex, or its own channel).
type NCCLID [C.MM_NCCL_ID_BYTES]byte

// NewNCCLID makes a new id through NCCL (CodeUnsupported without the CUDA
// backend or NCCL).
func NewNCCLID() (NCCLID, error) {
	var id NCCLID
	err := threadCall(func() C.mm_status {
		return C.mm_nccl_id_create((*C.uint8_t)(unsafe.Pointer(&id[0])))
	})
	return id, err
}

// Hex is the id as 256 lowercase hex digits.
func (id NCCLID) Hex() string {
	var buf [2*C.MM_NCCL_ID_BYTES + 1]C.char
	C.mm_nccl_id_to_hex((*C.uint8_t)(unsafe.Pointer(&id[0])), &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}

// NCCLIDFromHex parses Hex's text (CodeInvalidArgument for anything else).
func NCCLIDFromHex(hex string) (NCCLID, error) {
	var id NCCLID
	if strings.IndexByte(hex, 0) >= 0 {
		return id, invalid("the hex text contains a NUL byte")
	}
	ch := C.CString(hex)
	defer freeC(ch)
	err := threadCall(func() C.mm_status {
		return C.mm_nccl_id_from_hex((*C.uint8_t)(unsafe.Pointer(&id[0])), ch)
	})
	return id, err
}

// WriteFile writes the id to path atomically (a reader never sees half).
func (id NCCLID) WriteFile(path string) error {
	cp, err := cPath(path)
	if err != nil {
		return err
	}
	defer freeC(cp)
	return threadCall(func() C.mm_status {
		return C.mm_nccl_id_write_file(cp, (*C.uint8_t)(unsafe.Pointer(&id[0])))
	})
}

// ReadNCCLIDFile reads an id written by WriteFile, waiting up to timeout for
// the file to appear (CodeIO after that).
func ReadNCCLIDFile(path string, timeout time.Duration) (NCCLID, error) {
	var id NCCLID
	cp, err := cPath(path)
	if err != nil {
		return id, err
	}
	defer freeC(cp)
	ms := timeout.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > int64(^uint32(0)) {
		ms = int64(^uint32(0))
	}
	err = threadCall(func() C.mm_status {
		return C.mm_nccl_id_read_file((*C.uint8_t)(unsafe.Pointer(&id[0])), cp, C.uint32_t(ms))
	})
	return id, err
}

// DataParallelOptions place a trainer in a data-parallel group
// (mm_data_parallel_options).
type DataParallelOptions struct {
	WorldSize uint32 // trainers in the group, one GPU each
	Rank      uint32 // this trainer's place, 0 .. WorldSize-1
	Device    int32  // the CUDA device ordinal; -1 = Rank
	ID        NCCLID // the same on every rank
}

// Join makes the trainer one rank of a data-parallel group (collective:
// returns once every rank has joined). From then on each TrainStep sums the
// ranks' gradients and every rank applies the same update; the result
// reports the group's loss and targets. A trainer on DeviceCUDA only
// (CodeUnsupported otherwise), between updates, once.
func (t *Trainer) Join(o DataParallelOptions) error {
	if t.p == nil {
		return closedError("trainer")
	}
	var c C.mm_data_parallel_options
	C.mm_data_parallel_options_init(&c, C.sizeof_mm_data_parallel_options)
	c.world_size = C.uint32_t(o.WorldSize)
	c.rank = C.uint32_t(o.Rank)
	c.device = C.int32_t(o.Device)
	for i := range o.ID {
		c.nccl_id[i] = C.uint8_t(o.ID[i])
	}
	err := t.check(C.mm_trainer_join(t.p, &c))
	runtime.KeepAlive(t)
	return err
}

// WorldSize is the size of the trainer's data-parallel group (1 before Join).
func (t *Trainer) WorldSize() int {
	if t.p == nil {
		return 1
	}
	defer runtime.KeepAlive(t)
	return int(C.mm_trainer_world_size(t.p))
}

package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// SnapshotInfo is what a snapshot says about itself (mm_snapshot_info),
// after the same complete checks a restore runs (less the model).
type SnapshotInfo struct {
	FormatVersion    uint32
	Position         uint64 // tokens the stream had consumed
	ModelFingerprint uint64 // Model.Fingerprint of its model
	NLayer           uint32
	DModel           uint32
	DInner           uint32
	DState           uint32
	DConv            uint32
	SummaryDim       uint32
	NoteWindow       uint32
	PoolCapacity     uint32
	PoolPolicy       PoolPolicy
	NotesTotal       uint32 // notes held, all layers together
	StateBytes       uint64 // bytes of state it carries
}

// PoolFill is the notes held over the notes possible (0 without memory).
func (i SnapshotInfo) PoolFill() float64 {
	slots := float64(i.NLayer) * float64(i.PoolCapacity)
	if slots == 0 {
		return 0
	}
	return float64(i.NotesTotal) / slots
}

func snapshotInfoFromC(c *C.mm_snapshot_info) SnapshotInfo {
	return SnapshotInfo{
		FormatVersion:    uint32(c.format_version),
		Position:         uint64(c.position),
		ModelFingerprint: uint64(c.model_fingerprint),
		NLayer:           uint32(c.n_layer),
		DModel:           uint32(c.d_model),
		DInner:           uint32(c.d_inner),
		DState:           uint32(c.d_state),
		DConv:            uint32(c.d_conv),
		SummaryDim:       uint32(c.summary_dim),
		NoteWindow:       uint32(c.note_window),
		PoolCapacity:     uint32(c.pool_capacity),
		PoolPolicy:       PoolPolicy(c.pool_policy),
		NotesTotal:       uint32(c.notes_total),
		StateBytes:       uint64(c.state_bytes),
	}
}

// InspectSnapshot checks the snapshot data and describes it.
func InspectSnapshot(data []byte) (SnapshotInfo, error) {
	var info C.mm_snapshot_info
	C.mm_snapshot_info_init(&info, C.sizeof_mm_snapshot_info)
	var one [1]byte
	p := unsafe.Pointer(&one[0])
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	err := threadCall(func() C.mm_status {
		return C.mm_snapshot_inspect(p, C.size_t(len(data)), &info)
	})
	runtime.KeepAlive(data)
	runtime.KeepAlive(&one)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return snapshotInfoFromC(&info), nil
}

// InspectSnapshotFile checks the snapshot file path and describes it.
func InspectSnapshotFile(path string) (SnapshotInfo, error) {
	cp, err := cPath(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer freeC(cp)
	var info C.mm_snapshot_info
	C.mm_snapshot_info_init(&info, C.sizeof_mm_snapshot_info)
	if err := threadCall(func() C.mm_status { return C.mm_snapshot_inspect_file(cp, &info) }); err != nil {
		return SnapshotInfo{}, err
	}
	return snapshotInfoFromC(&info), nil
}

package memmamba

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

// writeMambaCheckpoint writes a Mamba v1 checkpoint in the reference naming
// (safetensors, F32) with V=40, D=16, L=2, E=32, K=4, N=4, R=3.
func writeMambaCheckpoint(t *testing.T, path string) {
	t.Helper()
	const v, d, l, e, k, n, r = 40, 16, 2, 32, 4, 4, 3
	type tensor struct {
		name   string
		shape  []int
		offset float32
	}
	ts := []tensor{{"backbone.embedding.weight", []int{v, d}, 0}}
	for i := 0; i < l; i++ {
		p := fmt.Sprintf("backbone.layers.%d.", i)
		ts = append(ts,
			tensor{p + "norm.weight", []int{d}, 1},
			tensor{p + "mixer.in_proj.weight", []int{2 * e, d}, 0},
			tensor{p + "mixer.conv1d.weight", []int{e, 1, k}, 0},
			tensor{p + "mixer.conv1d.bias", []int{e}, 0},
			tensor{p + "mixer.x_proj.weight", []int{r + 2*n, e}, 0},
			tensor{p + "mixer.dt_proj.weight", []int{e, r}, 0},
			tensor{p + "mixer.dt_proj.bias", []int{e}, -3},
			tensor{p + "mixer.A_log", []int{e, n}, 0.5},
			tensor{p + "mixer.D", []int{e}, 1},
			tensor{p + "mixer.out_proj.weight", []int{d, e}, 0})
	}
	ts = append(ts, tensor{"backbone.norm_f.weight", []int{d}, 1})
	var header []string
	var data []byte
	state := uint32(12345)
	for _, tn := range ts {
		count := 1
		dims := make([]string, len(tn.shape))
		for i, s := range tn.shape {
			count *= s
			dims[i] = fmt.Sprint(s)
		}
		begin := len(data)
		for i := 0; i < count; i++ {
			state = state*1664525 + 1013904223
			noise := (float32(state>>8)/float32(1<<24) - 0.5) * 0.2
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(tn.offset+noise))
		}
		header = append(header, fmt.Sprintf(`"%s":{"dtype":"F32","shape":[%s],"data_offsets":[%d,%d]}`,
			tn.name, strings.Join(dims, ","), begin, len(data)))
	}
	h := "{" + strings.Join(header, ",") + "}"
	for len(h)%8 != 0 {
		h += " "
	}
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	file = append(file, h...)
	file = append(file, data...)
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
}

package memmamba

// The package computes what the C library computes, bit for bit. The
// reference comes from tests/packaging/agreement_fixture.c through the
// directory named by MEMMAMBA_TEST_DIR (CTest sets it); without it these
// tests are skipped.

import (
	"bufio"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func fixtureDir(t *testing.T) string {
	dir := os.Getenv("MEMMAMBA_TEST_DIR")
	if dir == "" {
		t.Skip("MEMMAMBA_TEST_DIR is not set (CTest sets it)")
	}
	return dir
}

func readInt32s(t *testing.T, path string) []int32 {
	b, err := os.ReadFile(path)
	must(t, err)
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func readFloat32s(t *testing.T, path string) []float32 {
	b, err := os.ReadFile(path)
	must(t, err)
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func TestAPI_AgreesWithC(t *testing.T) {
	dir := fixtureDir(t)
	m, err := LoadModel(filepath.Join(dir, "model.safetensors"), oneThread)
	must(t, err)
	defer m.Close()
	toks := readInt32s(t, filepath.Join(dir, "tokens.i32"))
	want := readFloat32s(t, filepath.Join(dir, "logits.f32"))
	got, err := newSession(t, m).Feed(toks, LogitsAll)
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("%d logits, C has %d", len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("logit %d: %g, C has %g", i, got[i], want[i])
		}
	}
}

func TestAPI_CSnapshotResumesBitForBit(t *testing.T) {
	dir := fixtureDir(t)
	m, err := LoadModel(filepath.Join(dir, "model.safetensors"), oneThread)
	must(t, err)
	defer m.Close()
	toks := readInt32s(t, filepath.Join(dir, "tokens.i32"))
	half := len(toks) / 2
	snap := filepath.Join(dir, "snapshot.mmsnap")
	info, err := InspectSnapshotFile(snap)
	must(t, err)
	if int(info.Position) != half || info.ModelFingerprint != m.Fingerprint() {
		t.Fatalf("snapshot info %+v", info)
	}
	s := newSession(t, m)
	must(t, s.RestoreFile(snap))
	got, err := s.Feed(toks[half:], LogitsAll)
	must(t, err)
	if !sameBits(got, readFloat32s(t, filepath.Join(dir, "resumed.f32"))) {
		t.Fatal("resumed logits differ from C's")
	}
}

func TestAPI_StructSizesAsTheCCompilers(t *testing.T) {
	dir := fixtureDir(t)
	f, err := os.Open(filepath.Join(dir, "struct_sizes.txt"))
	must(t, err)
	defer f.Close()
	ours := structSizes()
	checked := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		size, err := strconv.Atoi(fields[1])
		must(t, err)
		if ours[fields[0]] != size {
			t.Fatalf("%s: cgo %d, C %d", fields[0], ours[fields[0]], size)
		}
		checked++
	}
	if checked != len(ours) {
		t.Fatalf("checked %d structs", checked)
	}
}

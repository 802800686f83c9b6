package memmamba

import (
	"errors"
	"math"
	"testing"
)

func smallConfig() Config {
	c := DefaultConfig()
	c.VocabSize = 64
	c.DModel = 32
	c.NLayer = 2
	c.DState = 8
	c.SummaryDim = 16
	c.AttnHeads = 4
	c.NoteWindow = 4
	c.PoolCapacity = 4
	c.PoolPolicy = PoolPriority
	c.CrossLayerPeriod = 2
	c.CrossLayerSpan = 1
	return c
}

var oneThread = &ModelOptions{NThreads: 1}

func smallModel(t *testing.T, seed uint64) *Model {
	t.Helper()
	m, err := NewModel(smallConfig(), seed, oneThread)
	if err != nil {
		t.Fatalf("NewModel: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Model.Close: %v", err)
		}
	})
	return m
}

func newSession(t *testing.T, m *Model) *Session {
	t.Helper()
	s, err := m.NewSession(nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tokens returns n deterministic pseudo-random tokens in [0, vocab).
func tokens(n int, vocab uint32, seed uint64) []int32 {
	x := seed*6364136223846793005 + 1442695040888963407
	out := make([]int32, n)
	for i := range out {
		x = x*6364136223846793005 + 1442695040888963407
		out[i] = int32((x >> 33) % uint64(vocab))
	}
	return out
}

// expectCode fails the test unless err is an *Error with code and a message.
func expectCode(t *testing.T, err error, code int) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("expected code %d (%s), got success", code, StatusString(code))
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("expected *Error, got %T: %v", err, err)
	}
	if e.Code != code {
		t.Fatalf("expected %s, got %v", StatusString(code), err)
	}
	if err.Error() == "" {
		t.Fatalf("empty error text")
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func maxRelDiff(a, b []float32) float64 {
	worst := 0.0
	for i := range a {
		d := math.Abs(float64(a[i])-float64(b[i])) / math.Max(1, math.Abs(float64(b[i])))
		if d > worst {
			worst = d
		}
	}
	return worst
}

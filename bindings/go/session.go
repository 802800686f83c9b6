package memmamba

/*
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Logits selects which logits a feed returns.
type Logits int32

const (
	LogitsNone Logits = C.MM_LOGITS_NONE // none
	LogitsLast Logits = C.MM_LOGITS_LAST // VocabSize floats after the last token
	LogitsAll  Logits = C.MM_LOGITS_ALL  // len(tokens)*VocabSize floats, row i after token i
)

// SessionOptions is how a session runs (mm_session_options); nil means
// the defaults.
type SessionOptions struct {
	// Tokens per internal block of a feed (bounds scratch memory);
	// 0 = the library's default. Results do not depend on it.
	MaxChunk uint32
}

// Session is one token stream on a model. Feeding a sequence at once, in
// chunks or token by token gives the same logits; a failed call leaves the
// session exactly as it was. Use a Session from one goroutine at a time.
type Session struct {
	p *C.mm_session
	m *Model // keeps the model reachable while the session lives
}

// NewSession creates a stream at position 0 on the model.
func (m *Model) NewSession(opts *SessionOptions) (*Session, error) {
	var co C.mm_session_options
	C.mm_session_options_init(&co, C.sizeof_mm_session_options)
	if opts != nil {
		co.max_chunk = C.uint32_t(opts.MaxChunk)
	}
	mp, err := m.use()
	if err != nil {
		return nil, err
	}
	defer m.done()
	var out *C.mm_session
	if err := threadCall(func() C.mm_status { return C.mm_session_create(&out, mp, &co) }); err != nil {
		return nil, err
	}
	atomic.AddInt64(&m.sessions, 1)
	s := &Session{p: out, m: m}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// Model is the model the session runs on.
func (s *Session) Model() *Model { return s.m }

// Close frees the session. Closing twice is a no-op.
func (s *Session) Close() error {
	if s.p == nil {
		return nil
	}
	C.mm_session_free(s.p)
	s.p = nil
	atomic.AddInt64(&s.m.sessions, -1)
	runtime.SetFinalizer(s, nil)
	return nil
}

func (s *Session) check(st C.mm_status) error {
	if st == C.MM_OK {
		return nil
	}
	return newError(int(st), C.GoString(C.mm_session_last_error(s.p)))
}

func logitsLen(mode Logits, nTokens, vocab int) (int, error) {
	switch mode {
	case LogitsNone:
		return 0, nil
	case LogitsLast:
		return vocab, nil
	case LogitsAll:
		if nTokens > 0 && vocab > int(^uint(0)>>1)/nTokens {
			return 0, invalid("%d tokens of logits do not fit in memory", nTokens)
		}
		return nTokens * vocab, nil
	}
	return 0, invalid("unknown logits mode %d", int(mode))
}

// Feed feeds tokens and returns the logits mode asks for (nil for
// LogitsNone).
func (s *Session) Feed(tokens []int32, mode Logits) ([]float32, error) {
	n, err := logitsLen(mode, len(tokens), s.m.VocabSize())
	if err != nil {
		return nil, err
	}
	var out []float32
	if n > 0 {
		out = make([]float32, n)
	}
	if _, err := s.FeedInto(tokens, mode, out); err != nil {
		return nil, err
	}
	return out, nil
}

// FeedInto feeds tokens and writes the logits mode asks for into out
// (CodeBufferTooSmall if it is too short; nothing changes then). It returns
// the number of floats written.
func (s *Session) FeedInto(tokens []int32, mode Logits, out []float32) (int, error) {
	if s.p == nil {
		return 0, closedError("session")
	}
	n, err := logitsLen(mode, len(tokens), s.m.VocabSize())
	if err != nil {
		return 0, err
	}
	var buf *C.float
	capacity := 0
	if mode != LogitsNone {
		buf, capacity = floatsPtr(out), len(out)
		if capacity == 0 {
			// A valid pointer with capacity 0: the library reports the size.
			var one [1]float32
			buf = (*C.float)(unsafe.Pointer(&one[0]))
			defer runtime.KeepAlive(&one)
		}
	}
	st := C.mm_session_feed(s.p, tokensPtr(tokens), C.size_t(len(tokens)), C.int32_t(mode),
		buf, C.size_t(capacity))
	err = s.check(st)
	runtime.KeepAlive(s)
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(out)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Step advances many sessions by one token each in one batched call:
// tokens[i] goes to sessions[i]. The sessions must be distinct and on one
// model (else CodeModelMismatch). It returns len(sessions)*VocabSize logits,
// row i for session i. On error no session changes.
func Step(sessions []*Session, tokens []int32) ([]float32, error) {
	vocab := 0
	for _, s := range sessions {
		if s != nil && s.m.VocabSize() > vocab {
			vocab = s.m.VocabSize()
		}
	}
	out := make([]float32, len(sessions)*vocab)
	if err := StepInto(sessions, tokens, out); err != nil {
		return nil, err
	}
	return out, nil
}

// StepInto is Step writing into out, or without logits when out is nil.
func StepInto(sessions []*Session, tokens []int32, out []float32) error {
	if len(sessions) != len(tokens) {
		return invalid("%d sessions but %d tokens", len(sessions), len(tokens))
	}
	if len(sessions) == 0 {
		return invalid("no sessions")
	}
	// C pointers in Go memory: allowed, and C reads them during the call only.
	handles := make([]*C.mm_session, len(sessions))
	seen := make(map[*Session]bool, len(sessions))
	for i, s := range sessions {
		if s == nil || s.p == nil {
			return invalid("session %d is nil or closed", i)
		}
		if seen[s] {
			return invalid("session %d appears twice", i)
		}
		seen[s] = true
		handles[i] = s.p
	}
	var buf *C.float
	capacity := 0
	if out != nil {
		buf, capacity = floatsPtr(out), len(out)
		if capacity == 0 {
			var one [1]float32
			buf = (*C.float)(unsafe.Pointer(&one[0]))
			defer runtime.KeepAlive(&one)
		}
	}
	err := threadCall(func() C.mm_status {
		return C.mm_sessions_step(&handles[0], C.size_t(len(handles)), tokensPtr(tokens), buf,
			C.size_t(capacity))
	})
	runtime.KeepAlive(sessions)
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(out)
	return err
}

// StepSample steps each session by one token, as Step, and returns each
// session's next token drawn from its logits where they are computed (on a
// GPU model only the ids come back). temperature 0 is greedy; above 0 the
// draw is from softmax(logits / temperature), fixed by seed and each
// session's position (the C header documents it). The returned tokens are
// not fed: pass them to the next call. On error no session changes.
func StepSample(sessions []*Session, tokens []int32, temperature float32,
	seed uint64) ([]int32, error) {
	return stepSample(sessions, tokens, temperature, seed, nil)
}

// StepSampleSeeds is StepSample with a seed per session (seeds[i] for
// sessions[i]), so that sessions at the same position draw independently.
func StepSampleSeeds(sessions []*Session, tokens []int32, temperature float32,
	seeds []uint64) ([]int32, error) {
	if len(seeds) != len(sessions) {
		return nil, invalid("%d sessions but %d seeds", len(sessions), len(seeds))
	}
	return stepSample(sessions, tokens, temperature, 0, seeds)
}

func stepSample(sessions []*Session, tokens []int32, temperature float32, seed uint64,
	seeds []uint64) ([]int32, error) {
	if len(sessions) != len(tokens) {
		return nil, invalid("%d sessions but %d tokens", len(sessions), len(tokens))
	}
	if len(sessions) == 0 {
		return nil, invalid("no sessions")
	}
	handles := make([]*C.mm_session, len(sessions))
	seen := make(map[*Session]bool, len(sessions))
	for i, s := range sessions {
		if s == nil || s.p == nil {
			return nil, invalid("session %d is nil or closed", i)
		}
		if seen[s] {
			return nil, invalid("session %d appears twice", i)
		}
		seen[s] = true
		handles[i] = s.p
	}
	var o C.mm_sample_options
	if err := threadCall(func() C.mm_status {
		return C.mm_sample_options_init(&o, C.sizeof_mm_sample_options)
	}); err != nil {
		return nil, err
	}
	o.temperature = C.float(temperature)
	o.seed = C.uint64_t(seed)
	if len(seeds) > 0 {
		// The options struct is passed by pointer, so what it points to
		// must be C memory (cgo forbids a Go pointer inside Go memory
		// handed to C).
		cs := (*C.uint64_t)(C.malloc(C.size_t(len(seeds)) * C.sizeof_uint64_t))
		if cs == nil {
			return nil, &Error{Code: CodeOutOfMemory, Msg: "seeds: out of memory"}
		}
		defer C.free(unsafe.Pointer(cs))
		copy(unsafe.Slice((*uint64)(unsafe.Pointer(cs)), len(seeds)), seeds)
		o.seeds = cs
	}
	next := make([]int32, len(sessions))
	err := threadCall(func() C.mm_status {
		return C.mm_sessions_step_sample(&handles[0], C.size_t(len(handles)), tokensPtr(tokens),
			&o, (*C.int32_t)(unsafe.Pointer(&next[0])))
	})
	runtime.KeepAlive(sessions)
	runtime.KeepAlive(tokens)
	if err != nil {
		return nil, err
	}
	return next, nil
}

// Reset returns the stream to position 0 with empty pools.
func (s *Session) Reset() error {
	if s.p == nil {
		return closedError("session")
	}
	err := s.check(C.mm_session_reset(s.p))
	runtime.KeepAlive(s)
	return err
}

// ResetRecurrent zeroes every layer's recurrent state and keeps the
// position, the pools and the pending note windows: what came before
// survives only in the notes.
func (s *Session) ResetRecurrent() error {
	if s.p == nil {
		return closedError("session")
	}
	err := s.check(C.mm_session_reset_recurrent(s.p))
	runtime.KeepAlive(s)
	return err
}

// Position is the number of tokens consumed since creation or the last reset.
func (s *Session) Position() uint64 {
	if s.p == nil {
		return 0
	}
	defer runtime.KeepAlive(s)
	return uint64(C.mm_session_position(s.p))
}

// StateBytes is the size of the recurrent state the session keeps (bounded
// whatever the stream's length).
func (s *Session) StateBytes() uint64 {
	if s.p == nil {
		return 0
	}
	defer runtime.KeepAlive(s)
	return uint64(C.mm_session_state_bytes(s.p))
}

// PoolSize is the number of notes in layer's pool; ok is false for a layer
// out of range or a closed session.
func (s *Session) PoolSize(layer uint32) (n int, ok bool) {
	if s.p == nil {
		return 0, false
	}
	defer runtime.KeepAlive(s)
	r := int(C.mm_session_pool_size(s.p, C.uint32_t(layer)))
	return r, r >= 0
}

// Note is one note of a pool (PoolNotes).
type Note struct {
	// Window is the note window it summarises: stream positions
	// [Window*NoteWindow, (Window+1)*NoteWindow).
	Window int64
	// Score is its score.
	Score float32
	// Summary is its summary: SummaryDim floats.
	Summary []float32
}

// PoolNotes is what the stream remembers in layer: its pool's notes in pool
// order (ascending window), PoolSize(layer) of them. CodeInvalidArgument for
// a layer out of range. The session is not changed.
func (s *Session) PoolNotes(layer uint32) ([]Note, error) {
	if s.p == nil {
		return nil, closedError("session")
	}
	var count C.size_t
	err := s.check(C.mm_session_pool_notes(s.p, C.uint32_t(layer), nil, nil, nil, 0, &count))
	runtime.KeepAlive(s)
	if err != nil {
		return nil, err
	}
	n := int(count)
	if n == 0 {
		return []Note{}, nil
	}
	dim := int(s.m.Config().SummaryDim)
	if dim > 0 && n > int(^uint(0)>>1)/dim {
		return nil, invalid("%d notes do not fit in memory", n)
	}
	// Plain Go memory without pointers: C writes it during the call only.
	windows := make([]int64, n)
	scores := make([]float32, n)
	summaries := make([]float32, n*dim)
	err = s.check(C.mm_session_pool_notes(s.p, C.uint32_t(layer),
		(*C.int64_t)(unsafe.Pointer(&windows[0])), floatsPtr(scores), floatsPtr(summaries),
		C.size_t(n), &count))
	runtime.KeepAlive(s)
	runtime.KeepAlive(windows)
	runtime.KeepAlive(scores)
	runtime.KeepAlive(summaries)
	if err != nil {
		return nil, err
	}
	if int(count) < n {
		n = int(count)
	}
	notes := make([]Note, n)
	for i := range notes {
		notes[i] = Note{
			Window:  windows[i],
			Score:   scores[i],
			Summary: summaries[i*dim : (i+1)*dim : (i+1)*dim],
		}
	}
	return notes, nil
}

// SnapshotSize is the exact size of a snapshot of the current state.
func (s *Session) SnapshotSize() (int, error) {
	if s.p == nil {
		return 0, closedError("session")
	}
	var size C.size_t
	err := s.check(C.mm_session_snapshot_size(s.p, &size))
	runtime.KeepAlive(s)
	return int(size), err
}

// Snapshot returns the stream's whole state as bytes.
func (s *Session) Snapshot() ([]byte, error) {
	size, err := s.SnapshotSize()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := s.SnapshotInto(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// SnapshotInto writes a snapshot into buf and returns its length; a short
// buf gives CodeBufferTooSmall (the message says the size needed).
func (s *Session) SnapshotInto(buf []byte) (int, error) {
	if s.p == nil {
		return 0, closedError("session")
	}
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	var written C.size_t
	err := s.check(C.mm_session_snapshot(s.p, p, C.size_t(len(buf)), &written))
	runtime.KeepAlive(s)
	runtime.KeepAlive(buf)
	if err != nil {
		return 0, err
	}
	return int(written), nil
}

// SnapshotFile writes a snapshot to path, atomically.
func (s *Session) SnapshotFile(path string) error {
	if s.p == nil {
		return closedError("session")
	}
	cp, err := cPath(path)
	if err != nil {
		return err
	}
	defer freeC(cp)
	err = s.check(C.mm_session_snapshot_file(s.p, cp))
	runtime.KeepAlive(s)
	return err
}

// Restore replaces the stream with the snapshot data, taken on the same
// model. On error the session is unchanged.
func (s *Session) Restore(data []byte) error {
	if s.p == nil {
		return closedError("session")
	}
	// A valid pointer also for empty data: the library then reports the
	// empty snapshot itself (CodeCorruptFile).
	var one [1]byte
	p := unsafe.Pointer(&one[0])
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	err := s.check(C.mm_session_restore(s.p, p, C.size_t(len(data))))
	runtime.KeepAlive(s)
	runtime.KeepAlive(data)
	runtime.KeepAlive(&one)
	return err
}

// RestoreFile is Restore from the file path.
func (s *Session) RestoreFile(path string) error {
	if s.p == nil {
		return closedError("session")
	}
	cp, err := cPath(path)
	if err != nil {
		return err
	}
	defer freeC(cp)
	err = s.check(C.mm_session_restore_file(s.p, cp))
	runtime.KeepAlive(s)
	return err
}

func (s *Session) String() string {
	return fmt.Sprintf("memmamba.Session{position: %d}", s.Position())
}

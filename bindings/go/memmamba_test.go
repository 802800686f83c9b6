package memmamba

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

func TestAPI_VersionAndErrors(t *testing.T) {
	want := fmt.Sprintf("%d.%d.%d", VersionNumber()/10000, VersionNumber()/100%100, VersionNumber()%100)
	if Version() != want {
		t.Fatalf("version %q vs number %d", Version(), VersionNumber())
	}
	e := &Error{Code: CodeIO, Msg: "cannot open x"}
	if got := e.Error(); got != "memmamba: "+StatusString(CodeIO)+": cannot open x" {
		t.Fatalf("Error() = %q", got)
	}
	var err error = e
	if !errors.Is(err, &Error{Code: CodeIO}) || errors.Is(err, &Error{Code: CodeConfig}) {
		t.Fatal("errors.Is by code")
	}
	if StatusString(-999) == "" {
		t.Fatal("unknown codes have a text too")
	}
}

func TestAPI_ConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	want := Config{VocabSize: 256, DModel: 256, NLayer: 8, DState: 16, DConv: 4, Expand: 2,
		DtRank: 0, NoteWindow: 32, SummaryDim: 64, PoolCapacity: 50, PoolPolicy: PoolPriority,
		NoteThreshold: 0.5, AttnHeads: 4, GateThreshold: 0, CrossLayerPeriod: 4,
		CrossLayerSpan: 4, Fusion: FusionWeighted, NormEps: 1e-5, TieEmbeddings: true}
	if c != want {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
}

func TestAPI_CreateConfigFingerprint(t *testing.T) {
	m := smallModel(t, 1)
	c := m.Config()
	if c.DModel != 32 || c.DtRank != 2 || m.VocabSize() != 64 {
		t.Fatalf("config %+v", c)
	}
	if m.ParameterCount() == 0 || m.Fingerprint() == 0 {
		t.Fatal("parameters and fingerprint")
	}
	if m.Fingerprint() != smallModel(t, 1).Fingerprint() {
		t.Fatal("same seed, same fingerprint")
	}
	if m.Fingerprint() == smallModel(t, 2).Fingerprint() {
		t.Fatal("another seed, another fingerprint")
	}
}

func TestAPI_InvalidConfigs(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"heads":  func(c *Config) { c.AttnHeads = 3 },
		"vocab":  func(c *Config) { c.VocabSize = 0 },
		"dmodel": func(c *Config) { c.DModel = 0 },
	} {
		c := smallConfig()
		edit(&c)
		m, err := NewModel(c, 1, oneThread)
		e := expectCode(t, err, CodeConfig)
		if m != nil || e.Msg == "" {
			t.Fatalf("%s: model %v, message %q", name, m, e.Msg)
		}
	}
	if _, err := NewModel(smallConfig(), 1, &ModelOptions{NThreads: -1}); err == nil {
		t.Fatal("a negative thread count must be refused")
	}
	if m, err := NewModel(smallConfig(), 1, &ModelOptions{Device: DeviceCUDA, NThreads: 1}); err == nil {
		m.Close() // a build with a GPU
	} else if e, ok := err.(*Error); !ok || (e.Code != CodeUnsupported && e.Code != CodeNoDevice) {
		t.Fatalf("a CUDA model without a GPU: %v", err)
	}
}

func TestAPI_FeedModes(t *testing.T) {
	m := smallModel(t, 3)
	s := newSession(t, m)
	toks := tokens(10, 64, 1)
	if l, err := s.Feed(toks, LogitsNone); err != nil || l != nil || s.Position() != 10 {
		t.Fatalf("none: %v %v %d", l, err, s.Position())
	}
	if l, err := s.Feed(toks, LogitsLast); err != nil || len(l) != 64 {
		t.Fatalf("last: %d %v", len(l), err)
	}
	if l, err := s.Feed(toks, LogitsAll); err != nil || len(l) != 640 {
		t.Fatalf("all: %d %v", len(l), err)
	}
	if _, err := s.Feed(nil, LogitsNone); err != nil || s.Position() != 30 {
		t.Fatalf("zero tokens: %v %d", err, s.Position())
	}
	expectCode(t, func() error { _, err := s.Feed(toks, Logits(7)); return err }(), CodeInvalidArgument)
}

func TestAPI_WholeChunkedTokenByTokenAgree(t *testing.T) {
	m := smallModel(t, 4)
	toks := tokens(37, 64, 2)
	a, err := newSession(t, m).Feed(toks, LogitsAll)
	must(t, err)
	chunked, err := m.NewSession(&SessionOptions{MaxChunk: 5})
	must(t, err)
	defer chunked.Close()
	var b, c []float32
	for i := 0; i < len(toks); i += 7 {
		end := i + 7
		if end > len(toks) {
			end = len(toks)
		}
		l, err := chunked.Feed(toks[i:end], LogitsAll)
		must(t, err)
		b = append(b, l...)
	}
	single := newSession(t, m)
	for _, tok := range toks {
		l, err := single.Feed([]int32{tok}, LogitsLast)
		must(t, err)
		c = append(c, l...)
	}
	if d := maxRelDiff(b, a); d > 1e-5 {
		t.Fatalf("chunked differs by %g", d)
	}
	if d := maxRelDiff(c, a); d > 1e-5 {
		t.Fatalf("token by token differs by %g", d)
	}
}

func TestAPI_WrongTokensChangeNothing(t *testing.T) {
	m := smallModel(t, 5)
	toks := tokens(12, 64, 3)
	s := newSession(t, m)
	_, err := s.Feed(toks[:6], LogitsNone)
	must(t, err)
	for _, bad := range []int32{64, -1, 1<<31 - 1, -1 << 31} {
		_, err := s.Feed([]int32{1, 2, bad}, LogitsLast)
		if e := expectCode(t, err, CodeTokenOutOfRange); e.Msg == "" || s.Position() != 6 {
			t.Fatalf("token %d: %q at %d", bad, e.Msg, s.Position())
		}
	}
	after, err := s.Feed(toks[6:], LogitsAll)
	must(t, err)
	fresh := newSession(t, m)
	_, err = fresh.Feed(toks[:6], LogitsNone)
	must(t, err)
	want, err := fresh.Feed(toks[6:], LogitsAll)
	must(t, err)
	if !sameBits(after, want) {
		t.Fatal("a failed feed changed the stream")
	}
}

func TestAPI_ShortBuffers(t *testing.T) {
	m := smallModel(t, 6)
	s := newSession(t, m)
	_, err := s.FeedInto([]int32{1, 2}, LogitsLast, make([]float32, 63))
	expectCode(t, err, CodeBufferTooSmall)
	_, err = s.FeedInto([]int32{1, 2}, LogitsAll, make([]float32, 64))
	expectCode(t, err, CodeBufferTooSmall)
	_, err = s.FeedInto([]int32{1, 2}, LogitsLast, nil)
	expectCode(t, err, CodeBufferTooSmall)
	if s.Position() != 0 {
		t.Fatal("a failed feed moved the stream")
	}
	if n, err := s.FeedInto([]int32{1, 2}, LogitsAll, make([]float32, 200)); err != nil || n != 128 {
		t.Fatalf("%d %v", n, err)
	}
	_, err = s.Feed(tokens(9, 64, 5), LogitsNone)
	must(t, err)
	size, err := s.SnapshotSize()
	must(t, err)
	_, err = s.SnapshotInto(make([]byte, size-1))
	expectCode(t, err, CodeBufferTooSmall)
	_, err = s.SnapshotInto(nil)
	expectCode(t, err, CodeBufferTooSmall)
	buf := make([]byte, size)
	n, err := s.SnapshotInto(buf)
	if err != nil || n != size {
		t.Fatalf("%d %v", n, err)
	}
}

func TestAPI_SnapshotRestoreBitForBit(t *testing.T) {
	m := smallModel(t, 7)
	toks := tokens(80, 64, 4)
	s := newSession(t, m)
	_, err := s.Feed(toks[:50], LogitsNone)
	must(t, err)
	snap, err := s.Snapshot()
	must(t, err)
	want, err := s.Feed(toks[50:], LogitsAll)
	must(t, err)
	fresh := newSession(t, m)
	must(t, fresh.Restore(snap))
	if fresh.Position() != 50 {
		t.Fatalf("position %d", fresh.Position())
	}
	got, err := fresh.Feed(toks[50:], LogitsAll)
	must(t, err)
	if !sameBits(got, want) {
		t.Fatal("restored stream differs")
	}
	must(t, s.Restore(snap)) // over a session in use
	got, err = s.Feed(toks[50:], LogitsAll)
	must(t, err)
	if !sameBits(got, want) {
		t.Fatal("stream restored in place differs")
	}
	if n, ok := s.PoolSize(0); !ok || n == 0 {
		t.Fatal("pools should hold notes")
	}
}

func TestAPI_SnapshotFilesAndInspection(t *testing.T) {
	dir := t.TempDir()
	m := smallModel(t, 9)
	s := newSession(t, m)
	_, err := s.Feed(tokens(41, 64, 6), LogitsNone)
	must(t, err)
	path := filepath.Join(dir, "stream.mmsnap")
	must(t, s.SnapshotFile(path))
	info, err := InspectSnapshotFile(path)
	must(t, err)
	bytes, err := os.ReadFile(path)
	must(t, err)
	info2, err := InspectSnapshot(bytes)
	must(t, err)
	if info != info2 {
		t.Fatalf("file %+v vs bytes %+v", info, info2)
	}
	if info.FormatVersion != 2 || info.Position != 41 || info.ModelFingerprint != m.Fingerprint() ||
		info.NLayer != 2 || info.DModel != 32 || info.DInner != 64 || info.DState != 8 ||
		info.DConv != 4 || info.SummaryDim != 16 || info.NoteWindow != 4 ||
		info.PoolCapacity != 4 || info.PoolPolicy != PoolPriority {
		t.Fatalf("info %+v", info)
	}
	n0, _ := s.PoolSize(0)
	n1, _ := s.PoolSize(1)
	if int(info.NotesTotal) != n0+n1 || info.PoolFill() <= 0 || info.PoolFill() > 1 {
		t.Fatalf("notes %d vs %d+%d", info.NotesTotal, n0, n1)
	}
	if info.StateBytes == 0 || info.StateBytes > s.StateBytes() {
		t.Fatalf("state bytes %d vs session %d", info.StateBytes, s.StateBytes())
	}
	other := newSession(t, m)
	must(t, other.RestoreFile(path))
	a, err := other.Feed([]int32{1, 2, 3}, LogitsAll)
	must(t, err)
	b, err := s.Feed([]int32{1, 2, 3}, LogitsAll)
	must(t, err)
	if other.Position() != 44 || !sameBits(a, b) {
		t.Fatal("restored file stream differs")
	}
}

// probe feeds p into a copy of s's stream (through a snapshot).
func probe(t *testing.T, s *Session, p []int32) []float32 {
	t.Helper()
	snap, err := s.Snapshot()
	must(t, err)
	c := newSession(t, s.Model())
	must(t, c.Restore(snap))
	l, err := c.Feed(p, LogitsAll)
	must(t, err)
	return l
}

func TestAPI_DamagedSnapshotsChangeNothing(t *testing.T) {
	m := smallModel(t, 10)
	s := newSession(t, m)
	_, err := s.Feed(tokens(30, 64, 7), LogitsNone)
	must(t, err)
	good, err := s.Snapshot()
	must(t, err)
	_, err = s.Feed(tokens(5, 64, 8), LogitsNone)
	must(t, err)
	before := probe(t, s, []int32{4, 5, 6})

	expectCode(t, s.Restore(nil), CodeCorruptFile)
	_, err = InspectSnapshot(nil)
	expectCode(t, err, CodeCorruptFile)
	garbage := make([]byte, len(good))
	for i := range garbage {
		garbage[i] = byte(i * 31 % 251)
	}
	expectCode(t, s.Restore(garbage), CodeCorruptFile)
	for _, cut := range []int{1, 8, len(good) / 2, len(good) - 1} {
		expectCode(t, s.Restore(good[:cut]), CodeCorruptFile)
		_, err := InspectSnapshot(good[:cut])
		expectCode(t, err, CodeCorruptFile)
	}
	checksumSeen := false
	step := len(good)/23 + 1
	for at := 0; at < len(good); at += step {
		bad := append([]byte(nil), good...)
		bad[at] ^= 0x40
		err := s.Restore(bad)
		var e *Error
		if !errors.As(err, &e) || (e.Code != CodeChecksum && e.Code != CodeCorruptFile) {
			t.Fatalf("byte %d: %v", at, err)
		}
		checksumSeen = checksumSeen || e.Code == CodeChecksum
	}
	if !checksumSeen {
		t.Fatal("no flipped byte reached the checksum")
	}
	if s.Position() != 35 || !sameBits(probe(t, s, []int32{4, 5, 6}), before) {
		t.Fatal("a failed restore changed the stream")
	}
}

func TestAPI_MismatchedModels(t *testing.T) {
	a, b := smallModel(t, 11), smallModel(t, 12)
	sa, sb := newSession(t, a), newSession(t, b)
	_, err := sa.Feed(tokens(20, 64, 9), LogitsNone)
	must(t, err)
	snap, err := sa.Snapshot()
	must(t, err)
	_, err = sb.Feed([]int32{1, 2, 3}, LogitsNone)
	must(t, err)
	before := probe(t, sb, []int32{7})
	expectCode(t, sb.Restore(snap), CodeModelMismatch)
	if sb.Position() != 3 || !sameBits(probe(t, sb, []int32{7}), before) {
		t.Fatal("a refused restore changed the session")
	}
	sa2 := newSession(t, a)
	_, err = Step([]*Session{sa2, sb}, []int32{1, 2})
	expectCode(t, err, CodeModelMismatch)
	if sa2.Position() != 0 || sb.Position() != 3 {
		t.Fatal("a refused step moved a session")
	}
}

func TestAPI_StepSamplePicksFromTheLogits(t *testing.T) {
	m := smallModel(t, 16)
	a, b := newSession(t, m), newSession(t, m)
	p := tokens(7, 64, 40)
	_, err := a.Feed(p, LogitsNone)
	must(t, err)
	_, err = b.Feed(p, LogitsNone)
	must(t, err)
	// Greedy: the highest of the twin's logits (the same bits on the CPU).
	logits, err := Step([]*Session{a}, []int32{3})
	must(t, err)
	next, err := StepSample([]*Session{b}, []int32{3}, 0, 0)
	must(t, err)
	best := 0
	for v, x := range logits {
		if x > logits[best] {
			best = v
		}
	}
	if len(next) != 1 || next[0] != int32(best) {
		t.Fatalf("greedy %v, highest logit at %d", next, best)
	}
	drawn, err := StepSample([]*Session{b}, next, 1, 9)
	must(t, err)
	if drawn[0] < 0 || drawn[0] >= 64 {
		t.Fatalf("drew %d", drawn[0])
	}
	at := b.Position()
	_, err = StepSample([]*Session{b}, drawn, -1, 9)
	expectCode(t, err, CodeInvalidArgument)
	if b.Position() != at {
		t.Fatal("a failed step moved the session")
	}
	// A seed per session: twins at the same position draw independently.
	c, d := newSession(t, m), newSession(t, m)
	tok := []int32{4, 4}
	differed := false
	for i := 0; i < 8; i++ {
		same, err := StepSample([]*Session{c, d}, tok, 3, 5)
		must(t, err)
		if same[0] != same[1] {
			t.Fatalf("one seed drew %v for twins", same)
		}
		own, err := StepSampleSeeds([]*Session{c, d}, []int32{same[0], same[0]}, 3,
			[]uint64{1, 2})
		must(t, err)
		differed = differed || own[0] != own[1]
		tok = []int32{own[0], own[0]}
	}
	if !differed {
		t.Fatal("a seed per session never changed a draw")
	}
	_, err = StepSampleSeeds([]*Session{c, d}, tok, 1, []uint64{1})
	expectCode(t, err, CodeInvalidArgument)
}

func TestAPI_StepManySessions(t *testing.T) {
	m := smallModel(t, 13)
	var batch, separate []*Session
	for i := 0; i < 3; i++ {
		p := tokens(5+3*i, 64, uint64(20+i))
		s, r := newSession(t, m), newSession(t, m)
		_, err := s.Feed(p, LogitsNone)
		must(t, err)
		_, err = r.Feed(p, LogitsNone)
		must(t, err)
		batch, separate = append(batch, s), append(separate, r)
	}
	step := []int32{9, 19, 29}
	logits, err := Step(batch, step)
	must(t, err)
	if len(logits) != 3*64 {
		t.Fatalf("%d logits", len(logits))
	}
	for i, r := range separate {
		one, err := r.Feed([]int32{step[i]}, LogitsLast)
		must(t, err)
		if d := maxRelDiff(logits[i*64:(i+1)*64], one); d > 1e-5 {
			t.Fatalf("session %d differs by %g", i, d)
		}
	}
	must(t, StepInto(batch, []int32{1, 2, 3}, nil))

	// Errors: no session moves.
	positions := []uint64{batch[0].Position(), batch[1].Position()}
	_, err = Step(batch[:2], []int32{1})
	expectCode(t, err, CodeInvalidArgument)
	_, err = Step(batch[:2], []int32{1, 64})
	expectCode(t, err, CodeTokenOutOfRange)
	_, err = Step([]*Session{batch[0], batch[0]}, []int32{1, 2})
	expectCode(t, err, CodeInvalidArgument)
	expectCode(t, StepInto(batch[:2], []int32{1, 2}, make([]float32, 64)), CodeBufferTooSmall)
	_, err = Step(nil, nil)
	expectCode(t, err, CodeInvalidArgument)
	if batch[0].Position() != positions[0] || batch[1].Position() != positions[1] {
		t.Fatal("a failed step moved a session")
	}
}

func TestAPI_ResetPositionPools(t *testing.T) {
	m := smallModel(t, 16)
	s := newSession(t, m)
	first, err := s.Feed(tokens(40, 64, 10), LogitsAll)
	must(t, err)
	if n, ok := s.PoolSize(0); !ok || n == 0 {
		t.Fatal("pools should hold notes")
	}
	if _, ok := s.PoolSize(2); ok {
		t.Fatal("layer 2 is out of range")
	}
	full := newSession(t, m)
	_, err = full.Feed(tokens(100, 64, 30), LogitsNone)
	must(t, err)
	bytes := full.StateBytes()
	_, err = full.Feed(tokens(300, 64, 31), LogitsNone)
	must(t, err)
	if full.StateBytes() != bytes {
		t.Fatal("state must stay bounded")
	}
	must(t, s.Reset())
	if n, _ := s.PoolSize(0); s.Position() != 0 || n != 0 {
		t.Fatal("reset")
	}
	again, err := s.Feed(tokens(40, 64, 10), LogitsAll)
	must(t, err)
	if !sameBits(again, first) {
		t.Fatal("a reset stream differs")
	}
}

func TestAPI_ResetRecurrent(t *testing.T) {
	m := smallModel(t, 16)
	s, twin := newSession(t, m), newSession(t, m)
	for _, x := range []*Session{s, twin} {
		_, err := x.Feed(tokens(40, 64, 10), LogitsNone)
		must(t, err)
	}
	before, err := s.PoolNotes(0)
	must(t, err)
	must(t, s.ResetRecurrent())
	after, err := s.PoolNotes(0)
	must(t, err)
	if s.Position() != 40 || len(before) == 0 || !reflect.DeepEqual(before, after) {
		t.Fatal("ResetRecurrent must keep the position and the notes")
	}
	a, err := s.Feed(tokens(8, 64, 11), LogitsAll)
	must(t, err)
	b, err := twin.Feed(tokens(8, 64, 11), LogitsAll)
	must(t, err)
	if sameBits(a, b) {
		t.Fatal("the recurrent state was not zeroed")
	}
}

func TestAPI_PoolNotes(t *testing.T) {
	m := smallModel(t, 16)
	c := m.Config()
	s := newSession(t, m)
	if notes, err := s.PoolNotes(0); err != nil || len(notes) != 0 {
		t.Fatalf("a new stream has no notes: %v %v", notes, err)
	}
	_, err := s.Feed(tokens(40, 64, 10), LogitsNone)
	must(t, err)
	before, err := s.Snapshot()
	must(t, err)
	windowsSeen := int64(s.Position() / uint64(c.NoteWindow))
	for layer := uint32(0); layer < c.NLayer; layer++ {
		notes, err := s.PoolNotes(layer)
		must(t, err)
		if n, _ := s.PoolSize(layer); len(notes) != n || n == 0 || n > int(c.PoolCapacity) {
			t.Fatalf("layer %d: %d notes, PoolSize %d", layer, len(notes), n)
		}
		for i, note := range notes {
			if i > 0 && notes[i-1].Window >= note.Window {
				t.Fatalf("layer %d: windows do not ascend: %d then %d", layer,
					notes[i-1].Window, note.Window)
			}
			if note.Window < 0 || note.Window >= windowsSeen {
				t.Fatalf("layer %d: window %d of %d", layer, note.Window, windowsSeen)
			}
			if !(note.Score > 0 && note.Score < 1) {
				t.Fatalf("layer %d: score %v", layer, note.Score)
			}
			if len(note.Summary) != int(c.SummaryDim) {
				t.Fatalf("layer %d: summary of %d floats", layer, len(note.Summary))
			}
			for _, x := range note.Summary {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					t.Fatalf("layer %d: summary value %v", layer, x)
				}
			}
		}
	}
	after, err := s.Snapshot()
	must(t, err)
	if string(after) != string(before) {
		t.Fatal("listing the notes changed the session")
	}
	_, err = s.PoolNotes(2)
	expectCode(t, err, CodeInvalidArgument)
	_, err = s.PoolNotes(^uint32(0))
	expectCode(t, err, CodeInvalidArgument)
	must(t, s.Reset())
	if notes, err := s.PoolNotes(0); err != nil || len(notes) != 0 {
		t.Fatalf("a reset stream has no notes: %v %v", notes, err)
	}
	must(t, s.Close())
	_, err = s.PoolNotes(0)
	expectCode(t, err, CodeInvalidArgument)
}

func TestAPI_CloseRules(t *testing.T) {
	m, err := NewModel(smallConfig(), 17, oneThread)
	must(t, err)
	s, err := m.NewSession(nil)
	must(t, err)
	expectCode(t, m.Close(), CodeInvalidArgument) // a session is open
	_, err = s.Feed([]int32{1}, LogitsLast)
	must(t, err)
	must(t, s.Close())
	must(t, s.Close()) // twice: a no-op
	_, err = s.Feed([]int32{1}, LogitsLast)
	expectCode(t, err, CodeInvalidArgument)
	expectCode(t, s.Reset(), CodeInvalidArgument)
	_, err = s.Snapshot()
	expectCode(t, err, CodeInvalidArgument)
	must(t, m.Close())
	must(t, m.Close())
	_, err = m.NewSession(nil)
	expectCode(t, err, CodeInvalidArgument)
	expectCode(t, m.Save(filepath.Join(t.TempDir(), "x")), CodeInvalidArgument)
	if m.Fingerprint() != 0 || m.ParameterCount() != 0 {
		t.Fatal("a closed model reports 0")
	}
}

func TestAPI_FinalizersFreeForgottenHandles(t *testing.T) {
	for i := 0; i < 20; i++ {
		m, err := NewModel(smallConfig(), uint64(i), oneThread)
		must(t, err)
		s, err := m.NewSession(nil)
		must(t, err)
		_, err = s.Feed([]int32{1, 2, 3}, LogitsLast)
		must(t, err)
		// Neither closed: the finalizers free the session, then the model.
	}
	runtime.GC()
	runtime.GC()
}

func TestAPI_ConcurrentSessionsOnOneModel(t *testing.T) {
	m := smallModel(t, 19)
	toks := tokens(30, 64, 12)
	want, err := newSession(t, m).Feed(toks, LogitsAll)
	must(t, err)
	var wg sync.WaitGroup
	results := make([][]float32, 4)
	errs := make([]error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s, err := m.NewSession(nil)
			if err != nil {
				errs[g] = err
				return
			}
			defer s.Close()
			results[g], errs[g] = s.Feed(toks, LogitsAll)
		}(g)
	}
	wg.Wait()
	for g := range results {
		must(t, errs[g])
		if !sameBits(results[g], want) {
			t.Fatalf("goroutine %d differs", g)
		}
	}
}

func TestAPI_ModelFiles(t *testing.T) {
	dir := t.TempDir()
	m := smallModel(t, 20)
	path := filepath.Join(dir, "m.safetensors")
	must(t, m.Save(path))
	loaded, err := LoadModel(path, oneThread)
	must(t, err)
	defer loaded.Close()
	if loaded.Fingerprint() != m.Fingerprint() || loaded.Config() != m.Config() {
		t.Fatal("a loaded model differs")
	}
	toks := tokens(17, 64, 13)
	a, err := newSession(t, loaded).Feed(toks, LogitsAll)
	must(t, err)
	b, err := newSession(t, m).Feed(toks, LogitsAll)
	must(t, err)
	if !sameBits(a, b) {
		t.Fatal("a loaded model computes differently")
	}
	_, err = LoadModel(filepath.Join(dir, "missing.safetensors"), nil)
	expectCode(t, err, CodeIO)
	bytes, err := os.ReadFile(path)
	must(t, err)
	cut := filepath.Join(dir, "cut.safetensors")
	for _, n := range []int{0, 4, 8, 100, len(bytes) / 2, len(bytes) - 1} {
		must(t, os.WriteFile(cut, bytes[:n], 0o644))
		_, err := LoadModel(cut, nil)
		expectCode(t, err, CodeCorruptFile)
	}
	must(t, os.WriteFile(cut, []byte("this is not a safetensors file at all"), 0o644))
	_, err = LoadModel(cut, nil)
	expectCode(t, err, CodeCorruptFile)
	expectCode(t, m.Save(filepath.Join(dir, "no", "such", "dir", "m.safetensors")), CodeIO)
	_, err = LoadModel("bad\x00name", nil)
	expectCode(t, err, CodeInvalidArgument)
	expectCode(t, m.Save("bad\x00name"), CodeInvalidArgument)
}

func TestAPI_SnapshotFileErrors(t *testing.T) {
	dir := t.TempDir()
	m := smallModel(t, 21)
	s := newSession(t, m)
	_, err := s.Feed(tokens(10, 64, 14), LogitsNone)
	must(t, err)
	expectCode(t, s.RestoreFile(filepath.Join(dir, "missing.mmsnap")), CodeIO)
	_, err = InspectSnapshotFile(filepath.Join(dir, "missing.mmsnap"))
	expectCode(t, err, CodeIO)
	expectCode(t, s.SnapshotFile(filepath.Join(dir, "no", "dir", "x.mmsnap")), CodeIO)
	expectCode(t, s.SnapshotFile("bad\x00name"), CodeInvalidArgument)
	expectCode(t, s.RestoreFile("bad\x00name"), CodeInvalidArgument)
	path := filepath.Join(dir, "ok.mmsnap")
	must(t, s.SnapshotFile(path))
	bytes, err := os.ReadFile(path)
	must(t, err)
	cut := filepath.Join(dir, "cut.mmsnap")
	must(t, os.WriteFile(cut, bytes[:len(bytes)-3], 0o644))
	expectCode(t, s.RestoreFile(cut), CodeCorruptFile)
	_, err = InspectSnapshotFile(cut)
	expectCode(t, err, CodeCorruptFile)
	must(t, os.WriteFile(cut, nil, 0o644))
	expectCode(t, s.RestoreFile(cut), CodeCorruptFile)
	if s.Position() != 10 {
		t.Fatal("a failed restore moved the stream")
	}
}

func TestAPI_ImportMamba(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mamba.safetensors")
	writeMambaCheckpoint(t, path)
	mem := DefaultConfig()
	mem.NoteWindow, mem.PoolCapacity, mem.SummaryDim, mem.AttnHeads = 2, 3, 8, 2
	m, err := ImportMamba(path, mem, 5, oneThread)
	must(t, err)
	defer m.Close()
	c := m.Config()
	if c.VocabSize != 40 || c.DModel != 16 || c.NLayer != 2 || c.DState != 4 || c.DConv != 4 ||
		c.Expand != 2 || c.DtRank != 3 || c.NoteWindow != 2 || c.PoolCapacity != 3 {
		t.Fatalf("imported config %+v", c)
	}
	s := newSession(t, m)
	l, err := s.Feed(tokens(12, 40, 15), LogitsLast)
	if err != nil || len(l) != 40 {
		t.Fatalf("%d %v", len(l), err)
	}
	_, err = ImportMamba(filepath.Join(dir, "none.safetensors"), mem, 5, oneThread)
	expectCode(t, err, CodeIO)
	own := filepath.Join(dir, "own.safetensors")
	must(t, smallModel(t, 1).Save(own))
	_, err = ImportMamba(own, mem, 5, oneThread)
	expectCode(t, err, CodeTensorMissing)
}

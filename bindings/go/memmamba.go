// Package memmamba runs and trains MemMamba models (Mamba with a bounded
// note-taking memory) through the memmamba C library.
//
//	model, err := memmamba.NewModel(memmamba.DefaultConfig(), 42, nil)
//	if err != nil { ... }
//	defer model.Close()
//	s, err := model.NewSession(nil)
//	if err != nil { ... }
//	defer s.Close()
//	logits, err := s.Feed([]int32{72, 105, 33}, memmamba.LogitsLast)
//
// Every call that can fail returns an error of type *Error (a status code
// of the C API and the library's message); a failed call changes nothing.
//
// Handles (Model, Session, Trainer) are freed by Close; a finalizer frees a
// forgotten one, as a backstop only. A Model may be used by any number of
// goroutines at once; a Session or Trainer by one goroutine at a time. A
// Session keeps its Model reachable, and Model.Close refuses while sessions
// are open.
//
// Building: the package links -lmemmamba. Where the library is not installed
// in the compiler's default paths, point cgo at it:
//
//	CGO_CFLAGS="-I<prefix>/include" CGO_LDFLAGS="-L<prefix>/lib" go build
//
// (or use the output of `pkg-config --cflags --libs memmamba`), and let the
// loader find it at run time (LD_LIBRARY_PATH, or a run path in CGO_LDFLAGS).
package memmamba

/*
#cgo LDFLAGS: -lmemmamba
#include <stdlib.h>
#include "memmamba/memmamba.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// The C API's status codes (mm_status); their values never change.
const (
	CodeOK              = 0
	CodeInvalidArgument = -1 // a bad argument: count, enum value, length
	CodeStructSize      = -2 // an options struct of an unknown size
	CodeTokenOutOfRange = -3 // a token id < 0 or >= vocab size
	CodeOutOfMemory     = -4
	CodeIO              = -5 // a file could not be opened, read or written
	CodeCorruptFile     = -6 // a file or snapshot is truncated or malformed
	CodeTensorMissing   = -7
	CodeTensorShape     = -8
	CodeTensorDtype     = -9
	CodeNonFinite       = -10 // NaN or Inf in weights, a loss or a gradient
	CodeConfig          = -11 // an invalid model configuration
	CodeModelMismatch   = -12 // handles or a snapshot of different models
	CodeUnsupported     = -13 // not available in this build or machine
	CodeBufferTooSmall  = -14
	CodeInternal        = -15 // a bug in the library
	CodeChecksum        = -16 // a snapshot's bytes changed after writing
	CodeVersion         = -17 // a snapshot of a newer format
	CodeNoDevice        = -18 // MM_DEVICE_CUDA without a usable GPU or driver
	CodeComm            = -19 // data-parallel training: a collective (NCCL) failed
)

// ABIVersion is the C ABI this package was written for.
const ABIVersion = 1

// Error is a failed call: a status code (the Code* constants) and what the
// library, or this package for checks made on the Go side, said about it.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string {
	name := StatusString(e.Code)
	if e.Msg == "" {
		return "memmamba: " + name
	}
	return "memmamba: " + name + ": " + e.Msg
}

// Is reports whether target is an *Error with the same Code (and, if target
// has one, the same Msg), so that errors.Is(err, &memmamba.Error{Code:
// memmamba.CodeIO}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// StatusString is the library's static name and description of a code
// ("MM_ERR_IO: input/output error").
func StatusString(code int) string {
	return C.GoString(C.mm_status_string(C.mm_status(code)))
}

// Version is the library's version, e.g. "0.1.0".
func Version() string { return C.GoString(C.mm_version_string()) }

// VersionNumber is the library's MAJOR*10000 + MINOR*100 + PATCH.
func VersionNumber() uint32 { return uint32(C.mm_version()) }

func newError(code int, msg string) error { return &Error{Code: code, Msg: msg} }

func invalid(format string, args ...interface{}) error {
	return &Error{Code: CodeInvalidArgument, Msg: fmt.Sprintf(format, args...)}
}

func closedError(what string) error {
	return &Error{Code: CodeInvalidArgument, Msg: what + " is closed"}
}

// threadCall runs f, which makes one C call, with the goroutine locked to
// its OS thread, and turns a failed status into an *Error carrying that
// thread's mm_last_error(): unlocked, the goroutine could move to another
// thread between the call and the read of the (thread-local) message.
func threadCall(f func() C.mm_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.MM_OK {
		return nil
	}
	return newError(int(st), C.GoString(C.mm_last_error()))
}

// cPath converts a Go path to a C string the caller frees with C.free.
func cPath(path string) (*C.char, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, invalid("path %q contains a NUL byte", path)
	}
	return C.CString(path), nil
}

func freeC(p *C.char) { C.free(unsafe.Pointer(p)) }

func checkABI() error {
	if abi := uint32(C.mm_abi_version()); abi != ABIVersion {
		return newError(CodeUnsupported, fmt.Sprintf("the library has ABI version %d, this package %d", abi, ABIVersion))
	}
	return nil
}

// tokensPtr is a pointer to the first token, or nil for none. C reads the
// tokens during the call only.
func tokensPtr(tokens []int32) *C.int32_t {
	if len(tokens) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&tokens[0]))
}

func floatsPtr(f []float32) *C.float {
	if len(f) == 0 {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&f[0]))
}

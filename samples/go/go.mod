module memmamba.dev/samples

go 1.19

require memmamba.dev/memmamba v0.0.0

// The bindings from this repository (no network needed).
replace memmamba.dev/memmamba => ../../bindings/go

module memmamba.dev/memmamba

go 1.19

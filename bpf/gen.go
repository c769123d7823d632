package bpf

// The generated steer_bpfel.go/steer_bpfel.o are committed; regenerate with
// "go generate ./bpf/" (needs clang, llvm-strip, libbpf-dev and
// linux-libc-dev) and verify with bpf/regen-check.sh.
//
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-Wall -Werror -Iinclude" steer steer.c

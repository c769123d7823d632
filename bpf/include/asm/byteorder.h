/*
 * Architecture-neutral shim: BPF objects built here are little-endian
 * only (bpf2go -target bpfel).
 */
#include <linux/byteorder/little_endian.h>

/*
 * Architecture-neutral shim so the UAPI headers can be used with
 * "clang -target bpfel" without the multiarch include directory.
 */
#include <asm-generic/swab.h>

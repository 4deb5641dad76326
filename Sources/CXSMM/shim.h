// libxsmm 1.17 (Debian libxsmm-dev: static libxsmm.a and its pkg-config file libxsmm.pc), whose JIT
// kernels CSmallGemm wraps for attention's per-head products (docs/performance.md, "libxsmm and oneDNN
// against OpenBLAS and our bf16 GEMM").
#ifndef TANDEM_CXSMM_SHIM_H
#define TANDEM_CXSMM_SHIM_H
#include <libxsmm.h>
#endif

// libxsmm 1.17 (Debian libxsmm-dev: static libxsmm.a and its pkg-config file libxsmm.pc), the JIT
// small-matrix and batch-reduce GEMMs that CGemmLibs measures against OpenBLAS (docs/performance.md,
// "libxsmm and oneDNN against OpenBLAS and our bf16 GEMM").
#ifndef TANDEM_CXSMM_SHIM_H
#define TANDEM_CXSMM_SHIM_H
#include <libxsmm.h>
#endif

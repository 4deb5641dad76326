// oneDNN 2.6 (Debian libdnnl-dev; OpenMP runtime), whose matmul primitive CGemmLibs measures against
// OpenBLAS and Tandem's bf16 GEMM (docs/performance.md, "libxsmm and oneDNN against OpenBLAS and our
// bf16 GEMM").
#ifndef TANDEM_CDNNL_SHIM_H
#define TANDEM_CDNNL_SHIM_H
#include <oneapi/dnnl/dnnl.h>
#endif

// OpenBLAS's cblas.h (found through pkg-config `openblas`; the generic `blas` would link a library
// without openblas_set_num_threads and cblas_sbgemm).
#ifndef TANDEM_CBLAS_SHIM_H
#define TANDEM_CBLAS_SHIM_H
#include <cblas.h>
#endif

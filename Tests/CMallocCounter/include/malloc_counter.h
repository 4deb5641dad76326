// Counts heap allocations made by this process while counting is on, so a test can show that a
// steady-state training step allocates nothing. Linked into the test executable only: its malloc,
// calloc, realloc, posix_memalign, aligned_alloc and memalign interpose glibc's and forward to them.
#ifndef TANDEM_MALLOC_COUNTER_H
#define TANDEM_MALLOC_COUNTER_H
#include <stdint.h>

void malloc_counter_start(void);
/// Stops counting and returns the number of allocations since `malloc_counter_start`.
uint64_t malloc_counter_stop(void);
#endif

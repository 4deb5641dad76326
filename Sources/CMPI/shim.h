// mpi.h plus tiny accessors for the predefined handles that Swift cannot import: in Open MPI they are
// macros that take the address of a global object (`((MPI_Comm)&ompi_mpi_comm_world)`), which the Clang
// importer does not turn into Swift constants. Every accessor is `static inline` and prefixed `cmpi_`;
// this module promises no Swift API of its own.
#ifndef TANDEM_CMPI_SHIM_H
#define TANDEM_CMPI_SHIM_H
#include <mpi.h>
#include <stdint.h>
#include <sched.h>

static inline MPI_Comm cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm cmpi_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm cmpi_comm_null(void) { return MPI_COMM_NULL; }

static inline MPI_Datatype cmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cmpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype cmpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype cmpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype cmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype cmpi_char(void) { return MPI_CHAR; }

static inline MPI_Op cmpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Op cmpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op cmpi_op_min(void) { return MPI_MIN; }
static inline MPI_Op cmpi_op_bor(void) { return MPI_BOR; }

static inline void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request cmpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *cmpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Info cmpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Win cmpi_win_null(void) { return MPI_WIN_NULL; }
static inline MPI_Errhandler cmpi_errors_return(void) { return MPI_ERRORS_RETURN; }

static inline int cmpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int cmpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int cmpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int cmpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int cmpi_success(void) { return MPI_SUCCESS; }
static inline int cmpi_undefined(void) { return MPI_UNDEFINED; }
static inline int cmpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int cmpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int cmpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }
static inline int cmpi_lock_shared(void) { return MPI_LOCK_SHARED; }

static inline int cmpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int cmpi_any_tag(void) { return MPI_ANY_TAG; }

// Atomics on memory that several processes map (an MPI shared-memory window): Swift's own atomics only
// cover memory Swift allocated. Sequentially consistent, so a store before a flag is seen before the flag.
static inline uint64_t cmpi_shm_load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void cmpi_shm_store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t cmpi_shm_fetch_add(uint64_t *p, uint64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline void cmpi_shm_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
static inline void cmpi_yield(void) { sched_yield(); }

// bf16 gradient compression between nodes (distributed.compress: bf16), as Horovod's fp16 compression:
// fp32 -> bf16 with round-to-nearest-even (NaN kept quiet), bf16 -> fp32 exactly, and an MPI_Op that
// sums bf16 vectors in fp32 and rounds each sum back to bf16 (created once, on first use).
static inline uint16_t cmpi_bf16_from_f32(float f) {
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float cmpi_f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
static inline void cmpi_bf16_encode(const float *in, uint16_t *out, long n) {
    for (long i = 0; i < n; i++) out[i] = cmpi_bf16_from_f32(in[i]);
}
static inline void cmpi_bf16_decode(const uint16_t *in, float *out, long n) {
    for (long i = 0; i < n; i++) out[i] = cmpi_f32_from_bf16(in[i]);
}
static void cmpi_bf16_sum_function(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = (const uint16_t *)in;
    uint16_t *b = (uint16_t *)inout;
    for (int i = 0; i < *len; i++) b[i] = cmpi_bf16_from_f32(cmpi_f32_from_bf16(a[i]) + cmpi_f32_from_bf16(b[i]));
}
static inline MPI_Op cmpi_op_bf16_sum(void) {
    static MPI_Op op = MPI_OP_NULL;
    if (op == MPI_OP_NULL) MPI_Op_create(cmpi_bf16_sum_function, 1, &op);
    return op;
}
static inline MPI_Datatype cmpi_uint16(void) { return MPI_UINT16_T; }

#endif

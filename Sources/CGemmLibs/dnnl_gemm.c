// Row-major products through oneDNN 2.6's matmul primitive (see CGemmLibs.h), written for Tandem
// against oneDNN's C API. Transposes and leading dimensions are strides of the memory descriptors;
// a primitive (and for bf16 its two reorders) is created once per shape and reused.
#define _GNU_SOURCE  // RTLD_DEFAULT
#include "CGemmLibs.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int dnnlState = -1;
static const char *dnnlError = "";
static char dnnlImpl[128];
static char versionText[32];

int tandem_dnnl_init(int threads) {
    if (dnnlState < 0) {
        dnnlState = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success
            && dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success;
        if (!dnnlState) dnnlError = "could not create oneDNN's CPU engine";
    }
    // libdnnl runs on OpenMP (libgomp); without this it would use every core.
    void (*setThreads)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (setThreads && threads > 0) setThreads(threads);
    return dnnlState;
}

const char *tandem_dnnl_version(void) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(versionText, sizeof versionText, "%d.%d.%d", v->major, v->minor, v->patch);
    return versionText;
}

const char *tandem_dnnl_last_error(void) { return dnnlError; }
const char *tandem_dnnl_last_impl(void) { return dnnlImpl; }

// MARK: - Cache

typedef struct {
    int bf16, transA, transB;
    long m, n, k, lda, ldb, ldc, strideA, strideB, strideC, count;
    float alpha, beta;
} Key;

typedef struct {
    Key key;
    dnnl_primitive_t matmul, reorderA, reorderB;
    dnnl_memory_t a, b, c;   // the matmul's operands (for bf16: a and b are its own bf16 buffers)
    dnnl_memory_t userA, userB;  // bf16 only: the fp32 operands the reorders read
} Entry;

enum { MAX_ENTRIES = 256 };
static Entry entries[MAX_ENTRIES];
static int entryCount;

// A (count?, rows, cols) fp32 view of row-major storage (stored transposed when `trans`), row stride ld.
static void stridedDesc(dnnl_memory_desc_t *md, long count, long stride, long rows, long cols, long ld, int trans,
                        dnnl_data_type_t type) {
    dnnl_dims_t dims, strides;
    if (count > 0) {
        dims[0] = count; dims[1] = rows; dims[2] = cols;
        strides[0] = stride; strides[1] = trans ? 1 : ld; strides[2] = trans ? ld : 1;
        dnnl_memory_desc_init_by_strides(md, 3, dims, type, strides);
    } else {
        dims[0] = rows; dims[1] = cols;
        strides[0] = trans ? 1 : ld; strides[1] = trans ? ld : 1;
        dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides);
    }
}

static void anyDesc(dnnl_memory_desc_t *md, long count, long rows, long cols, dnnl_data_type_t type) {
    dnnl_dims_t dims;
    if (count > 0) {
        dims[0] = count; dims[1] = rows; dims[2] = cols;
        dnnl_memory_desc_init_by_tag(md, 3, dims, type, dnnl_format_tag_any);
    } else {
        dims[0] = rows; dims[1] = cols;
        dnnl_memory_desc_init_by_tag(md, 2, dims, type, dnnl_format_tag_any);
    }
}

#define CHECK(call, what) do { dnnl_status_t s_ = (call); if (s_ != dnnl_success) { \
    snprintf(errorText, sizeof errorText, "%s: %s", what, dnnl_status2str(s_)); dnnlError = errorText; \
    goto fail; } } while (0)

static char errorText[160];

static Entry *create(const Key *key) {
    if (entryCount == MAX_ENTRIES) { dnnlError = "too many shapes cached"; return NULL; }
    Entry e;
    memset(&e, 0, sizeof e);
    e.key = *key;
    long count = key->count > 1 ? key->count : 0;  // 0: a 2-D matmul
    dnnl_memory_desc_t userA, userB, dst, srcAny, weiAny;
    stridedDesc(&userA, count, key->strideA, key->m, key->k, key->lda, key->transA, dnnl_f32);
    stridedDesc(&userB, count, key->strideB, key->k, key->n, key->ldb, key->transB, dnnl_f32);
    stridedDesc(&dst, count, key->strideC, key->m, key->n, key->ldc, 0, dnnl_f32);
    if (key->bf16) {
        anyDesc(&srcAny, count, key->m, key->k, dnnl_bf16);
        anyDesc(&weiAny, count, key->k, key->n, dnnl_bf16);
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t postOps = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_primitive_attr_create(&attr), "attr");
    if (key->alpha != 1) CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &key->alpha), "output scale");
    if (key->beta != 0) {
        CHECK(dnnl_post_ops_create(&postOps), "post-ops");
        CHECK(dnnl_post_ops_append_sum(postOps, key->beta), "sum post-op");
        CHECK(dnnl_primitive_attr_set_post_ops(attr, postOps), "set post-ops");
    }
    CHECK(dnnl_matmul_desc_init(&desc, key->bf16 ? &srcAny : &userA, key->bf16 ? &weiAny : &userB, NULL, &dst),
          "matmul descriptor");
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL), "matmul primitive descriptor");
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(dnnlImpl, sizeof dnnlImpl, "%s", impl);
    CHECK(dnnl_primitive_create(&e.matmul, pd), "matmul primitive");
    CHECK(dnnl_memory_create(&e.c, &dst, engine, DNNL_MEMORY_NONE), "memory C");
    if (!key->bf16) {
        CHECK(dnnl_memory_create(&e.a, &userA, engine, DNNL_MEMORY_NONE), "memory A");
        CHECK(dnnl_memory_create(&e.b, &userB, engine, DNNL_MEMORY_NONE), "memory B");
    } else {
        const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *wei = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        CHECK(dnnl_memory_create(&e.a, src, engine, DNNL_MEMORY_ALLOCATE), "bf16 A");
        CHECK(dnnl_memory_create(&e.b, wei, engine, DNNL_MEMORY_ALLOCATE), "bf16 B");
        CHECK(dnnl_memory_create(&e.userA, &userA, engine, DNNL_MEMORY_NONE), "memory A");
        CHECK(dnnl_memory_create(&e.userB, &userB, engine, DNNL_MEMORY_NONE), "memory B");
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &userA, engine, src, engine, NULL), "reorder A descriptor");
        CHECK(dnnl_primitive_create(&e.reorderA, rpd), "reorder A");
        dnnl_primitive_desc_destroy(rpd);
        rpd = NULL;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &userB, engine, wei, engine, NULL), "reorder B descriptor");
        CHECK(dnnl_primitive_create(&e.reorderB, rpd), "reorder B");
        dnnl_primitive_desc_destroy(rpd);
        rpd = NULL;
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (postOps) dnnl_post_ops_destroy(postOps);
    entries[entryCount] = e;
    return &entries[entryCount++];
fail:
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (postOps) dnnl_post_ops_destroy(postOps);
    dnnl_primitive_t prims[] = {e.matmul, e.reorderA, e.reorderB};
    for (int i = 0; i < 3; i++) if (prims[i]) dnnl_primitive_destroy(prims[i]);
    dnnl_memory_t mems[] = {e.a, e.b, e.c, e.userA, e.userB};
    for (int i = 0; i < 5; i++) if (mems[i]) dnnl_memory_destroy(mems[i]);
    return NULL;
}

static Entry *lookup(const Key *key) {
    for (int i = entryCount - 1; i >= 0; i--) {
        if (memcmp(&entries[i].key, key, sizeof *key) == 0) return &entries[i];
    }
    return create(key);
}

static int run(const Key *key, const float *a, const float *b, float *c) {
    if (tandem_dnnl_init(0) != 1) return 0;
    if (key->m == 0 || key->n == 0 || key->count == 0) return 1;
    Entry *e = lookup(key);
    if (!e) return 0;
    dnnl_memory_set_data_handle(e->c, c);
    if (key->bf16) {
        dnnl_memory_set_data_handle(e->userA, (void *)a);
        dnnl_memory_set_data_handle(e->userB, (void *)b);
        dnnl_exec_arg_t ra[] = {{DNNL_ARG_FROM, e->userA}, {DNNL_ARG_TO, e->a}};
        dnnl_exec_arg_t rb[] = {{DNNL_ARG_FROM, e->userB}, {DNNL_ARG_TO, e->b}};
        if (dnnl_primitive_execute(e->reorderA, stream, 2, ra) != dnnl_success
            || dnnl_primitive_execute(e->reorderB, stream, 2, rb) != dnnl_success) {
            dnnlError = "reorder failed"; return 0;
        }
    } else {
        dnnl_memory_set_data_handle(e->a, (void *)a);
        dnnl_memory_set_data_handle(e->b, (void *)b);
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    if (dnnl_primitive_execute(e->matmul, stream, 3, args) != dnnl_success) { dnnlError = "matmul failed"; return 0; }
    dnnl_stream_wait(stream);
    return 1;
}

static Key makeKey(int bf16, int transA, int transB, long m, long n, long k, float alpha, long lda, long strideA,
                   long ldb, long strideB, float beta, long ldc, long strideC, long count) {
    Key key;
    memset(&key, 0, sizeof key);  // the key is compared with memcmp: no stale padding
    key.bf16 = bf16; key.transA = transA != 0; key.transB = transB != 0;
    key.m = m; key.n = n; key.k = k; key.lda = lda; key.ldb = ldb; key.ldc = ldc;
    key.strideA = strideA; key.strideB = strideB; key.strideC = strideC; key.count = count;
    key.alpha = alpha; key.beta = beta;
    return key;
}

int tandem_dnnl_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) {
    Key key = makeKey(0, transA, transB, m, n, k, alpha, lda, 0, ldb, 0, beta, ldc, 0, 1);
    return run(&key, a, b, c);
}

int tandem_dnnl_sgemm_batch(int transA, int transB, long m, long n, long k, float alpha,
                            const float *a, long lda, long strideA, const float *b, long ldb, long strideB,
                            float beta, float *c, long ldc, long strideC, long count) {
    Key key = makeKey(0, transA, transB, m, n, k, alpha, lda, strideA, ldb, strideB, beta, ldc, strideC, count);
    return run(&key, a, b, c);
}

int tandem_dnnl_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           float beta, float *c, long ldc) {
    Key key = makeKey(1, transA, transB, m, n, k, alpha, lda, 0, ldb, 0, beta, ldc, 0, 1);
    return run(&key, a, b, c);
}

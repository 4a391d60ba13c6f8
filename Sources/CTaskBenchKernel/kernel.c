#include "CTaskBenchKernel.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define STEPFLOW_X86 1
#endif

int stepflow_tb_uses_avx2(void) {
#ifdef STEPFLOW_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#ifdef STEPFLOW_X86
__attribute__((target("avx2,fma")))
static double compute_avx2(long iterations) {
    __m256d a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm256_set_pd(1.0, 2.0, 3.0, 4.0);
    for (long iter = 0; iter < iterations; iter++) {
        for (int i = 0; i < 16; i++) a[i] = _mm256_fmadd_pd(a[i], a[i], a[i]);
    }
    double *c = (double *)a;
    double dot = 1.0;
    for (int i = 0; i < 64; i++) dot *= c[i];
    return dot;
}
#endif

static double compute_scalar(long iterations) {
    double a[64];
    for (int i = 0; i < 64; i++) a[i] = 1.2345;
    for (long iter = 0; iter < iterations; iter++) {
        for (int i = 0; i < 64; i++) a[i] = a[i] * a[i] + a[i];
    }
    double dot = 1.0;
    for (int i = 0; i < 64; i++) dot *= a[i];
    return dot;
}

double stepflow_tb_compute(long iterations) {
#ifdef STEPFLOW_X86
    static int avx2 = -1;
    if (avx2 < 0) avx2 = stepflow_tb_uses_avx2();
    if (avx2) return compute_avx2(iterations);
#endif
    return compute_scalar(iterations);
}

double stepflow_tb_compute2(long iterations) {
    double a[32], b[32], c[32];
    for (int i = 0; i < 32; i++) { a[i] = 1.2345; b[i] = 1.010101; c[i] = 0; }
    for (long iter = 0; iter < iterations; iter++) {
        for (int i = 0; i < 32; i++) c[i] = c[i] + a[i] * b[i];
    }
    double sum = 0;
    for (int i = 0; i < 32; i++) sum += c[i];
    return sum;
}

long long stepflow_tb_busy_wait(long iterations) {
    long long acc = 113;
    for (long iter = 0; iter < iterations; iter++) acc = acc * 139 % 2147483647;
    return acc;
}

#ifdef STEPFLOW_X86
__attribute__((target("avx")))
static void copy_aligned_avx(char *src, char *dst, size_t blocks) {
    for (size_t i = 0; i < blocks; i++) {
        _mm256_store_pd((double *)dst, _mm256_load_pd((double *)src));
        src += 32;
        dst += 32;
    }
}
#endif

/// Copies the first half of a region onto its second half, 32-byte aligned in the middle.
static int copy_half(char *base, size_t bytes) {
    if (bytes % 2 != 0 || ((uintptr_t)base) % 2 != 0) return -1;
    size_t prolog = ((uintptr_t)base % 32 != 0) ? 32 - (uintptr_t)base % 32 : 0;
    if (prolog > bytes) prolog = bytes - bytes % 2;
    char *aligned = base + prolog;
    size_t aligned_bytes = (bytes - prolog) / 64 * 64;
    size_t epilog = bytes - prolog - aligned_bytes;
    char *epilog_ptr = aligned + aligned_bytes;
    if (prolog != 0) memcpy(base + prolog / 2, base, prolog / 2);
#ifdef STEPFLOW_X86
    static int avx = -1;
    if (avx < 0) { __builtin_cpu_init(); avx = __builtin_cpu_supports("avx"); }
    if (avx) {
        copy_aligned_avx(aligned, aligned + aligned_bytes / 2, aligned_bytes / 64);
    } else {
        memcpy(aligned + aligned_bytes / 2, aligned, aligned_bytes / 2);
    }
#else
    memcpy(aligned + aligned_bytes / 2, aligned, aligned_bytes / 2);
#endif
    if (epilog != 0) memcpy(epilog_ptr + epilog / 2, epilog_ptr, epilog / 2);
    return 0;
}

int stepflow_tb_memory(char *scratch, size_t scratch_bytes, long iterations, int samples, long timestep) {
    if (samples <= 0) return -1;
    size_t sample_bytes = scratch_bytes / (size_t)samples;
    long iter = 0;
    long start = (timestep * iterations + iter) % samples;
    long stop = start + iterations < samples ? start + iterations : samples;
    if (stop - start > 0) {
        if (copy_half(scratch + start * sample_bytes, (size_t)(stop - start) * sample_bytes) != 0) return -1;
        iter += stop - start;
    }
    for (; iter + samples <= iterations; iter += samples) {
        start = (timestep * iterations + iter) % samples;
        if (copy_half(scratch + start * sample_bytes, (size_t)samples * sample_bytes) != 0) return -1;
    }
    start = (timestep * iterations + iter) % samples;
    long left = iterations - iter;
    if (left > 0) {
        if (copy_half(scratch + start * sample_bytes, (size_t)left * sample_bytes) != 0) return -1;
        iter += left;
    }
    return iter == iterations ? 0 : -1;
}

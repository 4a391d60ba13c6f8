// Task Bench's kernels, as its core_kernel.cc runs them (Apache-2.0, StanfordLegion/task-bench),
// written anew in C so that StepFlow's tasks run the same instructions as Task Bench's own MPI
// implementation: AVX2 with FMA where the CPU has them (chosen at run time), the scalar loop otherwise.
// Nothing else belongs here.
#ifndef STEPFLOW_CTASKBENCHKERNEL_H
#define STEPFLOW_CTASKBENCHKERNEL_H
#include <stddef.h>

/// compute_bound: 64 doubles, `iterations` times a = a*a + a (fused where the CPU can); returns their product.
double stepflow_tb_compute(long iterations);
/// compute_bound2: 32 lanes of C += A*B, `iterations` times; returns the sum of C.
double stepflow_tb_compute2(long iterations);
/// busy_wait: `iterations` modular multiplications.
long long stepflow_tb_busy_wait(long iterations);
/// memory_bound: strided copies of half a sample over the other half, as Task Bench walks its samples.
/// Returns 0, or -1 when the arguments cannot be walked (a sample size that is not even).
int stepflow_tb_memory(char *scratch, size_t scratch_bytes, long iterations, int samples, long timestep);
/// Whether the AVX2 + FMA path is in use on this CPU.
int stepflow_tb_uses_avx2(void);

#endif

// gpu.cu - device detection, buffers and copy-engine descriptors (see attn_gpu.h).
#include <cuda_runtime.h>
#include <cudaTypedefs.h> /* the type of cuTensorMapEncodeTiled */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_gpu.h"

extern "C" int attn_cuda_status(cudaError_t err, const char *where)
{
    if (err == cudaSuccess) return ATTN_OK;
    if (err == cudaErrorMemoryAllocation)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, "%s: %s", where, cudaGetErrorString(err));
    return attn_fail(ATTN_ERR_CUDA, "%s: %s (%s)", where, cudaGetErrorName(err), cudaGetErrorString(err));
}

extern "C" int attn_cuda_launch_status(const char *kernel_name)
{
    return attn_cuda_status(cudaGetLastError(), kernel_name);
}

extern "C" int attn_gpu_available(char *why, size_t why_len)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        /* in learner terms first; the driver's own words only when they say something else */
        const char *reason = "no CUDA device found";
        if (err == cudaErrorInsufficientDriver) reason = "no CUDA device found (the NVIDIA driver is missing or too old)";
        else if (err != cudaSuccess && err != cudaErrorNoDevice) reason = cudaGetErrorString(err);
        if (why) snprintf(why, why_len, "%s: GPU part skipped", reason);
        cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        return 0;
    }
    if (why && why_len) why[0] = '\0';
    return 1;
}

extern "C" void attn_gpu_describe(char *buf, size_t len)
{
    cudaDeviceProp p;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        snprintf(buf, len, "no CUDA device");
        return;
    }
    snprintf(buf, len, "%s (sm_%d%d, %d SMs, %.0f MB L2)", p.name, p.major, p.minor, p.multiProcessorCount,
             p.l2CacheSize / 1e6);
}

extern "C" int attn_dalloc(void **ptr, size_t bytes)
{
    *ptr = NULL;
    int st = attn_cuda_status(cudaMalloc(ptr, bytes ? bytes : 1), "cudaMalloc");
    if (st) return st;
    return attn_dpoison(*ptr, bytes);
}

extern "C" void attn_dfree(void *ptr)
{
    if (ptr) cudaFree(ptr);
}

extern "C" int attn_h2d(void *dst, const void *src, size_t bytes)
{
    return attn_cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host->device");
}

extern "C" int attn_d2h(void *dst, const void *src, size_t bytes)
{
    return attn_cuda_status(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device->host");
}

extern "C" int attn_dpoison(void *ptr, size_t bytes)
{
    return attn_cuda_status(cudaMemset(ptr, ATTN_POISON_BYTE, bytes), "cudaMemset (poison)");
}

extern "C" int attn_dsync(void) { return attn_cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

extern "C" int attn_kv_tensor_map(CUtensorMap *map, const uint16_t *kv, const attn_shape *shape, int box_cols,
                                  int box_rows, int swizzle_128)
{
    if (!map || !kv || !shape)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "attn_kv_tensor_map: map, kv and shape must not be NULL");
    if ((uintptr_t)kv % 16 != 0 || box_cols < 1 || box_cols > 256 || box_rows < 1 || box_rows > 256 ||
        box_cols > shape->D || (box_cols * 2) % 16 != 0 || (swizzle_128 && box_cols != 64))
        return attn_fail(ATTN_ERR_BAD_ARGUMENT,
                         "attn_kv_tensor_map: kv must be 16-byte aligned and the box at most 256 x 256 with rows "
                         "of a multiple of 16 bytes, at most D wide (64 columns with swizzle_128): box %d x %d, "
                         "D=%d", box_cols, box_rows, shape->D);
    static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    if (!encode) {
        cudaDriverEntryPointQueryResult found;
        void *fn = NULL;
        const cudaError_t e =
            cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
        if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || !fn) {
            (void)cudaGetLastError();
            return attn_fail(ATTN_ERR_CUDA, "attn_kv_tensor_map: the driver has no cuTensorMapEncodeTiled");
        }
        encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
    }
    const cuuint64_t dims[3] = {(cuuint64_t)shape->D, (cuuint64_t)shape->G,
                                (cuuint64_t)shape->B * (cuuint64_t)shape->N};
    const cuuint64_t strides[2] = {(cuuint64_t)shape->D * 2, (cuuint64_t)shape->G * shape->D * 2}; /* bytes */
    const cuuint32_t box[3] = {(cuuint32_t)box_cols, 1, (cuuint32_t)box_rows}, elem[3] = {1, 1, 1};
    const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)kv, dims, strides, box, elem,
                              CU_TENSOR_MAP_INTERLEAVE_NONE,
                              swizzle_128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? ATTN_OK
                             : attn_fail(ATTN_ERR_CUDA, "attn_kv_tensor_map: cuTensorMapEncodeTiled failed (%d)", (int)r);
}

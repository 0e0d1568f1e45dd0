/*
 * compressed_attention.cu - lesson 07, CUDA part: NSA's compressed branch on the GPU (bf16 in, fp32
 * accumulation, bf16 out, fp32 lse).
 *
 *   compress_mean_kernel     mean of the l keys (values) of each span: memory-bound, one thread per
 *                            16 bytes of output
 *   compress_linear_kernel   the learned map [l*D] -> [D] per kv head: a GEMM [NC, l*D] x [l*D, D] on
 *                            tensor cores, where row i of the left matrix is the span of token i read
 *                            straight from kv (never materialised)
 *   cmp_attention_kernel     lesson 04's packed-GQA flash kernel (its tile step from common/flash_tile.cuh)
 *                            over the compressed tokens, with the compressed causal rule: row t sees
 *                            tokens 0 .. visible(t) - 1
 */
#include <cuda_runtime.h>
#include <math.h>

#include "attn_gpu.h"
#include "compressed_attention.h"
#include "flash_tile.cuh"
#include "ptx.cuh"

using namespace ptx;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = flash::kLog2e;

/* ---------------------------------------------------------------- bf16 helpers */

/* The two bf16 halves of a 32-bit word as floats (element 0 is the low half). */
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* ---------------------------------------------------------------- mean compression
 *
 * Parallelisation: one thread per 8 output elements (16 bytes) of kv_cmp [B, NC, G, D], in the
 * layout's order, so that neighbouring threads read neighbouring 16-byte pieces of each key row and
 * write neighbouring pieces of the output; a grid-stride loop covers any size. No shared memory: each
 * input row is read l / d times in all (once per token whose span holds it), and L2 serves the repeats.
 */
template <int D>
__global__ void __launch_bounds__(256) compress_mean_kernel(attn_shape sh, int l, int d, long nc,
                                                            const uint16_t *__restrict__ kv,
                                                            uint16_t *__restrict__ out)
{
    /* BEGIN SOLUTION */
    /* HINT: flat index e over B * NC * G * (D / 8) pieces: c = e % (D/8), then g, then i, then b.
     * Sum the l rows kv + ((b*N + i*d + r)*G + g)*D + 8c (one uint4 = 8 bf16 each, in fp32), multiply
     * by 1/l, and store 8 bf16 at out + 8e. Every offset in size_t: B*N*G*D passes 2^31. */
    constexpr int kChunks = D / 8;
    const size_t total = (size_t)sh.B * nc * sh.G * kChunks;
    const size_t row = (size_t)sh.G * D; /* elements from one key to the next */
    const float inv_l = 1.0f / (float)l;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(e % kChunks);
        const int g = (int)((e / kChunks) % sh.G);
        const long i = (long)((e / ((size_t)kChunks * sh.G)) % nc);
        const size_t b = e / ((size_t)kChunks * sh.G * nc);
        const uint16_t *x = kv + ((b * sh.N + (size_t)i * d) * sh.G + g) * D + c * 8;
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
        for (int r = 0; r < l; ++r) {
            const uint4 u = __ldg(reinterpret_cast<const uint4 *>(x + (size_t)r * row));
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) acc[2 * k] += bf16_lo(w[k]), acc[2 * k + 1] += bf16_hi(w[k]);
        }
        uint4 res;
        res.x = pack_bf16(acc[0] * inv_l, acc[1] * inv_l);
        res.y = pack_bf16(acc[2] * inv_l, acc[3] * inv_l);
        res.z = pack_bf16(acc[4] * inv_l, acc[5] * inv_l);
        res.w = pack_bf16(acc[6] * inv_l, acc[7] * inv_l);
        *reinterpret_cast<uint4 *>(out + e * 8) = res;
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- linear compression
 *
 * out[i, :] = X_i W_g with X_i = the l rows of token i's span laid end to end ([l*D], plus pos on
 * keys) and W_g = w[g] ([l*D, D]): per kv head a GEMM [NC, l*D] x [l*D, D]. It is compute-bound
 * (2 l D^2 FLOPs per token and head: 1 MFLOP at l = 32, D = 128), so it runs on tensor cores with
 * lesson 03's fragments: X plays Q (row-major A operand), W plays V (row-major [k][n] B operand, read
 * with ldmatrix.trans).
 *
 * Parallelisation: one block per (64 tokens, kv head g, batch b); 4 warps, warp w owns tokens
 * 16w .. 16w + 15 and all D outputs (D/8 m16n8 accumulator tiles per thread). The reduction over
 * l*D runs in steps of 64: shared memory holds two X tiles [64 tokens][64] and two W tiles [64][D]
 * (double buffered, XOR-swizzled). W arrives by cp.async. X goes through registers instead, because
 * the position embedding must be added on the way; its global loads are issued before a step's mmas
 * and stored to shared memory after them, so their latency hides behind the math.
 * Column block k0 of X_i is key row i*d + k0 / D, dims k0 % D .. + 63 (64 divides D): a strided
 * gather of rows, which is why X is never written out.
 */
constexpr int kLinTokens = 64; /* tokens per block */
constexpr int kLinK = 64;      /* reduction step */
constexpr int kLinABytes = kLinTokens * kLinK * 2;

template <int D>
__global__ void __launch_bounds__(kThreads) compress_linear_kernel(attn_shape sh, int l, int d, long nc,
                                                                   const uint16_t *__restrict__ kv,
                                                                   const uint16_t *__restrict__ w,
                                                                   const uint16_t *__restrict__ pos,
                                                                   uint16_t *__restrict__ out)
{
    constexpr int kDTiles = D / 8;
    constexpr int kBBytes = kLinK * D * 2;
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t a_s = smem_addr(smem), b_s = a_s + 2 * kLinABytes; /* [2][64][64], [2][64][D] */

    /* BEGIN SOLUTION */
    /* HINT: block (blockIdx.x, g = blockIdx.y, b = blockIdx.z) owns tokens i0 = 64 blockIdx.x ..
     * i0 + 63 of (b, g). Thread tid stages 16-byte piece c = tid % 8 of X rows tid / 8 + 16 it
     * (it = 0..3): in step s (k0 = 64 s) that is kv + ((b*N + i*d + k0/D)*G + g)*D + k0%D + 8c, zeros
     * for tokens >= NC, plus pos[(k0/D)*D + k0%D + 8c] when pos is not NULL. W rows k0 .. k0+63 of
     * w + g*l*D*D go by cp.async. Loop: wait + barrier; issue step s+1's loads; mma on step s's
     * buffers (X: ldmatrix like Q, W: ldmatrix.trans like V); store step s+1's X to the other buffer.
     * Epilogue: each thread's accumulator rows gid, gid + 8 of its warp's 16 tokens, columns
     * 8 nt + 2 tig, +1, as bf16 pairs. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
    const long i0 = (long)blockIdx.x * kLinTokens;
    const int g = blockIdx.y;
    const size_t b = blockIdx.z;
    const size_t row = (size_t)sh.G * D;
    const uint16_t *kv_bg = kv + (b * sh.N * sh.G + g) * D;
    const uint16_t *w_g = w + (size_t)g * l * D * D;
    const int n_steps = l * D / kLinK;

    /* this thread's X pieces: rows xr + 16 it, piece xc */
    const int xr = threadIdx.x / 8, xc = threadIdx.x % 8;
    uint4 x_regs[4], pos_reg = make_uint4(0u, 0u, 0u, 0u);
    auto load_x = [&](int s) {
        const int k0 = s * kLinK, r = k0 / D, c0 = k0 % D + xc * 8;
#pragma unroll
        for (int it = 0; it < 4; ++it) {
            const long i = i0 + xr + 16 * it;
            x_regs[it] = i < nc ? __ldg(reinterpret_cast<const uint4 *>(kv_bg + ((size_t)i * d + r) * row + c0))
                                : make_uint4(0u, 0u, 0u, 0u);
        }
        if (pos) pos_reg = __ldg(reinterpret_cast<const uint4 *>(pos + (size_t)r * D + c0));
    };
    auto store_x = [&](uint32_t dst) {
        const uint32_t pw[4] = {pos_reg.x, pos_reg.y, pos_reg.z, pos_reg.w};
#pragma unroll
        for (int it = 0; it < 4; ++it) {
            uint32_t xw[4] = {x_regs[it].x, x_regs[it].y, x_regs[it].z, x_regs[it].w};
            if (pos) /* keys: x + pos in fp32, rounded once to bf16 */
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    xw[k] = pack_bf16(bf16_lo(xw[k]) + bf16_lo(pw[k]), bf16_hi(xw[k]) + bf16_hi(pw[k]));
            const uint32_t addr = dst + swizzle<kLinK>(xr + 16 * it, xc);
            asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(xw[0]), "r"(xw[1]), "r"(xw[2]),
                         "r"(xw[3]));
        }
    };
    auto load_w = [&](uint32_t dst, int s) {
        constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
        const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
        const uint16_t *src = w_g + ((size_t)s * kLinK + r0) * D + c * 8;
#pragma unroll
        for (int it = 0; it < kLinK / kRowStep; ++it)
            cp_async_16(dst + swizzle<D>(r0 + it * kRowStep, c), src + (size_t)it * kRowStep * D, true);
    };

    float acc[kDTiles][4];
#pragma unroll
    for (int nt = 0; nt < kDTiles; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    uint32_t a_addr[4], b_addr[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        a_addr[c] = (warp * 16 + lane % 16) * (kLinK * 2) + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        b_addr[c] = (lane % 8 + ((lane / 8) % 2) * 8) * (D * 2) + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
    }

    load_x(0);
    store_x(a_s);
    load_w(b_s, 0);
    cp_async_commit();
    for (int s = 0; s < n_steps; ++s) {
        const uint32_t a_cur = a_s + (s & 1) * kLinABytes, b_cur = b_s + (s & 1) * kBBytes;
        const uint32_t a_next = a_s + ((s + 1) & 1) * kLinABytes, b_next = b_s + ((s + 1) & 1) * kBBytes;
        const bool more = s + 1 < n_steps;
        cp_async_wait_all();
        __syncthreads(); /* step s's X and W are in place for everyone; nobody still reads step s - 1's */
        if (more) {
            load_w(b_next, s + 1);
            cp_async_commit();
            load_x(s + 1);
        }
#pragma unroll
        for (int kk = 0; kk < kLinK / 16; ++kk) {
            uint32_t a[4];
            ldmatrix_x4(a, a_cur + a_addr[kk]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bw[4];
                ldmatrix_x4_trans(bw, b_cur + b_addr[dp % 4] + kk * 16 * (D * 2) + (dp / 4) * 128);
                mma_bf16(acc[2 * dp], a, bw[0], bw[1]);
                mma_bf16(acc[2 * dp + 1], a, bw[2], bw[3]);
            }
        }
        if (more) store_x(a_next);
    }

#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        const long i = i0 + warp * 16 + gid + rr * 8;
        if (i >= nc) continue;
        uint16_t *o_row = out + ((b * nc + i) * sh.G + g) * D;
#pragma unroll
        for (int nt = 0; nt < kDTiles; ++nt)
            *reinterpret_cast<uint32_t *>(o_row + nt * 8 + tig * 2) = pack_bf16(acc[nt][2 * rr], acc[nt][2 * rr + 1]);
    }
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- compressed attention
 *
 * Lesson 04's kernel with compressed tokens as the keys, built from the tile step of
 * common/flash_tile.cuh. Parallelisation (lesson 04's):
 *   grid   one block per (packed row block, kv head), batch in grid.y; kv heads in chunks whose
 *          compressed K/V fit in L2, inside a chunk the row blocks from last to first (the rows that
 *          see the most tokens start first): flash::PackedRows
 *   block  4 warps, 128 packed rows (R = i * hpg + hh: position i, head g * hpg + hh); warp = 32 rows
 *          (two m16 tiles); lane = rows gid, gid + 8 of each m16 tile, column pair tig of each n8 tile
 *   shared Q [128][D], one K and one V tile [64 tokens][D], bf16, swizzled; cp.async double buffering
 * What changes: row t sees the first visible(t) tokens (not t + 1 keys), so the key range of a block
 * is visible(t_last) tokens and a tile needs the mask when it reaches past visible(t_first). A row
 * that sees nothing keeps m = -inf and l = 0 and is written as o = 0, lse = -inf.
 */
constexpr int kBr = 128;                   /* packed rows per block */
constexpr int kBc = 64;                    /* compressed tokens per tile */
constexpr int kRowsPerWarp = kBr / kWarps; /* 32 */
constexpr int kMTiles = kRowsPerWarp / 16;
constexpr int kNTiles = kBc / 8;

/* Compressed tokens visible from position t: those whose span ends at or before t, i.e. the i with
 * i*d + l - 1 <= t, never more than NC. */
__device__ __forceinline__ long cmp_visible(long t, int l, int d, long nc)
{
    /* BEGIN SOLUTION stub="return 0;" */
    /* HINT: none while t < l - 1; then one more every d positions: (t - (l - 1)) / d + 1, capped at NC. */
    const int u = (int)t - (l - 1); /* positions are < N < 2^31: 32-bit division is the cheap one */
    return u < 0 ? 0 : min((long)(u / d + 1), nc);
    /* END SOLUTION */
}

template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    cmp_attention_kernel(attn_shape sh, int l, int d, long nc, float scale_log2, int groups_per_chunk,
                         const uint16_t *__restrict__ q, const uint16_t *__restrict__ k,
                         const uint16_t *__restrict__ v, uint16_t *__restrict__ o, float *__restrict__ lse)
{
    extern __shared__ __align__(128) uint8_t smem[];
    const uint32_t q_s = smem_addr(smem), k_s = q_s + kBr * D * 2, v_s = k_s + kBc * D * 2;
    const flash::PackedRows<kBr> w(sh, groups_per_chunk); /* lesson 04's block: rows R0 .. R0 + 127 of (b, g) */
    const size_t kv_stride = (size_t)sh.G * D;
    const int warp_row0 = (threadIdx.x / 32) * kRowsPerWarp; /* the warp's first row of the block */

    /* BEGIN SOLUTION */
    /* HINT: lesson 04's loop with the step of common/flash_tile.cuh, and three changes. (1) The
     * compressed K/V of (b, g) start at ((b * NC) * G + g) * D: batch b is NC tokens further, not N.
     * (2) The block's tiles: n_tiles = ceil(cmp_visible(t_last) / 64) (possibly 0: then load no K at
     * all), and a tile needs the mask when s0 + 64 > cmp_visible(t_first); NC is the limit of every
     * tile load. (3) The mask, flash::mask with a predicate (R, token) -> token * d + l - 1 <= t, the
     * position t = w.pos(R) of packed row R (in 32-bit int: the host checks that the ends fit). Rows
     * that see nothing end with l = 0, and acc.store writes o = 0, lse = -inf for them; every row
     * must be stored, even in a block with no tile. Before acc.store, cp_async_wait_all(): with no
     * tile, the Q copy is still in flight. */
    const uint16_t *k_bg = k + ((size_t)w.b * nc * sh.G + w.g) * D;
    const uint16_t *v_bg = v + ((size_t)w.b * nc * sh.G + w.g) * D;
    const long vis_first = cmp_visible(w.t_first, l, d, nc), vis_last = cmp_visible(w.t_last, l, d, nc);
    const int n_tiles = (int)((vis_last + kBc - 1) / kBc);

    flash::load_rows<D, kBr, kThreads>(q_s, w.R0, [&](long R) { return w.q_row<D>(sh, q, R); }, q);
    if (n_tiles > 0) flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, 0, nc); /* with no token to see, read none */
    cp_async_commit();
    const flash::Operand<D> q_op = flash::Operand<D>::a(q_s, warp_row0), k_op = flash::Operand<D>::k(k_s, 0),
                            v_op = flash::Operand<D>::v(v_s, 0);
    flash::OnlineSoftmax<D, kMTiles> acc; /* O, m, l of this thread's rows */

    for (int j = 0; j < n_tiles; ++j) {
        const long s0 = (long)j * kBc;
        cp_async_wait_all();
        __syncthreads(); /* K_j (and Q) have landed for everyone; nobody still reads V_{j-1} */
        flash::load_tile<D, kBc, kThreads>(v_s, v_bg, kv_stride, s0, nc);
        cp_async_commit();

        float s[kMTiles][kNTiles][4];
        flash::scores(s, q_op, k_op);
        /* Mask the tiles that reach past what the block's first position sees. Inside, the rule itself:
         * token s is hidden from row t when its span ends after t, s*d + l - 1 > t (a multiply, not a
         * division; tokens >= NC end after N - 1 >= t, so the end of the tokens needs no test). In 32
         * bits, which keeps this kernel out of spills: the host checks that the ends fit. */
        if (s0 + kBc > vis_first)
            flash::mask(s, w.R0 + warp_row0, s0, [&](long R, long key) {
                const int t = (int)w.pos(R), token = (int)key;
                return token * d + l - 1 <= t;
            });
        uint32_t p[kMTiles][kNTiles][2];
        acc.update(s, p, scale_log2);

        cp_async_wait_all();
        __syncthreads(); /* V_j has landed for everyone; nobody still reads K_j */
        if (j + 1 < n_tiles) {
            flash::load_tile<D, kBc, kThreads>(k_s, k_bg, kv_stride, s0 + kBc, nc);
            cp_async_commit();
        }
        acc.accumulate(p, v_op);
    }
    cp_async_wait_all(); /* with n_tiles = 0 the Q copy is still in flight: let it land before exiting */
    acc.store(scale_log2, w.R0 + warp_row0, [&](long R) { return w.dst<D>(sh, o, lse, R); });
    /* END SOLUTION */
}

/* ---------------------------------------------------------------- host side */

template <int D>
int launch_compress(const attn_shape *shape, const attn_nsa_params *p, long nc, const uint16_t *kv, const uint16_t *w,
                    const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream)
{
    if (p->mode == ATTN_NSA_MEAN) {
        const size_t pieces = (size_t)shape->B * nc * shape->G * (D / 8);
        const unsigned blocks = (unsigned)fmin((double)((pieces + 255) / 256), 65536.0 * 8);
        compress_mean_kernel<D><<<blocks, 256, 0, stream>>>(*shape, p->l, p->d, nc, kv, kv_cmp);
        return attn_cuda_launch_status("compress_mean_kernel");
    }
    const int smem_bytes = 2 * kLinABytes + 2 * kLinK * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(compress_linear_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    if (st) return st;
    const dim3 grid((unsigned)((nc + kLinTokens - 1) / kLinTokens), shape->G, shape->B);
    compress_linear_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, p->l, p->d, nc, kv, w, pos, kv_cmp);
    return attn_cuda_launch_status("compress_linear_kernel");
}

template <int D>
int launch_attention(const attn_shape *shape, const attn_nsa_params *p, long nc, float scale_log2, const uint16_t *q,
                     const uint16_t *k, const uint16_t *v, uint16_t *o, float *lse, cudaStream_t stream)
{
    const int smem_bytes = (kBr + 2 * kBc) * D * 2;
    int st = attn_cuda_status(
        cudaFuncSetAttribute(cmp_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
        "cudaFuncSetAttribute (shared memory)");
    int dev = 0, l2_bytes = 0;
    if (!st) st = attn_cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!st) st = attn_cuda_status(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev), "L2 size");
    if (st) return st;
    /* kv heads whose compressed K and V fit in half of L2 together */
    const double cmp_bytes = 4.0 * (double)(nc > 0 ? nc : 1) * D;
    const int groups_per_chunk = (int)fmax(1.0, fmin((double)shape->G, 0.5 * l2_bytes / cmp_bytes));
    const long packed_rows = (long)shape->M * (shape->H / shape->G);
    const dim3 grid((unsigned)((packed_rows + kBr - 1) / kBr) * (unsigned)shape->G, shape->B);
    cmp_attention_kernel<D><<<grid, kThreads, smem_bytes, stream>>>(*shape, p->l, p->d, nc, scale_log2,
                                                                     groups_per_chunk, q, k, v, o, lse);
    return attn_cuda_launch_status("cmp_attention_kernel");
}

/* The checks both entry points share: shape, NSA parameters, D. */
int check_common(const char *fn, const attn_shape *shape, const attn_nsa_params *p)
{
    int st = attn_check_shape(shape);
    if (st) return st;
    if ((st = attn_nsa_check(p)) != ATTN_OK) return st;
    if (shape->D != 64 && shape->D != 128)
        return attn_fail(ATTN_ERR_UNSUPPORTED_D, "%s: D=%d, this kernel supports 64 and 128", fn, shape->D);
    if (shape->B > 65535) return attn_fail(ATTN_ERR_BAD_SHAPE, "%s: B=%d must be <= 65535", fn, shape->B);
    return ATTN_OK;
}

} // namespace

extern "C" int nsa_compress_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *kv,
                                 const uint16_t *w, const uint16_t *pos, uint16_t *kv_cmp, cudaStream_t stream)
{
    int st = check_common("nsa_compress_cuda", shape, p);
    if (st) return st;
    if (!kv || !kv_cmp) return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cuda: kv and kv_cmp must not be NULL");
    if (p->mode == ATTN_NSA_LINEAR && !w)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_compress_cuda: linear mode needs the weights w [G, l*D, D]");
    if (((uintptr_t)kv | (uintptr_t)w | (uintptr_t)pos | (uintptr_t)kv_cmp) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_compress_cuda: kv, w, pos and kv_cmp must be 16-byte aligned");
    const long nc = attn_nsa_num_cmp(shape->N, p);
    if ((nc + kLinTokens - 1) / kLinTokens > 2147483647L)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_compress_cuda: NC=%ld compressed tokens is too many", nc);

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: with NC = 0 there is nothing to write (and a grid of 0 blocks is an error): return ATTN_OK.
     * Otherwise launch_compress<64> or <128> by shape->D. */
    if (nc == 0) return ATTN_OK;
    if (shape->D == 64) return launch_compress<64>(shape, p, nc, kv, w, pos, kv_cmp, stream);
    return launch_compress<128>(shape, p, nc, kv, w, pos, kv_cmp, stream);
    /* END SOLUTION */
}

extern "C" int nsa_cmp_attention_cuda(const attn_shape *shape, const attn_nsa_params *p, const uint16_t *q,
                                      const uint16_t *k_cmp, const uint16_t *v_cmp, uint16_t *o, float *lse,
                                      cudaStream_t stream)
{
    int st = check_common("nsa_cmp_attention_cuda", shape, p);
    if (st) return st;
    if (!shape->causal)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_attention_cuda: compressed attention is causal, set shape->causal");
    if (!q || !k_cmp || !v_cmp || !o || !lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, "nsa_cmp_attention_cuda: q, k_cmp, v_cmp, o and lse must not be NULL");
    if (((uintptr_t)q | (uintptr_t)k_cmp | (uintptr_t)v_cmp | (uintptr_t)o) % 16 != 0)
        return attn_fail(ATTN_ERR_BAD_ARGUMENT, "nsa_cmp_attention_cuda: q, k_cmp, v_cmp and o must be 16-byte aligned");
    const double blocks = ceil((double)shape->M * (shape->H / shape->G) / kBr) * shape->G;
    if (blocks > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_cmp_attention_cuda: the grid must have < 2^31 blocks");
    if ((double)shape->N + (double)kBc * p->d + p->l > 2147483647.0)
        return attn_fail(ATTN_ERR_BAD_SHAPE, "nsa_cmp_attention_cuda: N=%d with d=%d, l=%d: token ends pass 2^31",
                         shape->N, p->d, p->l);
    const long nc = attn_nsa_num_cmp(shape->N, p);
    const float scale_log2 = attn_softmax_scale(shape) * kLog2e;
    (void)nc, (void)scale_log2;

    /* BEGIN SOLUTION stub="return ATTN_ERR_NOT_IMPLEMENTED;" */
    /* HINT: once the kernel body is written: launch_attention<64> or <128> by shape->D. Every row is
     * written, even when NC = 0 (o = 0, lse = -inf), so always launch. */
    if (shape->D == 64) return launch_attention<64>(shape, p, nc, scale_log2, q, k_cmp, v_cmp, o, lse, stream);
    return launch_attention<128>(shape, p, nc, scale_log2, q, k_cmp, v_cmp, o, lse, stream);
    /* END SOLUTION */
}

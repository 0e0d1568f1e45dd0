// flash_tile.cuh - the flash-attention tile step of lessons 03 and 04, written once for the lessons
// that build on it (05 on) (CUDA C++, device code only). Lessons 03 and 04 write the step out in
// their own .cu, because writing it is what they teach; from lesson 05 on a kernel calls these
// functions and shows only what is new: which key tiles a block walks, and which keys a row sees.
//
// The step, in the names of the FlashAttention-2 paper (Dao, 2023, algorithm 1), for a block of
// query rows Q_i and one key tile K_j, V_j in shared memory:
//
//   load_rows / load_tile   Q_i and K_j, V_j into swizzled shared-memory tiles (cp.async)
//   scores                  S = Q_i K_j^T on mma.sync, raw dot products in fp32
//   mask                    S = -inf where a key is not visible (a predicate: causal, a window band,
//                           the compressed-token rule, the end of a listed block, ...)
//   OnlineSoftmax::update   m_new = max(m, rowmax S); P = 2^(S scale log2(e) - m_new);
//                           l = 2^(m - m_new) l + rowsum P; O = 2^(m - m_new) O; P leaves as bf16
//   OnlineSoftmax::accumulate  O += P V_j
//   epilogue                O / l as bf16 and lse = ln(l) + m (natural log, fp32), or, for a kernel
//                           that combines results itself, O / l times a per-row gate left in
//                           registers (NSA's gated branches), or O and (m, l) unnormalised (the
//                           partials of a split-KV decode, merged later with merge_weights)
//
// The parallelisation contract (lesson 03's fragments). Every function works on what one thread
// holds of a warp's part of the tiles; nothing here synchronises a block: the caller places the
// barriers between loading a tile and reading it, as lessons 03 and 04 do.
//   - A warp owns MT m16 tiles of rows (16 MT rows of the block's Q tile, from the row its Q Operand
//     starts at) and NT n8 tiles of keys (8 NT keys of the K and V tiles, from the row their Operands
//     start at). Lessons 05-07: 4 warps of 32 rows each (MT = 2), every warp all 64 keys of a tile
//     (NT = 8). A split of the keys instead (the warps share the rows, each owns 16 keys of a tile,
//     NT = 2) leaves one partial softmax per warp, merged at the end with merge_weights, as in a
//     split-KV decode.
//   - Lane (gid = lane / 4, tig = lane % 4) holds rows frag_row(mt, rr) = 16 mt + gid + 8 rr (rr = 0, 1)
//     and, of each n8 tile nt, columns frag_col(nt, e) = 8 nt + 2 tig + e (e = 0, 1):
//     s[mt][nt][2 rr + e] is the score of that row and column. o[mt][dt][2 rr + e] is the same for
//     output dims 8 dt + 2 tig + e.
//   - P leaves the softmax as bf16 pairs p[mt][nt][rr] (columns 2 tig, 2 tig + 1 of n8 tile nt): two
//     n8 tiles side by side are the A fragment of one k16 step of P V, so P never goes through shared
//     memory.
//   - The running max m is kept in score units (raw dot products) and scaled at each use; the running
//     sum l is this lane's part (its columns only) until sum_rows() adds the four lanes of a row, once
//     at the end instead of once per tile.
//   - Shared-memory tiles are [rows][D] bf16, 16-byte chunks XOR-swizzled by the row (ptx::swizzle<D>),
//     so that ldmatrix reads 8 rows of one chunk without bank conflicts.
#ifndef ATTN_FLASH_TILE_CUH
#define ATTN_FLASH_TILE_CUH

#include <math.h>
#include <stdint.h>

#include "attn.h"
#include "ptx.cuh"

namespace flash {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// This lane's fragment coordinates (see the contract above).
__device__ __forceinline__ int frag_row(int mt, int rr) { return mt * 16 + (int)(threadIdx.x % 32) / 4 + rr * 8; }
__device__ __forceinline__ int frag_col(int nt, int e) { return nt * 8 + (int)(threadIdx.x % 4) * 2 + e; }

// The hooks below (the mask predicate, where rows come from and go to) get rows and keys as 64-bit
// numbers in the caller's numbering: row_base + frag_row(mt, rr) and key_base + frag_col(nt, e), with
// the bases the caller's (a packed row R0 + warp_row0, a tile's first key s0). They are added in 64
// bits in this order, row_base + 16 mt + gid + 8 rr, so that the compiler computes row_base + gid once
// and adds constants; a 32-bit column added to a 64-bit base would cost a conversion per element.

// ---------------------------------------------------------------- copies into shared memory

// Rows [first, first + kRows) of a row-major tensor (row r at base + r * stride, D bf16 each) into a
// swizzled tile; rows at or past `limit` are zero-filled, not read. Thread x copies chunk x % (D / 8)
// of rows x / (D / 8) + kThreads / (D / 8) * it: neighbouring threads read neighbouring 16 bytes.
template <int D, int kRows, int kThreads>
__device__ __forceinline__ void load_tile(uint32_t tile, const uint16_t *base, size_t stride, long first, long limit)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    static_assert(kRows % kRowStep == 0, "the tile must be a whole number of copy rounds");
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
    const uint32_t dst = tile + ptx::swizzle<D>(r0, c);
    const uint16_t *src = base + (size_t)(first + r0) * stride + c * 8;
#pragma unroll
    for (int it = 0; it < kRows / kRowStep; ++it) {
        const bool valid = first + r0 + it * kRowStep < limit;
        // a zero-byte copy reads nothing, but its address must still be a valid one: `base`
        ptx::cp_async_16(dst + it * kRowStep * D * 2, valid ? src + (size_t)it * kRowStep * stride : base, valid);
    }
}

// A row of a tensor for a copy or a store, and whether it exists (rows past the end do not). The
// pointer may be computed for a row that does not exist (it is then never dereferenced); keeping it
// free of a select with another pointer, and never null, lets the compiler see that the tensor is in
// global memory (stores through a pointer it cannot trace become generic stores) and fold the column
// offset into the address.
template <class T>
struct Row {
    T *ptr;
    bool valid;
};

// kRows rows of D bf16 into a swizzled tile, tile row r from row_of(row_base + r) (a
// Row<const uint16_t>), zeros where it is not valid (rows past the end; the zero-byte copy then reads
// `any`, a valid address). For Q tiles whose rows are not evenly spaced (packed GQA rows:
// PackedRows::q_row).
template <int D, int kRows, int kThreads, class RowOf>
__device__ __forceinline__ void load_rows(uint32_t tile, long row_base, RowOf row_of, const uint16_t *any)
{
    constexpr int kChunks = D / 8, kRowStep = kThreads / kChunks;
    static_assert(kRows % kRowStep == 0, "the tile must be a whole number of copy rounds");
    const int r0 = threadIdx.x / kChunks, c = threadIdx.x % kChunks;
#pragma unroll
    for (int it = 0; it < kRows / kRowStep; ++it) {
        const Row<const uint16_t> row = row_of(row_base + r0 + it * kRowStep);
        ptx::cp_async_16(tile + ptx::swizzle<D>(r0 + it * kRowStep, c), row.valid ? row.ptr + c * 8 : any, row.valid);
    }
}

// ---------------------------------------------------------------- operands of the two products

// This lane's ldmatrix addresses in a swizzled [rows][D] tile, for one of the three operands. Entry c
// is the address of chunk pair c (k16 step c) of the lane's row; the XOR with the row's low 3 bits
// is the same for every multiple of 8 rows, so at(kk, row) reaches k16 step kk of `row` rows further
// by adding constants (folded into the ldmatrix offsets): 4 registers serve the whole tile.
template <int D>
struct Operand {
    static constexpr int kD = D, kRowBytes = D * 2;
    uint32_t addr[4];

    // Q as the A operand of S = Q K^T: matrices (rows 0-7, 8-15) x (dims 0-7, 8-15) of a m16 tile.
    static __device__ __forceinline__ Operand a(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        Operand op;
#pragma unroll
        for (int c = 0; c < 4; ++c)
            op.addr[c] = tile + (row0 + lane % 16) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        return op;
    }
    // K as the B operand of S = Q K^T (K^T is column-major K: no transpose): keys 0-7 dims 0-7,
    // keys 0-7 dims 8-15, keys 8-15 dims 0-7, keys 8-15 dims 8-15, i.e. two n8 tiles of one k16 step.
    static __device__ __forceinline__ Operand k(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        Operand op;
#pragma unroll
        for (int c = 0; c < 4; ++c)
            op.addr[c] = tile + (row0 + lane % 8 + (lane / 16) * 8) * kRowBytes + (((2 * c + (lane / 8) % 2) ^ (lane % 8)) * 16);
        return op;
    }
    // V as the B operand of O += P V, read with ldmatrix.trans: keys 0-15 of dims 0-7, then of 8-15.
    static __device__ __forceinline__ Operand v(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        Operand op;
#pragma unroll
        for (int c = 0; c < 4; ++c)
            op.addr[c] = tile + (row0 + lane % 8 + ((lane / 8) % 2) * 8) * kRowBytes + (((2 * c + lane / 16) ^ (lane % 8)) * 16);
        return op;
    }
    // k16 step kk along D (dims 16 kk .. 16 kk + 15), `row` rows below the operand's first row
    // (a multiple of 8).
    __device__ __forceinline__ uint32_t at(int kk, int row) const { return addr[kk % 4] + row * kRowBytes + (kk / 4) * 128; }
};

// The same operands in two registers instead of four: the lane's row address and the XOR of its
// chunk (chunk 2 kk + sel of a row r lies at ((2 kk) ^ (sel ^ (r & 7))) * 16, as 2 kk is even),
// paid for with one instruction per ldmatrix. For kernels short of registers (a launch bound of 4
// blocks of 128 threads leaves 128 per thread) whose loops are bound by memory, not by issue.
template <int D>
struct CompactOperand {
    static constexpr int kD = D, kRowBytes = D * 2;
    uint32_t row_addr; // the lane's row, chunk 0
    uint32_t x;        // sel ^ (row & 7), the XOR of its chunks

    static __device__ __forceinline__ CompactOperand make(uint32_t tile, int row, int sel)
    {
        CompactOperand op;
        op.row_addr = tile + row * kRowBytes;
        op.x = (uint32_t)(sel ^ (row & 7));
        return op;
    }
    static __device__ __forceinline__ CompactOperand a(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        return make(tile, row0 + lane % 16, lane / 16);
    }
    static __device__ __forceinline__ CompactOperand k(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        return make(tile, row0 + lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
    }
    static __device__ __forceinline__ CompactOperand v(uint32_t tile, int row0)
    {
        const int lane = threadIdx.x % 32;
        return make(tile, row0 + lane % 8 + ((lane / 8) % 2) * 8, lane / 16);
    }
    __device__ __forceinline__ uint32_t at(int kk, int row) const
    {
        return row_addr + row * kRowBytes + (((uint32_t)(2 * kk) ^ x) << 4);
    }
};

// ---------------------------------------------------------------- S = Q K^T

// The A fragments of Q, once, for a kernel that keeps Q in registers across tiles (where the warps
// split the keys, every warp reads all the rows: reading them once saves shared-memory traffic on
// every tile).
template <int MT, int KK, class QOperand>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qa)[MT][KK][4], const QOperand &q)
{
    static_assert(KK == QOperand::kD / 16, "one A fragment per k16 step of D");
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int kk = 0; kk < KK; ++kk) ptx::ldmatrix_x4(qa[mt][kk], q.at(kk, mt * 16));
}

// s = Q K^T for the warp's MT x NT tiles (raw dot products, fp32), Q read from shared memory at every
// k16 step: each K fragment then serves the MT m16 tiles before the next is loaded.
template <int D, int MT, int NT, template <int> class Op>
__device__ __forceinline__ void scores(float (&s)[MT][NT][4], const Op<D> &q, const Op<D> &k)
{
    static_assert(NT % 2 == 0, "ldmatrix_x4 loads two n8 tiles of K at once");
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) ptx::ldmatrix_x4(a[mt], q.at(kk, mt * 16));
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            uint32_t bk[4];
            ptx::ldmatrix_x4(bk, k.at(kk, np * 16));
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                ptx::mma_bf16(s[mt][2 * np], a[mt], bk[0], bk[1]);
                ptx::mma_bf16(s[mt][2 * np + 1], a[mt], bk[2], bk[3]);
            }
        }
    }
}

// The same with Q already in registers (load_q_fragments).
template <int MT, int NT, int KK, class KOperand>
__device__ __forceinline__ void scores(float (&s)[MT][NT][4], const uint32_t (&qa)[MT][KK][4], const KOperand &k)
{
    constexpr int D = KOperand::kD;
    static_assert(KK == D / 16, "one A fragment per k16 step of D");
    static_assert(NT % 2 == 0, "ldmatrix_x4 loads two n8 tiles of K at once");
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            uint32_t bk[4];
            ptx::ldmatrix_x4(bk, k.at(kk, np * 16));
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                ptx::mma_bf16(s[mt][2 * np], qa[mt][kk], bk[0], bk[1]);
                ptx::mma_bf16(s[mt][2 * np + 1], qa[mt][kk], bk[2], bk[3]);
            }
        }
}

// ---------------------------------------------------------------- the visibility hook

// s = -inf wherever visible(row, key) is false, for row = row_base + frag_row(mt, rr) and key =
// key_base + frag_col(nt, e) (64-bit, in the caller's numbering: see above). The predicate is the
// lesson's rule: causal, key <= t(row); a window band; the compressed-token rule key d + l - 1 <= t(row);
// the end of a listed block. It is inlined and unrolled: what depends on the row only is computed once
// per row. Call it only on the tiles that need it; a fully visible tile skips this loop altogether,
// which is most of the speed of a flash kernel (lesson 03).
template <int MT, int NT, class Visible>
__device__ __forceinline__ void mask(float (&s)[MT][NT][4], long row_base, long key_base, Visible visible)
{
    const int gid = (int)(threadIdx.x % 32) / 4, tig = (int)(threadIdx.x % 4);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const long row = row_base + mt * 16 + gid + rr * 8;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    if (!visible(row, key_base + nt * 8 + tig * 2 + e)) s[mt][nt][2 * rr + e] = -INFINITY;
        }
}

// ---------------------------------------------------------------- the online softmax

// Where a row's results go: its D outputs (bf16) and its lse; valid = false for a row past the end,
// which is then not stored (its pointers must still be valid addresses: see Row).
struct RowDst {
    uint16_t *o;
    float *lse;
    bool valid;
};

// The online-softmax state of this thread's 2 MT rows (see the contract): the output accumulator O,
// the running max m (score units) and this lane's part of the running sum l.
template <int D, int MT>
struct OnlineSoftmax {
    static constexpr int kDTiles = D / 8;
    float o[MT][kDTiles][4];
    float m[MT][2];
    float l[MT][2];

    __device__ __forceinline__ OnlineSoftmax() { reset(); }

    // No key seen yet: O = 0, m = -inf, l = 0 (a fused kernel reuses one state for several branches).
    __device__ __forceinline__ void reset()
    {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
            m[mt][0] = m[mt][1] = -INFINITY;
            l[mt][0] = l[mt][1] = 0.f;
        }
    }

    // One tile of scores s: probabilities 2^(s * scale_log2 - m) in base 2 (one ex2 each: pass the
    // softmax scale times log2(e) for raw scores, or 1 for scores already in base-2 units); -inf hides
    // a key. The row max is shared by the row's 4 lanes (two shuffles); the sum stays per lane.
    // A row that has seen no key yet keeps m = -inf: it uses 0 as the max, so that alpha =
    // 2^(-inf - 0) = 0 and p = 2^(-inf) = 0 instead of 2^(-inf - (-inf)) = NaN.
    // update_skip_unit_alpha: the same, but skips the rescale of O when no lane of the warp saw its max
    // move (alpha = 1 is exact, so this changes no bit); worth its vote and branch where a warp sees
    // few keys per tile (16 when the warps split the keys), so that the max soon stops moving.
    template <int NT>
    __device__ __forceinline__ void update(float (&s)[MT][NT][4], uint32_t (&p)[MT][NT][2], float scale_log2)
    {
        update_step<false>(s, p, scale_log2);
    }
    template <int NT>
    __device__ __forceinline__ void update_skip_unit_alpha(float (&s)[MT][NT][4], uint32_t (&p)[MT][NT][2], float scale_log2)
    {
        update_step<true>(s, p, scale_log2);
    }
    template <bool kSkipUnitAlpha, int NT>
    __device__ __forceinline__ void update_step(float (&s)[MT][NT][4], uint32_t (&p)[MT][NT][2], float scale_log2)
    {
        float alpha[MT][2];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float mx = m[mt][rr];
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rr], s[mt][nt][2 * rr + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
                alpha[mt][rr] = ptx::fast_exp2(m[mt][rr] * scale_log2 - m_scaled);
                m[mt][rr] = mx;
                float row_sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    const float p0 = ptx::fast_exp2(fmaf(s[mt][nt][2 * rr], scale_log2, -m_scaled));
                    const float p1 = ptx::fast_exp2(fmaf(s[mt][nt][2 * rr + 1], scale_log2, -m_scaled));
                    row_sum += p0 + p1;
                    p[mt][nt][rr] = ptx::pack_bf16(p0, p1);
                }
                l[mt][rr] = l[mt][rr] * alpha[mt][rr] + row_sum;
                if constexpr (!kSkipUnitAlpha) rescale(mt, rr, alpha[mt][rr]);
            }
        if constexpr (kSkipUnitAlpha) {
            bool unit = true;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) unit = unit && alpha[mt][0] == 1.f && alpha[mt][1] == 1.f;
            if (__all_sync(0xffffffffu, unit)) return;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) rescale(mt, 0, alpha[mt][0]), rescale(mt, 1, alpha[mt][1]);
        }
    }

    // O *= alpha for one row: the accumulated P V in the scale of the new max.
    __device__ __forceinline__ void rescale(int mt, int rr, float alpha)
    {
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) {
            o[mt][dt][2 * rr] *= alpha;
            o[mt][dt][2 * rr + 1] *= alpha;
        }
    }

    // O += P V for the warp's NT / 2 k16 steps of keys of the V tile (v: Operand::v at the warp's first key).
    template <int NT, class VOperand>
    __device__ __forceinline__ void accumulate(const uint32_t (&p)[MT][NT][2], const VOperand &v)
    {
#pragma unroll
        for (int kk = 0; kk < NT / 2; ++kk) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                a[mt][0] = p[mt][2 * kk][0], a[mt][1] = p[mt][2 * kk][1];
                a[mt][2] = p[mt][2 * kk + 1][0], a[mt][3] = p[mt][2 * kk + 1][1];
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t bv[4];
                ptx::ldmatrix_x4_trans(bv, v.at(dp, kk * 16));
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    ptx::mma_bf16(o[mt][2 * dp], a[mt], bv[0], bv[1]);
                    ptx::mma_bf16(o[mt][2 * dp + 1], a[mt], bv[2], bv[3]);
                }
            }
        }
    }

    // ------------------------------------------------------------ the epilogue

    // After the last tile: l = the whole row's sum in each of the row's 4 lanes. Every lane of the
    // warp must call it (shuffles), rows past the end included.
    __device__ __forceinline__ void sum_rows()
    {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                l[mt][rr] += __shfl_xor_sync(0xffffffffu, l[mt][rr], 1);
                l[mt][rr] += __shfl_xor_sync(0xffffffffu, l[mt][rr], 2);
            }
    }

    // After sum_rows: ln of the row's softmax denominator in the units of the scaled scores,
    // ln 2 (m scale_log2 + log2 l); -inf for a row that saw no key.
    __device__ __forceinline__ float lse(int mt, int rr, float scale_log2) const
    {
        return l[mt][rr] > 0.f ? (m[mt][rr] * scale_log2 + log2f(l[mt][rr])) * kLn2 : -INFINITY;
    }

    // After sum_rows: O = gate(row) O / l in place, for a kernel that combines results before storing
    // them (NSA's gated branches: o = sum of gate_c O_c / l_c); row = row_base + frag_row(mt, rr). A
    // row that saw no key gets 0, never 0 / 0.
    template <class Gate>
    __device__ __forceinline__ void normalize(long row_base, Gate gate)
    {
        const int gid = (int)(threadIdx.x % 32) / 4;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr)
                rescale(mt, rr, l[mt][rr] > 0.f ? gate(row_base + mt * 16 + gid + rr * 8) / l[mt][rr] : 0.f);
    }

    // The standard epilogue: o = O / l as bf16 and lse (natural log) for each row whose dst(row) is
    // valid (row = row_base + frag_row(mt, rr)); a row that saw no key writes o = 0 and lse = -inf.
    // One lane of the four that hold a row (tig = 0) writes its lse. Every lane must call it (shuffles).
    template <class Dst>
    __device__ __forceinline__ void store(float scale_log2, long row_base, Dst dst)
    {
        store(scale_log2, row_base, dst, [](long) { return 1.f; });
    }
    // The same with o = gate(row) O / l (lse is the branch's own, ungated).
    template <class Dst, class Gate>
    __device__ __forceinline__ void store(float scale_log2, long row_base, Dst dst, Gate gate)
    {
        const int gid = (int)(threadIdx.x % 32) / 4, tig = (int)(threadIdx.x % 4);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                float l_row = l[mt][rr];
                l_row += __shfl_xor_sync(0xffffffffu, l_row, 1);
                l_row += __shfl_xor_sync(0xffffffffu, l_row, 2);
                const long row = row_base + mt * 16 + gid + rr * 8;
                const RowDst d = dst(row);
                if (!d.valid) continue;
                const float inv_l = l_row > 0.f ? gate(row) / l_row : 0.f;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt)
                    *reinterpret_cast<uint32_t *>(d.o + dt * 8 + tig * 2) =
                        ptx::pack_bf16(o[mt][dt][2 * rr] * inv_l, o[mt][dt][2 * rr + 1] * inv_l);
                if (tig == 0)
                    *d.lse = l_row > 0.f ? (m[mt][rr] * scale_log2 + log2f(l_row)) * kLn2 : -INFINITY;
            }
    }
};

// Store an accumulator as it is (already normalized, gated and summed by the caller, or the
// unnormalised partial of a split-KV decode): row = row_base + frag_row(mt, rr) to row_of(row), a Row
// of uint16_t (bf16) or float (fp32, which keeps a partial exact until the merge); invalid rows are
// skipped.
template <int D, int MT, class RowOf>
__device__ __forceinline__ void store_o(const float (&o)[MT][D / 8][4], long row_base, RowOf row_of)
{
    const int gid = (int)(threadIdx.x % 32) / 4, tig = (int)(threadIdx.x % 4);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            const auto rw = row_of(row_base + mt * 16 + gid + rr * 8);
            if (!rw.valid) continue;
            auto *row = rw.ptr;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                if constexpr (sizeof(*row) == 2)
                    *reinterpret_cast<uint32_t *>(row + dt * 8 + tig * 2) =
                        ptx::pack_bf16(o[mt][dt][2 * rr], o[mt][dt][2 * rr + 1]);
                else
                    *reinterpret_cast<float2 *>(row + dt * 8 + tig * 2) = make_float2(o[mt][dt][2 * rr], o[mt][dt][2 * rr + 1]);
            }
        }
}

// Merging U partial softmaxes of one row (the warps of lesson 09's block, the splits of a split-KV
// decode), each with max m_u (score units) and sum l_u over its own keys: with m = max_u m_u,
//   f_u = 2^((m_u - m) scale_log2),   l = sum_u f_u l_u,   o = sum_u f_u O_u / l,
//   lse = ln 2 (m scale_log2 + log2 l).
// Writes f and l and returns m scale_log2 (0 when no partial saw a key, so that f_u = 0, not NaN).
template <int U>
__device__ __forceinline__ float merge_weights(const float (&m_u)[U], const float (&l_u)[U], float scale_log2,
                                               float (&f)[U], float &l)
{
    float m = -INFINITY;
#pragma unroll
    for (int u = 0; u < U; ++u) m = fmaxf(m, m_u[u]);
    const float m_scaled = m == -INFINITY ? 0.f : m * scale_log2;
    l = 0.f;
#pragma unroll
    for (int u = 0; u < U; ++u) {
        f[u] = ptx::fast_exp2(m_u[u] * scale_log2 - m_scaled); // 0 for a partial that saw no key
        l += f[u] * l_u[u];
    }
    return m_scaled;
}

// ---------------------------------------------------------------- lesson 04's packed GQA rows

// The block of kBr packed rows a thread block owns, in lesson 04's launch order: kv heads in chunks of
// groups_per_chunk whose K/V fit in L2, the row blocks of a chunk from last to first (the longest causal
// rows start first); batch b = blockIdx.y. Packed row R of (b, g) is query i = R / hpg of head
// g * hpg + R % hpg: the hpg heads of a group at one position are neighbours in q and o already.
template <int kBr>
struct PackedRows {
    int b, g, hpg;
    long R0;          // the block's first packed row
    long packed_rows; // M * hpg rows of one (b, g)
    long offset;      // N - M: query i sits at position offset + i
    long t_first, t_last; // the positions of the block's first and last valid rows
    size_t row_base;      // (b, i = 0, h = g hpg) as a row of q and o [B M H][D]: packed row R is row_base + (R / hpg) H + R % hpg

    __device__ __forceinline__ PackedRows(const attn_shape &sh, int groups_per_chunk)
    {
        hpg = sh.H / sh.G;
        packed_rows = (long)sh.M * hpg;
        const int row_blocks = (int)((packed_rows + kBr - 1) / kBr);
        const int chunk = blockIdx.x / (row_blocks * groups_per_chunk);
        const int rem = blockIdx.x % (row_blocks * groups_per_chunk);
        const int groups_here = min(groups_per_chunk, sh.G - chunk * groups_per_chunk);
        g = chunk * groups_per_chunk + rem % groups_here;
        b = blockIdx.y;
        R0 = (long)(row_blocks - 1 - rem / groups_here) * kBr;
        offset = (long)sh.N - sh.M;
        t_first = offset + R0 / hpg;
        t_last = offset + (min(R0 + kBr, packed_rows) - 1) / hpg;
        row_base = (size_t)b * sh.M * sh.H + (size_t)g * hpg;
    }

    // The hooks take packed rows R (row_base = R0 + the warp's first row of the block).
    // The position t of packed row R (rows of one position share it: the heads of a group).
    __device__ __forceinline__ long pos(long R) const { return offset + R / hpg; }

    // Packed row R's q row, for load_rows (not valid past the last packed row, whose pointer is then
    // never read).
    template <int D>
    __device__ __forceinline__ Row<const uint16_t> q_row(const attn_shape &sh, const uint16_t *q, long R) const
    {
        const bool valid = R < packed_rows;
        return Row<const uint16_t>{q + row_base * D + ((size_t)(R / hpg) * sh.H + R % hpg) * D, valid};
    }

    // Where packed row R's results go, for OnlineSoftmax::store: o [B, M, H, D], lse [B, H, M].
    template <int D>
    __device__ __forceinline__ RowDst dst(const attn_shape &sh, uint16_t *o, float *lse, long R) const
    {
        const long i = R / hpg;
        const int h = g * hpg + (int)(R % hpg);
        return RowDst{o + row_base * D + ((size_t)i * sh.H + R % hpg) * D, lse + ((size_t)b * sh.H + h) * sh.M + i, R < packed_rows};
    }
};

} // namespace flash

#endif

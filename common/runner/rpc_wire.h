/*
 * rpc_wire.h - the messages between a test binary (common/grading/rpc.c) and a runner
 * (common/runner/runner.c) on their socket. Both sides are the course's code; the runner's side runs
 * in the learner's process, so the test side trusts nothing it reads beyond its framing: a reply that
 * breaks the framing ends the runner.
 *
 * Request:  u32 magic ATTN_RPC_REQUEST, u32 op, u32 fn, u32 nargs, then nargs arguments, each
 *           u32 kind, u32 flags, u64 size, then `size` payload bytes:
 *             ARG_NULL     no payload
 *             ARG_VALUE    the value's bytes
 *             ARG_HOST     the buffer's bytes (flags & FLAG_OUT: the runner sends them back after the call;
 *                          flags >> 8: the buffer's address modulo 256, which the runner's copy keeps, so
 *                          that an alignment check sees what the caller passed)
 *             ARG_DEVICE   a cudaIpcMemHandle_t (64 bytes) then the u64 offset into that allocation
 *             ARG_STREAM   u64 stream id (0: the legacy default stream, 2: per-thread, others: the
 *                          runner's own streams)
 * Reply:    u32 magic ATTN_RPC_REPLY, u32 detail length, i64 return value, the detail text, then for
 *           each ARG_HOST argument with FLAG_OUT, in order, u64 size then the bytes.
 * The first message of a runner, before it execs, is u32 magic ATTN_RPC_HELLO, u32 length, then the
 * text describing the sandbox in force (written by the test binary's own code in the child).
 */
#ifndef ATTN_RPC_WIRE_H
#define ATTN_RPC_WIRE_H

#include <stdint.h>

#define ATTN_RPC_REQUEST 0x51525441u /* "ATRQ" */
#define ATTN_RPC_REPLY 0x50525441u   /* "ATRP" */
#define ATTN_RPC_HELLO 0x4c485441u   /* "ATHL" */

enum { ATTN_RPC_OP_CALL = 1, ATTN_RPC_OP_CAPTURE = 2 };
enum { ATTN_RPC_ARG_NULL = 0, ATTN_RPC_ARG_VALUE = 1, ATTN_RPC_ARG_HOST = 2, ATTN_RPC_ARG_DEVICE = 3,
       ATTN_RPC_ARG_STREAM = 4 };
#define ATTN_RPC_FLAG_OUT 1u
#define ATTN_RPC_MAX_ARGS 32
#define ATTN_RPC_MAX_DETAIL 2048
#define ATTN_RPC_IPC_HANDLE_BYTES 64

/* the socket's file descriptor number in the runner */
#define ATTN_RPC_RUNNER_FD 3

typedef struct {
    uint32_t kind, flags;
    uint64_t size;
} attn_rpc_arg_head;

#endif

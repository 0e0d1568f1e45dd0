/*
 * rpc.h - how the tests call a lesson's functions without loading the lesson's code.
 *
 * A lesson test binary (trusted: the oracle, the comparisons, the baselines, the timing, the report)
 * never links the learner's code. It links proxies instead: functions with the lesson header's names and
 * signatures, generated from the header by tools/grading/gen_rpc.py, each of which sends its arguments
 * to a RUNNER process and returns what the runner answers. The runner (bin/runner_NN_<tree>) is the
 * learner's code plus a small server loop and what lessons may call (common/); it is started by the
 * first call a test makes, inside an OS sandbox (common/grading/sandbox.h), and gets inputs and gives
 * back outputs, nothing else:
 *   - a `const T *` host argument is copied to the runner; a `T *` host argument is copied there and
 *     back (its poisoned content included, so unwritten elements still show). A host buffer's size is
 *     the size of the allocation it points into, which the course's allocators (attn_alloc_*) record;
 *     a pointer no allocator recorded is one element (an output scalar such as `long *count`);
 *   - a pointer to a struct (attn_shape, attn_nsa_params, ...) is copied by value;
 *   - a device pointer is shared with the runner through CUDA IPC: the runner writes into the test's
 *     own device memory, so the test checks it as if the lesson had run in its process;
 *   - a stream is mapped to a stream of the runner's (0 and the legacy stream to the legacy stream);
 *   - a call that takes a stream returns only when the runner's device work is done (the runner
 *     synchronises before it answers): the test's own CUDA context cannot order itself after another
 *     process's work.
 * A runner that crashes, exits or does not answer makes the call return ATTN_ERR_CRASHED with the
 * reason; the next call starts a fresh runner. Nothing the runner says decides a verdict: it only
 * returns status codes and outputs, which the tests check.
 */
#ifndef ATTN_RPC_H
#define ATTN_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kinds of argument a proxy sends (the generator picks one per parameter of the header). */
enum {
    ATTN_RPC_VALUE = 1,  /* a value passed by value (int, long, float, an enum, a struct): its bytes */
    ATTN_RPC_POINTER = 2, /* a pointer to data: NULL, a host buffer, or device memory (decided at run time) */
    ATTN_RPC_STRUCT = 3, /* a pointer to one struct: copied by value (and back when not const) */
    ATTN_RPC_STREAM = 4  /* a cudaStream_t */
};

typedef struct {
    int kind;
    int is_const;      /* a pointer to const: copied to the runner only */
    const void *ptr;   /* VALUE: the value's address; POINTER, STRUCT: the argument; STREAM: unused */
    size_t size;       /* VALUE, STRUCT: bytes; POINTER: bytes of one element */
    cudaStream_t stream;
} attn_rpc_arg;

/* Call function `fn` (its index in the header's order) of the runner with `args`. `has_stream`: the
 * function takes a stream (the runner then synchronises its device before answering). Returns the
 * function's return value (an attn status for most; a size for *_workspace_bytes); after a failure of
 * the runner itself, ATTN_ERR_CRASHED (the detail says what happened). The error detail of the call
 * (attn_error_detail) is the runner's. */
int64_t attn_rpc_call(int fn, const char *name, int nargs, const attn_rpc_arg *args, int has_stream);

/* Start the runner now (the first call does it otherwise): ATTN_OK or an error with the reason. */
int attn_rpc_start(void);

/* End the runner (SIGKILL to it, then wait until it is gone): device work it left running is lost. A
 * later call starts a fresh runner. Returns 1 if a runner was running. */
int attn_rpc_stop(void);

/* 1 while a runner process is alive. */
int attn_rpc_alive(void);

/* 1 once a runner was started in this process: the lesson's code has run for this test. */
int attn_rpc_started(void);

/* The next call runs under CUDA graph capture in the runner (on a stream of its own, in the global
 * capture mode, so that a host synchronisation or an allocation inside the call fails), and the graph
 * is then launched `replays` times. What it can tell: whether the function is capturable. Like every
 * answer of the runner it is the learner's word, so it never carries points on its own. */
void attn_rpc_capture_next_call(int replays);

/* One line: what isolates the runner (a separate process, the OS restrictions in force), or "" before
 * the first runner started. */
const char *attn_rpc_protection(void);

/* The extent of the host allocation `p` points into, when a course allocator recorded it: returns its
 * bytes from p to the end, or 0 when p is not inside a recorded allocation (common/attn.c). */
size_t attn_host_extent(const void *p);

/* An array that is not a heap block (on a test's stack, or static) shared with the runner for the scope
 * that declares it: ATTN_SHARE(x) after `float x[8];` lets `x` (and pointers into it) travel with its
 * size. attn_host_unshare is the scope's cleanup. */
const void *attn_host_share(const void *p, size_t bytes)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
    __attribute__((access(none, 1))) /* only the address is kept: the array may still be unwritten */
#endif
    ;
void attn_host_unshare(const void *token);
#define ATTN_SHARE_CAT2(a, b) a##b
#define ATTN_SHARE_CAT(a, b) ATTN_SHARE_CAT2(a, b)
#define ATTN_SHARE(arr)                                                                                        \
    const void *ATTN_SHARE_CAT(attn_share_, __COUNTER__) __attribute__((cleanup(attn_host_unshare), unused)) =     \
        attn_host_share((arr), sizeof(arr))

/* The runner program this test binary starts: $ATTN_RUNNER when set, else the one it was built with. */
const char *attn_rpc_runner_path(void);

#ifdef __cplusplus
}
#endif
#endif

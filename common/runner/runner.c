/*
 * runner.c - the server loop of the process that runs learner code (common/grading/rpc.h). It reads
 * a request from its socket, rebuilds the arguments (host buffers copied in, device memory opened
 * through CUDA IPC, streams of its own), calls the lesson's function, waits for the device when the
 * function takes a stream, and answers with the return value, the error detail and the host outputs.
 *
 * This file runs in the same process as the learner's code, so nothing it does is trusted: the test
 * binary checks every output itself. It only has to be correct for an honest lesson.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "attn.h"
#include "rpc_wire.h"
#include "runner.h"

static int sock = ATTN_RPC_RUNNER_FD;

static int read_all(void *p, size_t n)
{
    char *c = (char *)p;
    while (n) {
        ssize_t r = recv(sock, c, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r, n -= (size_t)r;
    }
    return 0;
}

static int write_all(const void *p, size_t n)
{
    const char *c = (const char *)p;
    while (n) {
        ssize_t w = send(sock, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w, n -= (size_t)w;
    }
    return 0;
}

/* Device allocations of the test binary opened so far, by their IPC handle. */
static struct {
    unsigned char handle[ATTN_RPC_IPC_HANDLE_BYTES];
    void *ptr;
} opened[512];
static int n_opened;

static void *open_device(const unsigned char *payload)
{
    for (int i = 0; i < n_opened; ++i)
        if (memcmp(opened[i].handle, payload, ATTN_RPC_IPC_HANDLE_BYTES) == 0) return opened[i].ptr;
    cudaIpcMemHandle_t h;
    memcpy(&h, payload, sizeof h);
    void *p = NULL;
    if (cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess) != cudaSuccess) return NULL;
    if (n_opened < (int)(sizeof opened / sizeof opened[0])) {
        memcpy(opened[n_opened].handle, payload, ATTN_RPC_IPC_HANDLE_BYTES);
        opened[n_opened++].ptr = p;
    }
    return p;
}

/* The runner's streams by the test binary's ids: 0 legacy, 2 per-thread, 3 and up created here. */
static cudaStream_t runner_stream(uint64_t id)
{
    static cudaStream_t made[64];
    if (id == 0) return 0;
    if (id == 2) return cudaStreamPerThread;
    if (id - 3 >= 64) return 0;
    if (!made[id - 3] && cudaStreamCreateWithFlags(&made[id - 3], cudaStreamNonBlocking) != cudaSuccess) return 0;
    return made[id - 3];
}

static int no_gpu(cudaError_t e) { return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver; }

int main(int argc, char **argv)
{
    if (argc > 1) sock = atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        uint32_t req[4];
        if (read_all(req, sizeof req) || req[0] != ATTN_RPC_REQUEST) return 0; /* the test binary is done */
        const uint32_t op = req[1], fn = req[2], nargs = req[3];
        uint64_t replays = 0;
        if (op == ATTN_RPC_OP_CAPTURE && read_all(&replays, sizeof replays)) return 1;
        if (nargs > ATTN_RPC_MAX_ARGS || (int)fn >= attn_runner_count) return 1;
        attn_rpc_arg_head head[ATTN_RPC_MAX_ARGS];
        void *mem[ATTN_RPC_MAX_ARGS];    /* what each payload was read into */
        void *blocks[ATTN_RPC_MAX_ARGS]; /* the allocations holding them */
        void *argv_[ATTN_RPC_MAX_ARGS];
        cudaStream_t streams[ATTN_RPC_MAX_ARGS];
        int stream_arg[ATTN_RPC_MAX_ARGS], n_streams = 0;
        char detail[ATTN_RPC_MAX_DETAIL] = "";
        for (uint32_t i = 0; i < nargs; ++i) {
            if (read_all(&head[i], sizeof head[i])) return 1;
            /* a host buffer keeps the caller's address modulo 256 (alignment checks must see it) */
            void *block = head[i].size ? malloc(head[i].size + 256) : NULL;
            mem[i] = block;
            if (block && head[i].kind == ATTN_RPC_ARG_HOST) {
                const uintptr_t want = head[i].flags >> 8, have = (uintptr_t)block % 256;
                mem[i] = (char *)block + (want + 256 - have) % 256;
            }
            blocks[i] = block;
            if (head[i].size && (!block || read_all(mem[i], head[i].size))) return 1;
            argv_[i] = NULL;
            switch (head[i].kind) {
            case ATTN_RPC_ARG_NULL: break;
            case ATTN_RPC_ARG_VALUE:
            case ATTN_RPC_ARG_HOST: argv_[i] = mem[i]; break;
            case ATTN_RPC_ARG_DEVICE: {
                uint64_t off;
                memcpy(&off, (unsigned char *)mem[i] + ATTN_RPC_IPC_HANDLE_BYTES, 8);
                char *base = (char *)open_device((const unsigned char *)mem[i]);
                if (!base) {
                    snprintf(detail, sizeof detail, "the runner could not open argument %u's device memory "
                             "through CUDA IPC: %s", i + 1, cudaGetErrorString(cudaGetLastError()));
                    break;
                }
                argv_[i] = base + off;
                break;
            }
            case ATTN_RPC_ARG_STREAM: {
                uint64_t id;
                memcpy(&id, mem[i], 8);
                streams[i] = runner_stream(id);
                argv_[i] = &streams[i];
                stream_arg[n_streams++] = (int)i;
                break;
            }
            default: return 1;
            }
        }
        int64_t ret = ATTN_ERR_CRASHED;
        if (detail[0]) {
            ret = ATTN_ERR_CUDA;
        } else if (op == ATTN_RPC_OP_CAPTURE) {
            /* the call under graph capture in the global mode, on a stream of its own, then replays */
            cudaStream_t s = NULL;
            cudaGraph_t graph = NULL;
            cudaGraphExec_t exec = NULL;
            cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
            for (int k = 0; k < n_streams; ++k) streams[stream_arg[k]] = s;
            if (!e) e = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
            attn_clear_error();
            if (!e) ret = attn_runner_dispatch((int)fn, argv_);
            snprintf(detail, sizeof detail, "%s", attn_error_detail());
            cudaError_t ec = s ? cudaStreamEndCapture(s, &graph) : cudaSuccess;
            if (!e) e = ec;
            if (!e && ret == ATTN_OK) e = cudaGraphInstantiate(&exec, graph, 0);
            for (uint64_t r = 0; !e && ret == ATTN_OK && r < replays; ++r) e = cudaGraphLaunch(exec, s);
            if (!e && ret == ATTN_OK) e = cudaStreamSynchronize(s);
            if (e && ret == ATTN_OK) {
                ret = ATTN_ERR_CUDA;
                snprintf(detail, sizeof detail, "%s is not capturable into a CUDA graph: %s (%s)",
                         attn_runner_names[fn], cudaGetErrorName(e), cudaGetErrorString(e));
            }
            (void)cudaGetLastError();
            if (exec) cudaGraphExecDestroy(exec);
            if (graph) cudaGraphDestroy(graph);
            if (s) cudaStreamDestroy(s);
        } else {
            attn_clear_error();
            ret = attn_runner_dispatch((int)fn, argv_);
            snprintf(detail, sizeof detail, "%s", attn_error_detail());
            if (attn_runner_has_stream[fn]) {
                /* the test binary reads the outputs in its own CUDA context, which cannot wait for this
                 * process's work: answer only when the device is done */
                const cudaError_t e = cudaDeviceSynchronize();
                if (e && !no_gpu(e) && ret == ATTN_OK) {
                    ret = ATTN_ERR_CUDA;
                    snprintf(detail, sizeof detail, "after %s: %s (%s)", attn_runner_names[fn], cudaGetErrorName(e),
                             cudaGetErrorString(e));
                }
                if (e) (void)cudaGetLastError();
            }
        }
        fflush(stdout);
        fflush(stderr);
        const uint32_t rep[2] = {ATTN_RPC_REPLY, (uint32_t)strlen(detail)};
        if (write_all(rep, sizeof rep) || write_all(&ret, sizeof ret) || write_all(detail, rep[1])) return 1;
        for (uint32_t i = 0; i < nargs; ++i) {
            if (head[i].kind == ATTN_RPC_ARG_HOST && (head[i].flags & ATTN_RPC_FLAG_OUT)) {
                if (write_all(&head[i].size, sizeof head[i].size) || write_all(mem[i], head[i].size)) return 1;
            }
            free(blocks[i]);
        }
    }
}

/* rpc.c - the test side of the calls into a runner process (see rpc.h and rpc_wire.h). */
#define _GNU_SOURCE
#include "rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda.h>
#include <cuda_runtime_api.h>

#include "attn.h"
#include "attn_gpu.h"
#include "rpc_wire.h"
#include "sandbox.h"

extern char **environ;

/* The runner this binary was built with: a generated file of the build defines it for each lesson's
 * test binary; other programs (the harness's own tests, the benchmark) have none. */
__attribute__((weak)) const char attn_rpc_built_runner[] = "";

/* A call that takes longer than this is taken for a hang: the runner is ended. */
#define CALL_TIMEOUT_S 900

static struct {
    int started; /* a runner was started in this process (the lesson's code ran) */
    pid_t pid;
    int sock;      /* requests and replies */
    int out;       /* the runner's stdout and stderr, relayed to ours */
    char scratch[256];
    int capture_replays; /* > 0: the next call runs under graph capture */
    char protection[800];
    int announced;
    int atexit_set;
} R = {0, 0, -1, -1, "", 0, "", 0, 0};

const char *attn_rpc_runner_path(void)
{
    const char *env = getenv("ATTN_RUNNER");
    return env && *env ? env : attn_rpc_built_runner;
}

const char *attn_rpc_protection(void) { return R.protection; }

int attn_rpc_alive(void) { return R.pid > 0; }

int attn_rpc_started(void) { return R.started; }

void attn_rpc_capture_next_call(int replays) { R.capture_replays = replays > 0 ? replays : 1; }

/* ---------------------------------------------------------------- the runner's output */

/* What the runner prints goes to our stderr, each line marked as the lesson's, so that a learner's
 * debug prints show and cannot pass for the harness's own lines. */
static void relay_output(int final)
{
    static char line[4096];
    static size_t used;
    if (R.out < 0) return;
    for (;;) {
        char buf[4096];
        ssize_t n = read(R.out, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; ++i) {
            if (buf[i] == '\n' || used == sizeof line - 1) {
                line[used] = '\0';
                fprintf(stderr, "[lesson code] %s\n", line);
                used = 0;
                if (buf[i] == '\n') continue;
            }
            line[used++] = buf[i];
        }
    }
    if (final && used) {
        line[used] = '\0';
        fprintf(stderr, "[lesson code] %s\n", line);
        used = 0;
    }
}

/* ---------------------------------------------------------------- start and stop */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = (const char *)p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w, n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes, relaying the runner's output meanwhile; -1 on EOF, error or timeout. */
static int read_all(int fd, void *p, size_t n, int timeout_s)
{
    char *c = (char *)p;
    const time_t deadline = time(NULL) + timeout_s;
    while (n) {
        struct pollfd pf[2] = {{fd, POLLIN, 0}, {R.out, POLLIN, 0}};
        const int np = R.out >= 0 ? 2 : 1;
        int rc = poll(pf, (nfds_t)np, 1000);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) return -1;
        if (np == 2 && (pf[1].revents & POLLIN)) relay_output(0);
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, c, n, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return -1;
            c += r, n -= (size_t)r;
        }
        if (n && time(NULL) > deadline) return -2;
    }
    return 0;
}

static void remove_scratch(void)
{
    if (!R.scratch[0]) return;
    /* the runner may have left files there: remove them (one level deep: it cannot make folders
     * anywhere else, and its own are removed with their files) */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", R.scratch);
    if (strchr(R.scratch, '\'') == NULL && system(cmd) != 0) { /* nothing more to do */ }
    R.scratch[0] = '\0';
}

int attn_rpc_stop(void)
{
    if (R.pid <= 0) return 0;
    kill(-R.pid, SIGKILL); /* its process group: the runner cannot start processes, but be thorough */
    kill(R.pid, SIGKILL);
    int status;
    while (waitpid(R.pid, &status, 0) < 0 && errno == EINTR) {}
    relay_output(1);
    if (R.sock >= 0) close(R.sock);
    if (R.out >= 0) close(R.out);
    R.pid = 0, R.sock = -1, R.out = -1;
    remove_scratch();
    return 1;
}

static void stop_at_exit(void) { attn_rpc_stop(); }

/* The environment of the runner: ours without the grader's own variables (the seed, report paths),
 * with TMPDIR pointing at its scratch folder, the only place it may write. */
static char **runner_env(void)
{
    size_t n = 0;
    while (environ[n]) ++n;
    char **env = (char **)calloc(n + 2, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; ++i)
        if (strncmp(environ[i], "ATTN_", 5) != 0 && strncmp(environ[i], "CRITERION_", 10) != 0 &&
            strncmp(environ[i], "TMPDIR=", 7) != 0)
            env[k++] = environ[i];
    static char tmpdir[300];
    snprintf(tmpdir, sizeof tmpdir, "TMPDIR=%s", R.scratch);
    env[k++] = tmpdir;
    env[k] = NULL;
    return env;
}

int attn_rpc_start(void)
{
    if (R.pid > 0) return ATTN_OK;
    const char *path = attn_rpc_runner_path();
    if (!path || !*path || access(path, X_OK) != 0)
        return attn_fail(ATTN_ERR_CRASHED, "the runner program %s is missing (build it: cmake --build build)",
                         path && *path ? path : "(none)");
    const char *tmp = getenv("TMPDIR");
    snprintf(R.scratch, sizeof R.scratch, "%s/attn_runner_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(R.scratch)) {
        R.scratch[0] = '\0';
        return attn_fail(ATTN_ERR_CRASHED, "could not make the runner's scratch folder: %s", strerror(errno));
    }
    int sv[2], outp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return attn_fail(ATTN_ERR_CRASHED, "socketpair failed");
    if (pipe2(outp, O_CLOEXEC) != 0) {
        close(sv[0]), close(sv[1]);
        return attn_fail(ATTN_ERR_CRASHED, "pipe failed");
    }
    char **env = runner_env();
    /* this process holds the references the runner's answers are checked against: not dumpable, a
     * process of the same user cannot read its memory through /proc (ptrace and process_vm_readv are
     * closed to the runner anyway) */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]), close(sv[1]), close(outp[0]), close(outp[1]);
        free(env);
        return attn_fail(ATTN_ERR_CRASHED, "fork failed: %s", strerror(errno));
    }
    if (pid == 0) {
        /* the child: still the test binary's own code, nothing of the lesson loaded yet */
        setpgid(0, 0);
        dup2(sv[1], ATTN_RPC_RUNNER_FD);
        dup2(outp[1], 1);
        dup2(outp[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
#ifdef SYS_close_range
        syscall(SYS_close_range, ATTN_RPC_RUNNER_FD + 1, ~0U, 0);
#else
        for (int fd = ATTN_RPC_RUNNER_FD + 1; fd < 1024; ++fd) close(fd);
#endif
        char desc[600];
        attn_sandbox_apply(R.scratch, path, desc, sizeof desc);
        const uint32_t hello[2] = {ATTN_RPC_HELLO, (uint32_t)strlen(desc)};
        if (write_all(ATTN_RPC_RUNNER_FD, hello, sizeof hello) || write_all(ATTN_RPC_RUNNER_FD, desc, hello[1]))
            _exit(126);
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", ATTN_RPC_RUNNER_FD);
        char *argv[] = {(char *)path, fdarg, NULL};
        execve(path, argv, env ? env : environ);
        fprintf(stderr, "could not start the runner %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    free(env);
    close(sv[1]), close(outp[1]);
    R.pid = pid, R.sock = sv[0], R.out = outp[0], R.started = 1;
    fcntl(R.out, F_SETFL, O_NONBLOCK);
    if (!R.atexit_set) atexit(stop_at_exit), R.atexit_set = 1;
    uint32_t hello[2];
    char desc[600];
    if (read_all(R.sock, hello, sizeof hello, 60) || hello[0] != ATTN_RPC_HELLO || hello[1] >= sizeof desc ||
        read_all(R.sock, desc, hello[1], 60)) {
        attn_rpc_stop();
        return attn_fail(ATTN_ERR_CRASHED, "the runner did not start");
    }
    desc[hello[1]] = '\0';
    snprintf(R.protection, sizeof R.protection, "the lesson's code runs in a process of its own (%s)", desc);
    if (!R.announced) {
        R.announced = 1;
        const char *report = getenv("ATTN_REPORT");
        if (report && *report) {
            FILE *f = fopen(report, "a");
            if (f) {
                fprintf(f, "{\"protection\": \"");
                for (const char *c = R.protection; *c; ++c) fputc(*c == '"' || *c == '\\' ? '\'' : *c, f);
                fprintf(f, "\"}\n");
                fclose(f);
            }
        }
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------- device memory through CUDA IPC */

typedef CUresult (*get_range_fn)(CUdeviceptr *, size_t *, CUdeviceptr);
typedef CUresult (*get_attr_fn)(void *, CUpointer_attribute, CUdeviceptr);

static void *driver_entry(const char *name)
{
    enum cudaDriverEntryPointQueryResult found;
    void *fn = NULL;
    if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return fn;
}

/* The base and the driver's unique id of the device allocation p points into; 0 when p is not device
 * memory of this process or no GPU is usable. The id tells a block from a later one at the same
 * address (cudaMalloc reuses addresses). */
static int device_allocation(const void *p, char **base, unsigned long long *id)
{
    static int gpu = -1;
    static get_range_fn range = NULL;
    static get_attr_fn attr = NULL;
    if (gpu < 0) {
        gpu = attn_gpu_available(NULL, 0);
        if (gpu) {
            range = (get_range_fn)driver_entry("cuMemGetAddressRange");
            attr = (get_attr_fn)driver_entry("cuPointerGetAttribute");
            gpu = range && attr;
        }
    }
    if (!gpu) return 0;
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (a.type != cudaMemoryTypeDevice) return 0;
    CUdeviceptr b = 0;
    size_t bytes = 0;
    if (range(&b, &bytes, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS) return 0;
    if (attr(id, CU_POINTER_ATTRIBUTE_BUFFER_ID, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS) return 0;
    *base = (char *)(uintptr_t)b;
    return 1;
}

/* IPC handles of the allocations shared so far, by allocation id (exporting one costs a driver call). */
static struct {
    unsigned long long id;
    cudaIpcMemHandle_t handle;
} shared[256];
static int n_shared;

static int ipc_handle(char *base, unsigned long long id, cudaIpcMemHandle_t *h)
{
    for (int i = n_shared; i-- > 0;)
        if (shared[i].id == id) {
            *h = shared[i].handle;
            return 0;
        }
    if (cudaIpcGetMemHandle(h, base) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    if (n_shared == (int)(sizeof shared / sizeof shared[0])) {
        memmove(shared, shared + 1, sizeof shared - sizeof shared[0]);
        --n_shared;
    }
    shared[n_shared].id = id, shared[n_shared].handle = *h;
    ++n_shared;
    return 0;
}

/* ---------------------------------------------------------------- streams */

static uint64_t stream_id(cudaStream_t s)
{
    static cudaStream_t seen[64];
    static int n_seen;
    if (s == 0 || s == cudaStreamLegacy) return 0;
    if (s == cudaStreamPerThread) return 2;
    for (int i = 0; i < n_seen; ++i)
        if (seen[i] == s) return 3 + (uint64_t)i;
    if (n_seen < 64) seen[n_seen++] = s;
    return 3 + (uint64_t)(n_seen - 1);
}

/* ---------------------------------------------------------------- a call */

static int64_t crashed(const char *name, const char *what)
{
    int status = 0;
    char why[300] = "";
    if (R.pid > 0) {
        kill(-R.pid, SIGKILL), kill(R.pid, SIGKILL);
        pid_t p;
        while ((p = waitpid(R.pid, &status, 0)) < 0 && errno == EINTR) {}
        if (p == R.pid && WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            snprintf(why, sizeof why, ": it was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else if (p == R.pid && WIFEXITED(status))
            snprintf(why, sizeof why, ": it exited with status %d (lesson code must return, never exit)",
                     WEXITSTATUS(status));
        relay_output(1);
        if (R.sock >= 0) close(R.sock);
        if (R.out >= 0) close(R.out);
        R.pid = 0, R.sock = -1, R.out = -1;
        remove_scratch();
    }
    return attn_fail(ATTN_ERR_CRASHED, "%s: the process running the lesson's code %s%s", name, what, why);
}

int64_t attn_rpc_call(int fn, const char *name, int nargs, const attn_rpc_arg *args, int has_stream)
{
    if (nargs > ATTN_RPC_MAX_ARGS) return attn_fail(ATTN_ERR_BAD_ARGUMENT, "%s: too many arguments", name);
    int st = attn_rpc_start();
    if (st) return st;
    /* classify the arguments and size the request */
    attn_rpc_arg_head head[ATTN_RPC_MAX_ARGS];
    const void *payload[ATTN_RPC_MAX_ARGS];
    unsigned char dev[ATTN_RPC_MAX_ARGS][ATTN_RPC_IPC_HANDLE_BYTES + 8];
    uint64_t sid[ATTN_RPC_MAX_ARGS];
    for (int i = 0; i < nargs; ++i) {
        const attn_rpc_arg *a = &args[i];
        head[i].flags = 0;
        payload[i] = NULL;
        if (a->kind == ATTN_RPC_VALUE) {
            head[i].kind = ATTN_RPC_ARG_VALUE, head[i].size = a->size, payload[i] = a->ptr;
        } else if (a->kind == ATTN_RPC_STREAM) {
            sid[i] = stream_id(a->stream);
            head[i].kind = ATTN_RPC_ARG_STREAM, head[i].size = 8, payload[i] = &sid[i];
        } else if (!a->ptr) {
            head[i].kind = ATTN_RPC_ARG_NULL, head[i].size = 0;
        } else if (a->kind == ATTN_RPC_STRUCT) {
            head[i].kind = ATTN_RPC_ARG_HOST, head[i].size = a->size, payload[i] = a->ptr;
            head[i].flags = (a->is_const ? 0 : ATTN_RPC_FLAG_OUT) | (uint32_t)((uintptr_t)a->ptr % 256) << 8;
        } else {
            size_t extent = attn_host_extent(a->ptr);
            char *base = NULL;
            unsigned long long id = 0;
            if (!extent && device_allocation(a->ptr, &base, &id)) {
                cudaIpcMemHandle_t h;
                if (ipc_handle(base, id, &h))
                    return attn_fail(ATTN_ERR_CUDA, "%s: argument %d: device memory that CUDA IPC cannot share "
                                     "(allocate it with cudaMalloc)", name, i + 1);
                const uint64_t off = (uint64_t)((const char *)a->ptr - base);
                memcpy(dev[i], &h, ATTN_RPC_IPC_HANDLE_BYTES);
                memcpy(dev[i] + ATTN_RPC_IPC_HANDLE_BYTES, &off, 8);
                head[i].kind = ATTN_RPC_ARG_DEVICE, head[i].size = sizeof dev[i], payload[i] = dev[i];
            } else {
                /* host memory: the allocation's extent, or one element for a pointer no allocator
                 * recorded (an output scalar) */
                head[i].kind = ATTN_RPC_ARG_HOST, head[i].size = extent ? extent : a->size, payload[i] = a->ptr;
                if (!extent && getenv("ATTN_RPC_DEBUG"))
                    fprintf(stderr, "[rpc] %s: argument %d is a host pointer no course allocator recorded: "
                            "sent as one element of %zu bytes\n", name, i + 1, a->size);
                head[i].flags = (a->is_const ? 0 : ATTN_RPC_FLAG_OUT) | (uint32_t)((uintptr_t)a->ptr % 256) << 8;
            }
        }
    }
    /* the runner's context cannot wait for this one's work: the inputs this process wrote on the device
     * (copies, fills, poison) must have landed before the runner reads them */
    int shares_device = has_stream;
    for (int i = 0; i < nargs; ++i) shares_device |= head[i].kind == ATTN_RPC_ARG_DEVICE;
    if (shares_device) {
        const cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess && e != cudaErrorNoDevice && e != cudaErrorInsufficientDriver)
            return attn_fail(ATTN_ERR_CUDA, "%s: the test's own device work failed before the call: %s", name,
                             cudaGetErrorString(e));
        (void)cudaGetLastError();
    }
    const uint32_t op = R.capture_replays > 0 ? ATTN_RPC_OP_CAPTURE : ATTN_RPC_OP_CALL;
    const uint32_t req[4] = {ATTN_RPC_REQUEST, op, (uint32_t)fn, (uint32_t)nargs};
    const uint64_t replays = (uint64_t)R.capture_replays;
    R.capture_replays = 0;
    int bad = write_all(R.sock, req, sizeof req);
    if (!bad && op == ATTN_RPC_OP_CAPTURE) bad = write_all(R.sock, &replays, sizeof replays);
    for (int i = 0; i < nargs && !bad; ++i) {
        bad = write_all(R.sock, &head[i], sizeof head[i]);
        if (!bad && head[i].size) bad = write_all(R.sock, payload[i], head[i].size);
    }
    if (bad) return crashed(name, "stopped reading its requests");
    uint32_t rep[2];
    int64_t ret;
    int rc = read_all(R.sock, rep, sizeof rep, CALL_TIMEOUT_S);
    if (rc == -2) return crashed(name, "did not return within the time limit");
    if (rc || rep[0] != ATTN_RPC_REPLY || rep[1] > ATTN_RPC_MAX_DETAIL || read_all(R.sock, &ret, sizeof ret, 60))
        return crashed(name, "stopped during the call");
    char detail[ATTN_RPC_MAX_DETAIL + 1];
    if (read_all(R.sock, detail, rep[1], 60)) return crashed(name, "stopped during the call");
    detail[rep[1]] = '\0';
    for (int i = 0; i < nargs; ++i) {
        if (head[i].kind != ATTN_RPC_ARG_HOST || !(head[i].flags & ATTN_RPC_FLAG_OUT)) continue;
        uint64_t size;
        if (read_all(R.sock, &size, sizeof size, 60) || size != head[i].size)
            return crashed(name, "answered out of turn");
        if (read_all(R.sock, (void *)args[i].ptr, size, 600)) return crashed(name, "stopped during the call");
    }
    relay_output(0);
    attn_clear_error();
    if (detail[0]) attn_fail((int)ret, "%s", detail);
    (void)has_stream;
    return ret;
}


/* sandbox.c - the restrictions put on the process that runs learner code (see sandbox.h). Linux only;
 * elsewhere nothing is restricted and the description says so. */
#define _GNU_SOURCE
#include "sandbox.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#if defined(__linux__)
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if __has_include(<linux/landlock.h>)
#include <linux/landlock.h>
#define ATTN_HAVE_LANDLOCK_H 1
#endif
#if __has_include(<linux/audit.h>)
#include <linux/audit.h>
#endif
#endif

static void add_desc(char *desc, size_t len, const char *fmt, ...)
{
    if (!desc || !len) return;
    size_t n = strlen(desc);
    if (n + 1 >= len) return;
    if (n) {
        snprintf(desc + n, len - n, "; ");
        n = strlen(desc);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc + n, len - n, fmt, ap);
    va_end(ap);
}

#if defined(__linux__)

/* ---------------------------------------------------------------- an unprivileged user */

/* Run as nobody when started as root (the autograder images run as root): the grader's files are then
 * protected by plain file permissions. Only when the GPU's device files let others in, since the
 * runner must still reach the GPU. */
static int drop_root(const char *scratch, const char *program, char *desc, size_t len)
{
    if (geteuid() != 0) {
        add_desc(desc, len, "runs as the grader's own user (uid %d)", (int)geteuid());
        return 0;
    }
    struct stat st;
    if (stat("/dev/nvidiactl", &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)) != (S_IROTH | S_IWOTH)) {
        add_desc(desc, len, "runs as root (the GPU's device files admit root only)");
        return 0;
    }
    const uid_t nobody = 65534;
    /* nobody must be able to start the program (its folders may be closed to others) */
    if (program && setegid(nobody) == 0 && seteuid(nobody) == 0) {
        const int can = faccessat(AT_FDCWD, program, X_OK, AT_EACCESS) == 0;
        if (seteuid(0) != 0 || setegid(0) != 0) {
            add_desc(desc, len, "could not return to root after a check");
            return 0;
        }
        if (!can) {
            add_desc(desc, len, "runs as root (uid %d cannot start %s: its folders are closed to others)",
                     (int)nobody, program);
            return 0;
        }
    }
    if (scratch && chown(scratch, nobody, nobody) != 0) {
        add_desc(desc, len, "runs as root (could not hand its scratch folder to uid %d)", (int)nobody);
        return 0;
    }
    if (setgroups(0, NULL) != 0 || setgid(nobody) != 0 || setuid(nobody) != 0) {
        add_desc(desc, len, "runs as root (setuid to %d failed: %s)", (int)nobody, strerror(errno));
        return 0;
    }
    add_desc(desc, len, "runs as uid %d (nobody), not as the grader's root", (int)nobody);
    return 1;
}

/* ---------------------------------------------------------------- Landlock: no writes but scratch */

#ifdef ATTN_HAVE_LANDLOCK_H
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif

/* The ruleset attribute as of ABI 6 (fs, net, scoped); older kernels read a prefix of it. */
struct attn_ll_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

static int ll_allow(int ruleset, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
        access &= LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;
    struct landlock_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
    int rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    close(fd);
    return rc;
}

static int apply_landlock(const char *scratch, char *desc, size_t len)
{
    const int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) {
        add_desc(desc, len, "no Landlock in this kernel: writes are not restricted");
        return 0;
    }
    uint64_t write = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                     LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                     LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                     LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 2) write |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) write |= LANDLOCK_ACCESS_FS_TRUNCATE;
    struct attn_ll_attr attr = {.handled_access_fs = write};
    size_t attr_size = sizeof(uint64_t);
    if (abi >= 6) {
        /* signals only within the runner itself: it cannot signal the grader */
        attr.scoped = LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
        attr_size = sizeof attr;
    }
    const int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (ruleset < 0) {
        add_desc(desc, len, "Landlock ABI %d refused the ruleset (%s): writes are not restricted", abi, strerror(errno));
        return 0;
    }
    /* where the runner may write: its own scratch folder, the null device, shared memory and the
     * GPU's device files (the CUDA driver opens them read-write) */
    if (scratch) ll_allow(ruleset, scratch, write);
    ll_allow(ruleset, "/dev/null", write);
    ll_allow(ruleset, "/dev/shm", write);
    DIR *dev = opendir("/dev");
    if (dev) {
        struct dirent *e;
        char path[300];
        while ((e = readdir(dev)) != NULL)
            if (strncmp(e->d_name, "nvidia", 6) == 0) {
                snprintf(path, sizeof path, "/dev/%s", e->d_name);
                ll_allow(ruleset, path, write);
            }
        closedir(dev);
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
        add_desc(desc, len, "Landlock ABI %d could not be applied (%s): writes are not restricted", abi,
                 strerror(errno));
        close(ruleset);
        return 0;
    }
    close(ruleset);
    add_desc(desc, len, "Landlock ABI %d: writes only to its scratch folder and the GPU's device files%s", abi,
             abi >= 6 ? ", signals only to itself" : "");
    return 1;
}
#else
static int apply_landlock(const char *scratch, char *desc, size_t len)
{
    (void)scratch;
    add_desc(desc, len, "built without Landlock headers: writes are not restricted");
    return 0;
}
#endif

/* ---------------------------------------------------------------- seccomp: no new processes */

#if defined(__x86_64__) && defined(AUDIT_ARCH_X86_64)
#define ATTN_SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__) && defined(AUDIT_ARCH_AARCH64)
#define ATTN_SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef ATTN_SECCOMP_ARCH
#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define DENY(nr, err)                                                                                           \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((err) & 0xffff))

/* No process of its own (fork, vfork, clone without CLONE_THREAD; clone3 answers ENOSYS so that the
 * C library falls back to clone, whose flags a filter can read), and no reaching into another process
 * (ptrace, process_vm_readv/writev). Threads stay allowed: the CUDA runtime starts some. */
static int apply_seccomp(int allow_connect, char *desc, size_t len)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ATTN_SECCOMP_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        LOAD_NR,
#ifdef __NR_fork
        DENY(__NR_fork, EPERM),
#endif
#ifdef __NR_vfork
        DENY(__NR_vfork, EPERM),
#endif
#ifdef __NR_clone3
        DENY(__NR_clone3, ENOSYS),
#endif
        DENY(__NR_ptrace, EPERM),
        DENY(__NR_process_vm_readv, EPERM),
        DENY(__NR_process_vm_writev, EPERM),
        /* no connect(): the test binary's Criterion runner listens on a named socket in /tmp, which the
         * runner could otherwise reach to report verdicts of its own (under compute-sanitizer the
         * sanitizer's injected code needs it, and that run judges memory errors only) */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, allow_connect ? SECCOMP_RET_ALLOW : (SECCOMP_RET_ERRNO | EACCES)),
        /* clone: allowed only with CLONE_THREAD (flags are the first argument on x86-64 and arm64) */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof filter / sizeof filter[0]), .filter = filter};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        add_desc(desc, len, "seccomp unavailable (%s): it could start processes", strerror(errno));
        return 0;
    }
    add_desc(desc, len, "seccomp: no processes of its own, no ptrace%s", allow_connect ? "" : ", no connect");
    return 1;
}
#else
static int apply_seccomp(int allow_connect, char *desc, size_t len)
{
    (void)allow_connect;
    add_desc(desc, len, "no seccomp filter for this architecture: it could start processes");
    return 0;
}
#endif

int attn_sandbox_apply(const char *scratch_dir, const char *program, char *desc, size_t len)
{
    if (desc && len) desc[0] = '\0';
    int layers = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the grader's process */
    layers += drop_root(scratch_dir, program, desc, len);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        add_desc(desc, len, "no_new_privs refused (%s)", strerror(errno));
        return layers;
    }
    layers += apply_landlock(scratch_dir, desc, len);
    /* compute-sanitizer injects itself through these variables */
    const char *inj = getenv("CUDA_INJECTION64_PATH"), *pre = getenv("LD_PRELOAD");
    const int sanitizer = (inj && *inj) || (pre && strstr(pre, "sanitizer"));
    layers += apply_seccomp(sanitizer, desc, len);
    return layers;
}

#else /* not Linux */

int attn_sandbox_apply(const char *scratch_dir, const char *program, char *desc, size_t len)
{
    (void)scratch_dir, (void)program;
    if (desc && len) desc[0] = '\0';
    add_desc(desc, len, "no OS-level restriction on this platform: the runner could write files");
    return 0;
}

#endif

/*
 * sandbox.h - the OS-level restrictions on the process that runs learner code (the runner), applied in
 * the child between fork and exec, so that they hold before any of the runner's code runs (its start-up
 * sections included) and survive exec:
 *   - started as root (an autograder image), it runs as nobody when the GPU's device files allow it and
 *     nobody can start the runner program;
 *   - Landlock (Linux 5.13 and later): it may write only to its own scratch folder, /dev/null,
 *     /dev/shm and the GPU's device files; from ABI 6 on it may signal only itself;
 *   - seccomp: it may start threads but no processes, may not ptrace or read/write another process's
 *     memory, and may not connect() to a socket (Criterion's runner listens on one in /tmp; under
 *     compute-sanitizer, whose injected code needs it, connect stays allowed);
 *   - it dies with the process that started it.
 * What the platform does not offer is skipped and said in the description, which the grader's report
 * prints ("which protection was in force").
 */
#ifndef ATTN_SANDBOX_H
#define ATTN_SANDBOX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Apply what this platform allows to the calling process, which will exec `program`; `desc` receives
 * one line describing what is in force. Returns the number of layers applied (0 to 3). */
int attn_sandbox_apply(const char *scratch_dir, const char *program, char *desc, size_t len);

#ifdef __cplusplus
}
#endif
#endif

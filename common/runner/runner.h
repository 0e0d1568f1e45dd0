/*
 * runner.h - the interface between the runner's server loop (runner.c) and the table of a lesson's
 * functions that tools/grading/gen_rpc.py generates from the lesson header. The runner is the process
 * that runs learner code (common/grading/rpc.h tells the whole story); it links the lesson's files,
 * common/ (what lessons may call) and this, never common/grading/.
 */
#ifndef ATTN_RUNNER_H
#define ATTN_RUNNER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Call function `fn` of the lesson with its arguments: argv[i] is the pointer argument itself, or
 * points to the value of a by-value argument (a stream included). Returns the function's return value
 * widened to 64 bits. Generated. */
int64_t attn_runner_dispatch(int fn, void **argv);

/* The number of functions, each one's name, and whether it takes a stream (the runner then waits for
 * its device work before it answers). Generated. */
extern const int attn_runner_count;
extern const char *const attn_runner_names[];
extern const int attn_runner_has_stream[];

#ifdef __cplusplus
}
#endif
#endif

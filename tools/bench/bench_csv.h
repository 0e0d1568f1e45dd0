/*
 * bench_csv.h - what bench.cu and bench_nsa.cu share when they write CSV.
 */
#ifndef BENCH_CSV_H
#define BENCH_CSV_H

#include <stdio.h>
#include <string.h>

/* A CSV field, quoted when it holds a comma, a quote or a newline (the device description may). */
static inline void csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; ++s) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

#endif

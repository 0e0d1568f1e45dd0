/* oracle_nsa_cmp.c - double-precision NSA references (see nsa.h). To be written. */
#include "nsa.h"

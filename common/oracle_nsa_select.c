/* oracle_nsa_select.c - double-precision NSA references (see nsa.h). To be written. */
#include "nsa.h"

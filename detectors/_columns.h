/* What the two readers of events into the monitors' columns share: detectors/_kernels.c (from event
 * dicts, `read_columns`) and detectors/_decode.c (from JSON documents, `Block.fill`). Their codes and
 * statuses are detectors.extract's; a test holds the two readers to the same columns
 * (tests/test_fuzz.py). */
#ifndef SKEWWATCH_COLUMNS_H
#define SKEWWATCH_COLUMNS_H

#include <Python.h>
#include <math.h>
#include <stdint.h>

/* category codes below the known ones (detectors.extract) */
#define MISSING_CODE (-1)
#define INVALID_CODE (-2)
#define UNRESOLVED_CODE (-3)
/* numeric value status (detectors.extract) */
#define ST_VALID 0
#define ST_MISSING 1
#define ST_ABSENT 2
#define ST_INVALID 3
/* how a batch's model_versions compare with the expected one */
#define VERSIONS_NONE 0     /* no event has a model_version (or it is None) */
#define VERSIONS_EXPECTED 1 /* every event's model_version is the expected str */
#define VERSIONS_OTHER 2    /* anything else: the caller looks at them itself */

/* Event i's features its map did not name (`seen[col] != i`), of `width` columns (the first f
 * numeric, the rest categorical, n events a column): absent. */
static inline void
mark_absent(Py_ssize_t i, Py_ssize_t n, Py_ssize_t f, Py_ssize_t width, const Py_ssize_t *seen, double *x,
            uint8_t *status, int64_t *codes, uint8_t *cat_absent)
{
    for (Py_ssize_t col = 0; col < width; col++) {
        if (seen[col] == i)
            continue;
        if (col < f) {
            x[col * n + i] = NAN;
            status[col * n + i] = ST_ABSENT;
        }
        else {
            codes[(col - f) * n + i] = MISSING_CODE;
            cat_absent[(col - f) * n + i] = 1;
        }
    }
}

#endif

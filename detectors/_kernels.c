/* The per-value loops of the monitors, compiled: event dicts -> columns, PIT scores, block sums
 * and window histograms, CUSUM chains. Everything else (tables, thresholds, alarms, alerts) stays
 * in Python; see the callers in detectors/extract.py, pit.py, numeric.py, categorical.py, cusum.py.
 *
 * Why C: a 50-feature event must cost under ~2 us in all to watch; reading its values out of the
 * dict alone costs ~1 us in CPython, and each numpy pass over a batch ~1 ns per value, so a
 * monitor made of dozens of passes cannot get there. Here each value is touched once or twice.
 *
 * Arrays come in through the buffer protocol (numpy arrays, C-contiguous, of the dtype each
 * function names); the callers allocate them. The float arithmetic follows the numpy code it
 * replaced operation for operation (built with -ffp-contract=off), so scores are bit-identical.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_columns.h"

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)0)
#endif


/* ---- buffers ---------------------------------------------------------------------------- */

typedef struct {
    Py_buffer view;
    int held;
} Buf;

/* a * b for buffer sizes; -1 (which buf_get refuses) if negative or too large */
static Py_ssize_t
size_mul(Py_ssize_t a, Py_ssize_t b)
{
    if (a < 0 || b < 0 || (a && b > PY_SSIZE_T_MAX / 8 / a))
        return -1;
    return a * b;
}

static int
buf_get(PyObject *obj, Buf *b, Py_ssize_t itemsize, Py_ssize_t count, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    b->held = 0;
    if (count < 0 || count > PY_SSIZE_T_MAX / 8) {
        PyErr_Format(PyExc_ValueError, "%s: impossible size", name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0)
        return -1;
    b->held = 1;
    if (b->view.itemsize != itemsize || b->view.len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes of %zd-byte items",
                     name, count, itemsize, b->view.len, b->view.itemsize);
        return -1;
    }
    return 0;
}

/* A buffer of any length: the number of items, or -1 with an exception set. */
static Py_ssize_t
buf_items(PyObject *obj, Buf *b, Py_ssize_t itemsize, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    b->held = 0;
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0)
        return -1;
    b->held = 1;
    if (b->view.itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd-byte items, got %zd", name, itemsize, b->view.itemsize);
        return -1;
    }
    return b->view.len / itemsize;
}

/* A buffer of 8-byte items that splits into k >= 1 equal parts (k rows, or rows of k items): the size
 * of a part, or -1 with an exception set (`shape` says what was expected). */
static Py_ssize_t
buf_split(PyObject *obj, Buf *b, Py_ssize_t k, const char *name, const char *shape)
{
    Py_ssize_t items = buf_items(obj, b, 8, 0, name);
    if (items < 0)
        return -1;
    if (k < 1 || items % k) {
        PyErr_Format(PyExc_ValueError, "%s: %s", name, shape);
        return -1;
    }
    return items / k;
}

static void
buf_release(Buf *b)
{
    if (b->held) {
        PyBuffer_Release(&b->view);
        b->held = 0;
    }
}

#define RELEASE_ALL(arr) do { for (size_t _k = 0; _k < sizeof(arr) / sizeof(arr[0]); _k++) buf_release(&arr[_k]); } while (0)

/* ---- read_columns ----------------------------------------------------------------------- */

/* One numeric value: its float (NaN missing or absent, +inf invalid) and status.
 * Valid = int or float (not bool), finite. Returns -1 only on a failure of Python itself. */
static inline double
classify_number(PyObject *v, uint8_t *status)
{
    double d;
    if (PyFloat_CheckExact(v)) {
        d = PyFloat_AS_DOUBLE(v);
    }
#if PY_VERSION_HEX < 0x030C0000
    /* an int of one 30-bit digit (counts, ids): its value without a call (3.11's int layout) */
    else if (PyLong_CheckExact(v) && (size_t)(Py_SIZE(v) + 1) <= 2) {
        d = (double)((long)Py_SIZE(v) * (long)((PyLongObject *)v)->ob_digit[0]);
    }
#endif
    else if (PyLong_CheckExact(v)) {
        d = PyLong_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) { /* too large for a float */
            PyErr_Clear();
            *status = ST_INVALID;
            return INFINITY;
        }
    }
    else if (v == Py_None) {
        *status = ST_MISSING;
        return NAN;
    }
    else if (PyBool_Check(v) || !(PyLong_Check(v) || PyFloat_Check(v))) {
        *status = ST_INVALID;
        return INFINITY;
    }
    else { /* a subclass of int or float */
        d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            *status = ST_INVALID;
            return INFINITY;
        }
    }
    if (!isfinite(d)) {
        *status = ST_INVALID;
        return INFINITY;
    }
    *status = ST_VALID;
    return d;
}

/* keys of an event remembered by position: events of one producer list their keys in one order,
 * and a decoder hands out the same key objects (orjson's key cache, msgpack's interning), so a
 * key is mostly recognised by identity, without hashing into the column map */
#define KEY_CACHE 256

/* two str keys with the same text (a decoder that does not share key objects): cheaper than
 * hashing the new one into the column map */
static inline int
same_text(PyObject *a, PyObject *b)
{
    if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b))
        return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    if (len != PyUnicode_GET_LENGTH(b) || kind != PyUnicode_KIND(b))
        return 0;
    if (len == 0)
        return 1;
    /* labels often differ in their last character ("c0", "c1"): look there before a memcmp call */
    if (PyUnicode_READ(kind, PyUnicode_DATA(a), len - 1) != PyUnicode_READ(kind, PyUnicode_DATA(b), len - 1))
        return 0;
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)len * (size_t)kind) == 0;
}

PyDoc_STRVAR(read_columns_doc,
"read_columns(features, columns, n_numeric, tables, bool_codes, x, status, codes, cat_absent, extra, top)\n"
"--\n\n"
"Fill the columns of a batch from its feature dicts, one pass over each event's items.\n"
"top None: features is a list of feature dicts. top (expected_version, confidence): features is a list\n"
"of event dicts, each read for its 'features' map (KeyError if it has none), its 'confidence' into\n"
"confidence (n,) float64 unless of length 0 (the value if a valid number in [0, 1], NaN if None or\n"
"absent, +inf if anything else) and its 'model_version'.\n"
"columns: dict name -> column, numeric features 0..f-1 then categorical ones f..f+m-1.\n"
"x (f, n) float64: the value if valid, NaN missing or absent, +inf invalid; status (f, n) uint8:\n"
"0 valid, 1 missing, 2 absent, 3 invalid. codes (m, n) int64: the training category's index in\n"
"tables[j] (a dict label -> code), -1 missing or absent, -2 invalid (a map or list), -3 anything the\n"
"caller resolves itself (an unseen label, a number); bool_codes (m, 2) int64: the codes of False and\n"
"True, -3 if not known. cat_absent (m, n) uint8. extra (n) uint8: the event has keys that are not\n"
"columns (extra of length 0: not computed). Returns (codes left at -3, invalid numbers, versions):\n"
"versions 0 no event has a 'model_version' other than None, 1 every event's is the str\n"
"expected_version (None: never), 2 otherwise (always 0 without top).");

/* A feature's few training labels, compared by text: a new str would otherwise be hashed (SipHash)
 * to look it up, which costs more than a few short comparisons. Larger tables use the dict.
 * Each label's length, kind and last character are packed in one word (text_tag), so a value is
 * compared with the labels' tags in a tight loop and its text only with the one that matches. */
#define SMALL_TABLE 16
typedef struct {
    Py_ssize_t size; /* -1: look up in the dict */
    uint64_t tags[SMALL_TABLE];
    PyObject *labels[SMALL_TABLE];
    int64_t codes[SMALL_TABLE];
} SmallTable;

/* an exact str's length (low 32 bits), kind and last character; 0 for a longer or empty str, which
 * then goes through the dict */
static inline uint64_t
text_tag(PyObject *s)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    if (len == 0 || len > 0xFFFFFFFF)
        return 0;
    int kind = PyUnicode_KIND(s);
    return (uint64_t)len | (uint64_t)kind << 32 | (uint64_t)PyUnicode_READ(kind, PyUnicode_DATA(s), len - 1) << 35;
}

/* equal texts, given equal tags: the bytes before the last character */
static inline int
same_head(PyObject *a, PyObject *b)
{
    size_t bytes = (size_t)(PyUnicode_GET_LENGTH(a) - 1) * (size_t)PyUnicode_KIND(a);
    const char *p = PyUnicode_DATA(a), *q = PyUnicode_DATA(b);
    if (bytes > 16)
        return memcmp(p, q, bytes) == 0;
    for (size_t k = 0; k < bytes; k++) /* short labels: inline, not a library call */
        if (p[k] != q[k])
            return 0;
    return 1;
}

/* the labels of tables[j] (borrowed: the tuple holds them during the call), or size -1 */
static int
small_table(PyObject *table, SmallTable *t)
{
    t->size = -1;
    if (PyDict_GET_SIZE(table) > SMALL_TABLE)
        return 0;
    Py_ssize_t pos = 0, k = 0;
    PyObject *label, *code;
    while (PyDict_Next(table, &pos, &label, &code)) {
        if (!PyUnicode_CheckExact(label) || !PyLong_Check(code) || (t->tags[k] = text_tag(label)) == 0)
            return 0;
        t->labels[k] = label;
        t->codes[k] = PyLong_AsLongLong(code);
        if (t->codes[k] == -1 && PyErr_Occurred())
            return -1;
        k++;
    }
    t->size = k;
    return 0;
}

static inline int
read_value(PyObject *v, Py_ssize_t col, Py_ssize_t f, Py_ssize_t n, Py_ssize_t i, PyObject *tables,
           const SmallTable *small, const int64_t *bool_codes, double *x, uint8_t *status, int64_t *codes,
           Py_ssize_t *unresolved, Py_ssize_t *invalid)
{
    if (col < f) {
        Py_ssize_t at = col * n + i;
        x[at] = classify_number(v, &status[at]);
        *invalid += status[at] == ST_INVALID;
        return 0;
    }
    Py_ssize_t j = col - f;
    int64_t code;
    if (PyUnicode_CheckExact(v) && small[j].size >= 0) {
        const SmallTable *t = &small[j];
        const uint64_t tag = text_tag(v);
        code = UNRESOLVED_CODE;
        for (Py_ssize_t k = 0; k < t->size; k++) {
            if (t->tags[k] == tag && (t->labels[k] == v || same_head(t->labels[k], v))) {
                code = t->codes[k];
                break;
            }
        }
    }
    else if (PyUnicode_CheckExact(v)) {
        PyObject *c = PyDict_GetItemWithError(PyTuple_GET_ITEM(tables, j), v);
        if (c == NULL) {
            if (PyErr_Occurred())
                return -1;
            code = UNRESOLVED_CODE;
        }
        else {
            code = PyLong_AsLongLong(c);
            if (code == -1 && PyErr_Occurred())
                return -1;
        }
    }
    else if (v == Py_None)
        code = MISSING_CODE;
    else if (PyBool_Check(v))
        code = bool_codes[2 * j + (v == Py_True)];
    else if (PyDict_Check(v) || PyList_Check(v) || PyTuple_Check(v))
        code = INVALID_CODE;
    else
        code = UNRESOLVED_CODE;
    codes[j * n + i] = code;
    *unresolved += code == UNRESOLVED_CODE;
    return 0;
}

static PyObject *key_model, *key_features, *key_confidence, *key_model_version; /* interned at import */

/* What the model monitor reads at an event's top level (read_columns with `top`): its confidence
 * into conf[i] (if n_conf) and its model_version into the running flags; returns its feature map
 * (borrowed), or NULL with KeyError / TypeError. */
static PyObject *
event_fields(PyObject *events, Py_ssize_t i, PyObject *expected, double *conf, Py_ssize_t n_conf, int *no_version,
             int *all_expected)
{
    const Py_ssize_t n = PyList_GET_SIZE(events);
    PyObject *ev = PyList_GET_ITEM(events, i);
    /* the events' dicts lie far apart in memory: fetch ahead, the dict 8 events on, its keys 4 on
     * (engine bench, cold batches: 0.111 -> 0.101 us per event when this was a pass of its own) */
    if (i + 8 < n)
        PREFETCH(PyList_GET_ITEM(events, i + 8));
    if (i + 4 < n && PyDict_CheckExact(PyList_GET_ITEM(events, i + 4))) {
        const char *keys = (const char *)((PyDictObject *)PyList_GET_ITEM(events, i + 4))->ma_keys;
        PREFETCH(keys);
        PREFETCH(keys + 64);
    }
    if (!PyDict_Check(ev)) {
        PyErr_Format(PyExc_TypeError, "event %zd is not a dict", i);
        return NULL;
    }
    PyObject *features = PyDict_GetItemWithError(ev, key_features);
    if (features == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key_features);
        return NULL;
    }
    if (n_conf) {
        PyObject *c = PyDict_GetItemWithError(ev, key_confidence);
        if (c == NULL && PyErr_Occurred())
            return NULL;
        uint8_t st;
        double d = c == NULL ? NAN : classify_number(c, &st);
        conf[i] = d >= 0.0 && d <= 1.0 ? d : (d != d ? d : INFINITY); /* outside [0, 1]: invalid */
    }
    PyObject *v = PyDict_GetItemWithError(ev, key_model_version);
    if (v == NULL && PyErr_Occurred())
        return NULL;
    if (v != NULL && v != Py_None) {
        *no_version = 0;
        if (*all_expected && v != expected && !same_text(v, expected))
            *all_expected = 0;
    }
    else
        *all_expected = 0;
    return features;
}

static PyObject *
read_columns(PyObject *self, PyObject *args)
{
    PyObject *features, *columns, *tables, *o_bool, *o_x, *o_status, *o_codes, *o_absent, *o_extra, *top;
    Py_ssize_t f;
    if (!PyArg_ParseTuple(args, "O!O!nO!OOOOOOO", &PyList_Type, &features, &PyDict_Type, &columns, &f,
                          &PyTuple_Type, &tables, &o_bool, &o_x, &o_status, &o_codes, &o_absent, &o_extra, &top))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(features), m = PyTuple_GET_SIZE(tables), width = f + m;
    /* top = (expected_version, confidence): the items are events, each holding its feature map */
    PyObject *expected = Py_None, *o_conf = NULL;
    if (top != Py_None && !PyArg_ParseTuple(top, "OO", &expected, &o_conf))
        return NULL;
    if (expected != Py_None && !PyUnicode_CheckExact(expected)) {
        PyErr_SetString(PyExc_TypeError, "expected_version: a str or None");
        return NULL;
    }
    if (f < 0 || PyDict_GET_SIZE(columns) != width) {
        PyErr_SetString(PyExc_ValueError, "columns: one per numeric feature and per table");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        if (!PyDict_Check(PyTuple_GET_ITEM(tables, j))) {
            PyErr_SetString(PyExc_TypeError, "tables must be dicts");
            return NULL;
        }
    }
    /* every column number once, 0..width-1 */
    Py_ssize_t *seen = PyMem_Calloc(width ? width : 1, sizeof(Py_ssize_t));
    if (seen == NULL)
        return PyErr_NoMemory();
    PyObject **names = PyMem_Calloc(width ? width : 1, sizeof(PyObject *)); /* borrowed from columns */
    SmallTable *small = PyMem_Calloc(m ? m : 1, sizeof(SmallTable));
    if (names == NULL || small == NULL) {
        PyMem_Free(seen);
        PyMem_Free(names);
        PyMem_Free(small);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        if (small_table(PyTuple_GET_ITEM(tables, j), &small[j]) < 0) {
            PyMem_Free(seen);
            PyMem_Free(names);
            PyMem_Free(small);
            return NULL;
        }
    }
    {
        Py_ssize_t pos = 0;
        PyObject *k, *c;
        while (PyDict_Next(columns, &pos, &k, &c)) {
            Py_ssize_t col = PyLong_Check(c) ? PyLong_AsSsize_t(c) : -1;
            if (col < 0 || col >= width || seen[col]) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "columns: values must be 0..len(columns)-1, each once");
                PyMem_Free(seen);
                PyMem_Free(names);
                PyMem_Free(small);
                return NULL;
            }
            seen[col] = 1;
            names[col] = k;
        }
    }
    Buf b[7];
    memset(b, 0, sizeof(b));
    Py_ssize_t n_extra = buf_items(o_extra, &b[5], 1, 1, "extra");
    if (n_extra < 0 || (n_extra != 0 && n_extra != n)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "extra: one per event, or none");
        goto fail;
    }
    Py_ssize_t n_conf = o_conf == NULL ? 0 : buf_items(o_conf, &b[6], 8, 1, "confidence");
    if (n_conf < 0 || (n_conf != 0 && n_conf != n)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "confidence: one per event, or none");
        goto fail;
    }
    double *conf = b[6].view.buf;
    int no_version = 1, all_expected = expected != Py_None;
    if (buf_get(o_bool, &b[0], 8, size_mul(2, m), 0, "bool_codes") < 0 || buf_get(o_x, &b[1], 8, size_mul(f, n), 1, "x") < 0
        || buf_get(o_status, &b[2], 1, size_mul(f, n), 1, "status") < 0 || buf_get(o_codes, &b[3], 8, size_mul(m, n), 1, "codes") < 0
        || buf_get(o_absent, &b[4], 1, size_mul(m, n), 1, "cat_absent") < 0)
        goto fail;
    const int64_t *bool_codes = b[0].view.buf;
    double *x = b[1].view.buf;
    uint8_t *status = b[2].view.buf;
    int64_t *codes = b[3].view.buf;
    uint8_t *cat_absent = b[4].view.buf;
    uint8_t *extra = b[5].view.buf;
    Py_ssize_t unresolved = 0, invalid = 0;
    PyObject *cache_key[KEY_CACHE];
    Py_ssize_t cache_col[KEY_CACHE];
    Py_ssize_t cached = 0;
    for (Py_ssize_t col = 0; col < width; col++)
        seen[col] = -1;
    memset(cat_absent, 0, (size_t)(m * n));

    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(features, i), *key, *v;
        Py_ssize_t pos = 0, k = 0, matched = 0, unknown = 0;
        if (top != Py_None) {
            d = event_fields(features, i, expected, conf, n_conf, &no_version, &all_expected);
            if (d == NULL)
                goto fail;
        }
        if (PyDict_Check(d) && PyDict_GET_SIZE(d) > 2 * width + 4) {
            /* a few columns out of a much larger map: look them up */
            for (Py_ssize_t col = 0; col < width; col++) {
                v = PyDict_GetItemWithError(d, names[col]);
                if (v == NULL) {
                    if (PyErr_Occurred())
                        goto fail;
                    continue;
                }
                seen[col] = i;
                matched++;
                if (read_value(v, col, f, n, i, tables, small, bool_codes, x, status, codes, &unresolved, &invalid) < 0)
                    goto fail;
            }
            unknown = PyDict_GET_SIZE(d) - matched;
        }
        /* the decoder guarantees a dict; anything else holds nothing */
        else while (PyDict_Check(d) && PyDict_Next(d, &pos, &key, &v)) {
            Py_ssize_t col;
            if (k < cached && (cache_key[k] == key || same_text(cache_key[k], key))) {
                col = cache_col[k];
            }
            else {
                PyObject *c = PyDict_GetItemWithError(columns, key);
                if (c == NULL && PyErr_Occurred())
                    goto fail;
                col = c == NULL ? -1 : PyLong_AsSsize_t(c);
                if (k < KEY_CACHE) {
                    cache_key[k] = key; /* alive for the whole call: the list holds its map (or the event that does) */
                    cache_col[k] = col;
                    if (k >= cached)
                        cached = k + 1;
                }
            }
            k++;
            if (col < 0) {
                unknown++;
                continue;
            }
            seen[col] = i;
            matched++;
            if (read_value(v, col, f, n, i, tables, small, bool_codes, x, status, codes, &unresolved, &invalid) < 0)
                goto fail;
        }
        if (matched < width)
            mark_absent(i, n, f, width, seen, x, status, codes, cat_absent);
        if (n_extra)
            extra[i] = unknown > 0;
    }
    PyMem_Free(seen);
    PyMem_Free(names);
    PyMem_Free(small);
    RELEASE_ALL(b);
    return Py_BuildValue("nni", unresolved, invalid,
                         no_version ? VERSIONS_NONE : all_expected ? VERSIONS_EXPECTED : VERSIONS_OTHER);
fail:
    PyMem_Free(seen);
    PyMem_Free(names);
    PyMem_Free(small);
    RELEASE_ALL(b);
    return NULL;
}

/* ---- pit_transform ---------------------------------------------------------------------- */

#define PIT_TABLED 0
#define PIT_INTEGER 1
#define PIT_PYTHON 2
/* hashed_uniform of detectors.pit: splitmix64 of the event index plus a per-feature salt */
static inline double
hashed_uniform(uint64_t index, uint64_t salt)
{
    uint64_t z = index * 0x9E3779B97F4A7C15ULL + salt;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline double
clip01(double r)
{
    return r < 0.0 ? 0.0 : (r > 1.0 ? 1.0 : r); /* NaN stays NaN, as np.clip */
}

PyDoc_STRVAR(pit_transform_doc,
"pit_transform(x, u, start, kinds, offsets, sizes, params, salts, table, int_lower, int_span, cells, p1)\n"
"--\n\n"
"PIT scores u (f, n) of x (f, n) for the tabulated features of detectors.pit.BatchedPIT.\n"
"kinds (f) int64: 0 continuous table, 1 integer table, 2 left to the caller (u untouched).\n"
"offsets, sizes (f) int64: where the feature's cells start in table / int_lower, and (integer) how\n"
"many. params (f, 6) float64: continuous low, scale, q0, q1, q2, q3; integer: first value at [0].\n"
"salts (f) uint64. Non-integers inside an integer feature's range get u = -1 for the caller's exact\n"
"transform; returns how many.");

static PyObject *
pit_transform(PyObject *self, PyObject *args)
{
    PyObject *o_x, *o_u, *o_kinds, *o_off, *o_sizes, *o_params, *o_salts, *o_table, *o_lower, *o_span;
    long long start;
    Py_ssize_t cells;
    double p1;
    if (!PyArg_ParseTuple(args, "OOLOOOOOOOOnd", &o_x, &o_u, &start, &o_kinds, &o_off, &o_sizes, &o_params,
                          &o_salts, &o_table, &o_lower, &o_span, &cells, &p1))
        return NULL;
    Buf b[10];
    memset(b, 0, sizeof(b));
    Py_ssize_t f = buf_items(o_kinds, &b[2], 8, 0, "kinds");
    Py_ssize_t fn = f < 0 ? -1 : buf_items(o_x, &b[0], 8, 0, "x");
    Py_ssize_t table_len = fn < 0 ? -1 : buf_items(o_table, &b[7], 8, 0, "table");
    Py_ssize_t int_len = table_len < 0 ? -1 : buf_items(o_lower, &b[8], 8, 0, "int_lower");
    if (int_len < 0 || buf_get(o_span, &b[9], 8, int_len, 0, "int_span") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    Py_ssize_t n = f ? fn / f : 0;
    if (n * f != fn || buf_get(o_u, &b[1], 8, size_mul(f, n), 1, "u") < 0
        || buf_get(o_off, &b[3], 8, f, 0, "offsets") < 0 || buf_get(o_sizes, &b[4], 8, f, 0, "sizes") < 0
        || buf_get(o_params, &b[5], 8, size_mul(6, f), 0, "params") < 0 || buf_get(o_salts, &b[6], 8, f, 0, "salts") < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "x: one row per feature");
        RELEASE_ALL(b);
        return NULL;
    }
    const double *x = b[0].view.buf, *params = b[5].view.buf, *table = b[7].view.buf;
    const double *int_lower = b[8].view.buf, *int_span = b[9].view.buf;
    double *u = b[1].view.buf;
    const int64_t *kinds = b[2].view.buf, *offsets = b[3].view.buf, *sizes = b[4].view.buf;
    const uint64_t *salts = b[6].view.buf;
    Py_ssize_t odd = 0;
    const double dcells = (double)cells;

    for (Py_ssize_t j = 0; j < f; j++) {
        const double *xj = x + j * n;
        double *uj = u + j * n;
        const double *pj = params + 6 * j;
        if (kinds[j] == PIT_TABLED) {
            const double low = pj[0], scale = pj[1], q0 = pj[2], q1 = pj[3], q2 = pj[4], q3 = pj[5];
            const int64_t off = offsets[j];
            if (off < 0 || cells < 1 || off >= table_len || cells > table_len - off - 1) {
                PyErr_SetString(PyExc_ValueError, "table offset out of range");
                RELEASE_ALL(b);
                return NULL;
            }
            const double *tj = table + off;
            for (Py_ssize_t i = 0; i < n; i++) {
                const double v = xj[i];
                const double t = (v - low) * scale;
                if (t >= 0.0 && t <= dcells) {
                    const int64_t cell = (int64_t)(t < dcells - 1.0 ? t : dcells - 1.0);
                    const double lo = tj[cell];
                    uj[i] = lo + (t - (double)cell) * (tj[cell + 1] - lo);
                }
                else if (isnan(v)) {
                    uj[i] = NAN;
                }
                else { /* the grid's first and last steps (0 -> 0.1%, 99.9% -> 100%) are linear */
                    const double below = p1 * clip01((v - q0) / (q1 - q0));
                    const double above = 1.0 - p1 * clip01((q3 - v) / (q3 - q2));
                    uj[i] = v < q1 ? below : above;
                }
            }
        }
        else if (kinds[j] == PIT_INTEGER) {
            const double first = pj[0];
            const int64_t off = offsets[j], size = sizes[j];
            const double dsize = (double)size;
            const uint64_t salt = salts[j];
            if (off < 0 || size < 1 || off > int_len || size > int_len - off) {
                PyErr_SetString(PyExc_ValueError, "integer table out of range");
                RELEASE_ALL(b);
                return NULL;
            }
            for (Py_ssize_t i = 0; i < n; i++) {
                const double v = xj[i];
                const double k = v - first;
                const int inside = k >= 0.0 && k < dsize;
                const int64_t cell = inside ? (int64_t)k : 0;
                if (inside && (double)cell == k) {
                    const double draw = hashed_uniform((uint64_t)(start + i), salt);
                    uj[i] = int_lower[off + cell] + draw * int_span[off + cell];
                }
                else if (isnan(v)) {
                    uj[i] = NAN;
                }
                else if (k >= 0.0 && k < dsize - 1.0) { /* not an integer, inside the range */
                    uj[i] = -1.0;
                    odd++;
                }
                else {
                    uj[i] = k < 0.0 ? 0.0 : 1.0;
                }
            }
        }
    }
    RELEASE_ALL(b);
    return PyLong_FromSsize_t(odd);
}

/* ---- batches of blocks and window segments (numeric_blocks, categorical_blocks) ---------- */

/* The window cuts of a batch (S + 1 offsets rising from 0 to n) into b, and what they make of the
 * batch: n events, S segments, nb blocks of `block` events touched from event `start`. */
static int
batch_shape(PyObject *o_cuts, Buf *b, long long start, Py_ssize_t block, const int64_t **cuts, Py_ssize_t *n,
            Py_ssize_t *segments, Py_ssize_t *nb)
{
    Py_ssize_t n_cuts = buf_items(o_cuts, b, 8, 0, "cuts");
    if (n_cuts < 0)
        return -1;
    if (n_cuts < 2) {
        PyErr_SetString(PyExc_ValueError, "cuts: at least two");
        return -1;
    }
    *cuts = b->view.buf;
    *n = (*cuts)[n_cuts - 1];
    *segments = n_cuts - 1;
    for (Py_ssize_t s = 0; s < *segments; s++) {
        if ((*cuts)[s] > (*cuts)[s + 1] || (*cuts)[0] != 0) {
            PyErr_SetString(PyExc_ValueError, "cuts must rise from 0 to n");
            return -1;
        }
    }
    if (*n < 0 || start > PY_SSIZE_T_MAX - *n) {
        PyErr_SetString(PyExc_ValueError, "start + n too large");
        return -1;
    }
    *nb = *n ? (Py_ssize_t)((start + *n - 1) / block - start / block + 1) : 0;
    return 0;
}

/* ---- numeric_blocks --------------------------------------------------------------------- */

#define FINE_BINS 100
#define N_NUMERIC_SUMS 6

PyDoc_STRVAR(numeric_blocks_doc,
"numeric_blocks(x, u, start, block, u_bits, mins, maxs, cuts, sums, hist, counts)\n"
"--\n\n"
"The per-event columns of detectors.numeric.NumericBank summed over blocks of `block` events\n"
"aligned on the event count, and the valid scores' histograms per window segment.\n"
"x (f, n) float64 as read_columns makes it (finite = valid), u (f, n) its PIT scores.\n"
"A score is fixed point: uf = floor(u * 2**u_bits), u = 1/2 when not valid. sums (nb, 6 f) int64,\n"
"nb = the blocks the events start..start+n-1 touch: per block and feature, the sums of uf - half,\n"
"|2 uf - one|, valid, missing (NaN), invalid (inf) and outside [min, max] (valid only).\n"
"cuts (S + 1) int64: segment s holds events cuts[s]..cuts[s+1]-1; hist (S, f, 100) int64 counts the\n"
"valid scores' bins min(floor(uf * 100 / one), 99); counts (S, f, 4) int64 the segment's valid,\n"
"missing, invalid and outside values.");

static PyObject *
numeric_blocks(PyObject *self, PyObject *args)
{
    PyObject *o_x, *o_u, *o_mins, *o_maxs, *o_cuts, *o_sums, *o_hist, *o_counts;
    long long start;
    Py_ssize_t block, u_bits;
    if (!PyArg_ParseTuple(args, "OOLnnOOOOOO", &o_x, &o_u, &start, &block, &u_bits, &o_mins, &o_maxs, &o_cuts,
                          &o_sums, &o_hist, &o_counts))
        return NULL;
    if (block < 1 || start < 0 || u_bits < 1 || u_bits > 40) {
        PyErr_SetString(PyExc_ValueError, "block >= 1, start >= 0, 1 <= u_bits <= 40");
        return NULL;
    }
    Buf b[8];
    memset(b, 0, sizeof(b));
    const int64_t *cuts;
    Py_ssize_t n, segments, nb;
    Py_ssize_t f = buf_items(o_mins, &b[2], 8, 0, "mins");
    if (f < 0 || batch_shape(o_cuts, &b[4], start, block, &cuts, &n, &segments, &nb) < 0
        || buf_get(o_x, &b[0], 8, size_mul(f, n), 0, "x") < 0 || buf_get(o_u, &b[1], 8, size_mul(f, n), 0, "u") < 0
        || buf_get(o_maxs, &b[3], 8, f, 0, "maxs") < 0
        || buf_get(o_sums, &b[5], 8, size_mul(nb, size_mul(N_NUMERIC_SUMS, f)), 1, "sums") < 0
        || buf_get(o_hist, &b[6], 8, size_mul(segments, size_mul(f, FINE_BINS)), 1, "hist") < 0
        || buf_get(o_counts, &b[7], 8, size_mul(segments, size_mul(f, 4)), 1, "counts") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const double *x = b[0].view.buf, *u = b[1].view.buf, *mins = b[2].view.buf, *maxs = b[3].view.buf;
    int64_t *sums = b[5].view.buf, *hist = b[6].view.buf, *counts = b[7].view.buf;
    const double one = (double)(1LL << u_bits), half = (double)(1LL << (u_bits - 1));
    const double inv_one = 1.0 / one;
    const Py_ssize_t width = N_NUMERIC_SUMS * f;
    memset(sums, 0, (size_t)(nb * width) * 8);
    memset(hist, 0, (size_t)(segments * f * FINE_BINS) * 8);
    memset(counts, 0, (size_t)(segments * f * 4) * 8);

    const Py_ssize_t first_block = (Py_ssize_t)(block - start % block); /* events of the first block here */
    for (Py_ssize_t j = 0; j < f; j++) {
        const double *xj = x + j * n, *uj = u + j * n;
        const double lo = mins[j], hi = maxs[j];
        Py_ssize_t s = 0, segment_start = 0, i = 0;
        int64_t *h = hist + j * FINE_BINS;
        int64_t outside = 0, missing = 0, valid = 0;
        for (Py_ssize_t k = 0; i < n; k++) {
            const Py_ssize_t block_end = first_block + k * block < n ? first_block + k * block : n;
            int64_t loc = 0, spread = 0, nvalid = 0, nmissing = 0, ninvalid = 0, nout = 0;
            for (; i < block_end; i++) {
                while (i == cuts[s + 1]) { /* a window ends inside the batch: its segment is complete */
                    int64_t *c = counts + (s * f + j) * 4;
                    c[0] = valid;
                    c[1] = missing;
                    c[2] = (i - segment_start) - valid - missing;
                    c[3] = outside;
                    s++;
                    segment_start = i;
                    outside = missing = valid = 0;
                    h = hist + (s * f + j) * FINE_BINS;
                }
                const double v = xj[i];
                if (isfinite(v)) {
                    double uu = uj[i];
                    if (uu != uu) /* never for a valid value; no garbage if it were */
                        uu = 0.5;
                    const double uf = floor(uu * one);
                    loc += (int64_t)(uf - half);
                    spread += (int64_t)fabs(2.0 * uf - one);
                    nvalid++;
                    valid++;
                    const int out = (v < lo) | (v > hi);
                    nout += out;
                    outside += out;
                    int64_t bin = (int64_t)(uf * (double)FINE_BINS * inv_one);
                    h[bin < FINE_BINS - 1 ? (bin < 0 ? 0 : bin) : FINE_BINS - 1]++;
                }
                else { /* u = 1/2: uf = half, so location and spread add 0 */
                    const int nan = isnan(v);
                    nmissing += nan;
                    missing += nan;
                    ninvalid += !nan;
                }
            }
            int64_t *row = sums + k * width + j;
            row[0] = loc;
            row[f] = spread;
            row[2 * f] = nvalid;
            row[3 * f] = nmissing;
            row[4 * f] = ninvalid;
            row[5 * f] = nout;
        }
        int64_t *c = counts + (s * f + j) * 4;
        c[0] = valid;
        c[1] = missing;
        c[2] = (n - segment_start) - valid - missing;
        c[3] = outside;
    }
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

/* ---- categorical_blocks ----------------------------------------------------------------- */

PyDoc_STRVAR(categorical_blocks_doc,
"categorical_blocks(codes, start, block, n_known, offsets, n_cells, cuts, sums, counts)\n"
"--\n\n"
"codes (m, n) int64 as read_columns makes them (resolved). sums (nb, 3 m) int64: per block and\n"
"feature the events coded n_known[j] (other), -1 (missing), -2 (invalid). counts (S, n_cells)\n"
"int64: per window segment, the count of each cell offsets[j] + code for codes >= 0.");

static PyObject *
categorical_blocks(PyObject *self, PyObject *args)
{
    PyObject *o_codes, *o_known, *o_off, *o_cuts, *o_sums, *o_counts;
    long long start;
    Py_ssize_t block, n_cells;
    if (!PyArg_ParseTuple(args, "OLnOOnOOO", &o_codes, &start, &block, &o_known, &o_off, &n_cells, &o_cuts,
                          &o_sums, &o_counts))
        return NULL;
    if (block < 1 || start < 0 || n_cells < 0) {
        PyErr_SetString(PyExc_ValueError, "block >= 1, start >= 0, n_cells >= 0");
        return NULL;
    }
    Buf b[6];
    memset(b, 0, sizeof(b));
    const int64_t *cuts;
    Py_ssize_t n, segments, nb;
    Py_ssize_t m = buf_items(o_known, &b[1], 8, 0, "n_known");
    if (m < 0 || batch_shape(o_cuts, &b[3], start, block, &cuts, &n, &segments, &nb) < 0
        || buf_get(o_codes, &b[0], 8, size_mul(m, n), 0, "codes") < 0 || buf_get(o_off, &b[2], 8, m, 0, "offsets") < 0
        || buf_get(o_sums, &b[4], 8, size_mul(nb, size_mul(3, m)), 1, "sums") < 0
        || buf_get(o_counts, &b[5], 8, size_mul(segments, n_cells), 1, "counts") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *codes = b[0].view.buf, *n_known = b[1].view.buf, *offsets = b[2].view.buf;
    int64_t *sums = b[4].view.buf, *counts = b[5].view.buf;
    memset(sums, 0, (size_t)(nb * 3 * m) * 8);
    memset(counts, 0, (size_t)(segments * n_cells) * 8);
    const Py_ssize_t first_block = (Py_ssize_t)(block - start % block); /* events of the first block here */
    for (Py_ssize_t j = 0; j < m; j++) {
        const int64_t *cj = codes + j * n;
        const int64_t other = n_known[j], off = offsets[j];
        if (off < 0 || other < 0 || off >= n_cells || other > n_cells - off - 1) {
            PyErr_SetString(PyExc_ValueError, "cell offsets out of range");
            RELEASE_ALL(b);
            return NULL;
        }
        Py_ssize_t s = 0, i = 0;
        int64_t *cnt = counts + off;
        for (Py_ssize_t k = 0; i < n; k++) {
            const Py_ssize_t block_end = first_block + k * block < n ? first_block + k * block : n;
            int64_t n_other = 0, n_missing = 0, n_invalid = 0;
            for (; i < block_end; i++) {
                while (i == cuts[s + 1]) { /* a window ends inside the batch */
                    s++;
                    cnt = counts + s * n_cells + off;
                }
                const int64_t c = cj[i];
                if (c >= 0) {
                    if (c > other) {
                        PyErr_SetString(PyExc_ValueError, "a code above the feature's other bucket");
                        RELEASE_ALL(b);
                        return NULL;
                    }
                    cnt[c]++;
                    n_other += c == other;
                }
                else {
                    n_missing += c == MISSING_CODE;
                    n_invalid += c == INVALID_CODE;
                }
            }
            int64_t *row = sums + k * 3 * m + j;
            row[0] = n_other;
            row[m] = n_missing;
            row[2 * m] = n_invalid;
        }
    }
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

/* ---- cusum_sums ------------------------------------------------------------------------- */

PyDoc_STRVAR(cusum_sums_doc,
"cusum_sums(sums, ends, n_scores, k_fixed, half, hit, miss, block, h, s, last_zero) -> alarms\n"
"--\n\n"
"One-sided CUSUM chains S = max(0, S + x) over blocks (block t ending at event ends[t]), on the\n"
"increments x the monitors derive from their block sums (made here, never stored). A chain alarms\n"
"when S > h[c], as (event, chain, S, the last event it stood at 0 before, -1: never), and restarts\n"
"from 0; s and last_zero are updated in place. Alarms come in order of event, then chain.\n"
"sums (nb, 3 f + r) int64, f = n_scores: per block the sums of the location score, of the spread\n"
"score, the valid count (each f wide), then r event counts. Chains (4 f + r): location up and down,\n"
"scale up and down (x = +-loc - k, +-(spread - half * valid) - k with k = valid * k_fixed[j]), then\n"
"a Bernoulli rate chain per count: x = c * hit + (block - c) * miss (hit 1, miss 0: x = c).");

/* One block's step of every chain, branch-free; whether any chain went over its threshold.
 * Also built for AVX2 (4 chains per instruction; integers, so the same result), the machine's
 * best clone picked at load time: with it, cusum_sums went from ~7% of the monitor's time to ~2%. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) /* ifunc needed */
__attribute__((target_clones("avx2", "default")))
#endif
static int
cusum_step(Py_ssize_t chains, const int64_t *restrict x, const int64_t *restrict h, int64_t end,
           int64_t *restrict s, int64_t *restrict last_zero)
{
    int64_t over = 0;
    for (Py_ssize_t c = 0; c < chains; c++) {
        const int64_t raw = s[c] + x[c];
        over |= raw > h[c];
        const int64_t v = raw > 0 ? raw : 0;
        last_zero[c] = v == 0 ? end : last_zero[c];
        s[c] = v;
    }
    return over != 0;
}

static PyObject *
cusum_sums(PyObject *self, PyObject *args)
{
    PyObject *o_sums, *o_ends, *o_k, *o_hit, *o_miss, *o_h, *o_s, *o_zero;
    Py_ssize_t f;
    long long half, block;
    if (!PyArg_ParseTuple(args, "OOnOLOOLOOO", &o_sums, &o_ends, &f, &o_k, &half, &o_hit, &o_miss, &block,
                          &o_h, &o_s, &o_zero))
        return NULL;
    Buf b[8];
    memset(b, 0, sizeof(b));
    Py_ssize_t r = buf_items(o_hit, &b[3], 8, 0, "hit");
    Py_ssize_t nb = r < 0 ? -1 : buf_items(o_ends, &b[1], 8, 0, "ends");
    Py_ssize_t chains = f < 0 || f > PY_SSIZE_T_MAX / 64 ? -1 : 4 * f + r, width = chains < 0 ? -1 : 3 * f + r;
    if (nb < 0 || chains < 0 || buf_get(o_sums, &b[0], 8, size_mul(nb, width), 0, "sums") < 0
        || buf_get(o_k, &b[2], 8, f, 0, "k_fixed") < 0 || buf_get(o_miss, &b[4], 8, r, 0, "miss") < 0
        || buf_get(o_h, &b[5], 8, chains, 0, "h") < 0 || buf_get(o_s, &b[6], 8, chains, 1, "s") < 0
        || buf_get(o_zero, &b[7], 8, chains, 1, "last_zero") < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "n_scores >= 0");
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *sums = b[0].view.buf, *ends = b[1].view.buf, *k_fixed = b[2].view.buf;
    const int64_t *hit = b[3].view.buf, *miss = b[4].view.buf, *h = b[5].view.buf;
    int64_t *s = b[6].view.buf, *last_zero = b[7].view.buf;
    PyObject *alarms = PyList_New(0);
    if (alarms == NULL) {
        RELEASE_ALL(b);
        return NULL;
    }
    int64_t *x = PyMem_Malloc((size_t)(chains ? chains : 1) * sizeof(int64_t));
    if (x == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t t = 0; t < nb; t++) {
        const int64_t *row = sums + t * width;
        const int64_t end = ends[t];
        /* the block's increments, chain by chain */
        for (Py_ssize_t j = 0; j < f; j++) {
            const int64_t valid = row[2 * f + j], k = valid * k_fixed[j];
            const int64_t loc = row[j], scale = row[f + j] - half * valid;
            x[j] = loc - k;
            x[f + j] = -loc - k;
            x[2 * f + j] = scale - k;
            x[3 * f + j] = -scale - k;
        }
        for (Py_ssize_t q = 0; q < r; q++) {
            const int64_t count = row[3 * f + q];
            x[4 * f + q] = count * hit[q] + (block - count) * miss[q];
        }
        /* a chain that went over its threshold (rare) is then turned into an alarm and restarted:
         * its last_zero is untouched by the pass, since it is above 0 */
        const int over = cusum_step(chains, x, h, end, s, last_zero);
        for (Py_ssize_t c = 0; over && c < chains; c++) {
            if (s[c] <= h[c])
                continue;
            PyObject *a = Py_BuildValue("(LnLL)", (long long)end, c, (long long)s[c], (long long)last_zero[c]);
            if (a == NULL || PyList_Append(alarms, a) < 0) {
                Py_XDECREF(a);
                PyMem_Free(x);
                goto fail;
            }
            Py_DECREF(a);
            s[c] = 0;
            last_zero[c] = end;
        }
    }
    PyMem_Free(x);
    RELEASE_ALL(b);
    return alarms;
fail:
    Py_DECREF(alarms);
    RELEASE_ALL(b);
    return NULL;
}

/* ---- ks_uniform -------------------------------------------------------------------------- */

PyDoc_STRVAR(ks_uniform_doc,
"ks_uniform(hist, counts, ks)\n"
"--\n\n"
"Per row of hist (f, B) int64, counts of PIT scores on B equal bins of [0, 1]: counts (f) int64 their\n"
"total and ks (f) float64 the KS distance to uniform at the bin edges, max_k |cum_k / n - (k + 1) / B|\n"
"(0 for an empty row). The operations of detectors.stats' numpy version, so the same floats.");

/* the KS distance of one histogram row to uniform, and its total */
static double
ks_row(const int64_t *h, Py_ssize_t bins, int64_t *total)
{
    int64_t n = 0;
    for (Py_ssize_t k = 0; k < bins; k++)
        n += h[k];
    *total = n;
    double d = 0.0;
    if (n != 0) {
        int64_t cum = 0;
        for (Py_ssize_t k = 0; k < bins; k++) {
            cum += h[k];
            const double gap = fabs((double)cum / (double)n - (double)(k + 1) / (double)bins);
            d = gap > d ? gap : d;
        }
    }
    return d;
}

static PyObject *
ks_uniform(PyObject *self, PyObject *args)
{
    PyObject *o_hist, *o_counts, *o_ks;
    if (!PyArg_ParseTuple(args, "OOO", &o_hist, &o_counts, &o_ks))
        return NULL;
    Buf b[3];
    memset(b, 0, sizeof(b));
    Py_ssize_t f = buf_items(o_counts, &b[1], 8, 1, "counts");
    const Py_ssize_t bins = f < 0 ? -1 : buf_split(o_hist, &b[0], f, "hist", "len(counts) >= 1 rows");
    if (bins < 0 || buf_get(o_ks, &b[2], 8, f, 1, "ks") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *hist = b[0].view.buf;
    int64_t *counts = b[1].view.buf;
    double *ks = b[2].view.buf;
    for (Py_ssize_t j = 0; j < f; j++)
        ks[j] = ks_row(hist + j * bins, bins, &counts[j]);
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ks_alarms_doc,
"ks_alarms(hist, allowance, min_values, critical) -> [(j, n, ks, excess), ...]\n"
"--\n\n"
"The window test of detectors.numeric.NumericBank: per row j of hist (f, B) int64, its total n and KS\n"
"distance to uniform (as ks_uniform), excess = sqrt(n) * max(ks - allowance[j], 0); the rows with\n"
"n >= min_values and excess > critical.");

static PyObject *
ks_alarms(PyObject *self, PyObject *args)
{
    PyObject *o_hist, *o_allow;
    long long min_values;
    double critical;
    if (!PyArg_ParseTuple(args, "OOLd", &o_hist, &o_allow, &min_values, &critical))
        return NULL;
    Buf b[2];
    memset(b, 0, sizeof(b));
    Py_ssize_t f = buf_items(o_allow, &b[1], 8, 0, "allowance");
    const Py_ssize_t bins = f < 0 ? -1 : buf_split(o_hist, &b[0], f, "hist", "len(allowance) >= 1 rows");
    if (bins < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *hist = b[0].view.buf;
    const double *allowance = b[1].view.buf;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t j = 0; out != NULL && j < f; j++) {
        int64_t n;
        const double ks = ks_row(hist + j * bins, bins, &n), over = ks - allowance[j];
        const double excess = sqrt((double)n) * (over > 0.0 ? over : 0.0);
        if (n < min_values || !(excess > critical))
            continue;
        PyObject *a = Py_BuildValue("(nLdd)", j, (long long)n, ks, excess);
        if (a == NULL || PyList_Append(out, a) < 0)
            Py_CLEAR(out);
        Py_XDECREF(a);
    }
    RELEASE_ALL(b);
    return out;
}

PyDoc_STRVAR(chi2_screen_doc,
"chi2_screen(counts, offsets, n_known, expected, profile_counts, values, unpooled)\n"
"--\n\n"
"The pre-test of detectors.categorical.CategoricalBank._window_candidates. counts (cells) int64: a\n"
"window's counts, feature j owning cells offsets[j] .. offsets[j] + n_known[j] (the last: other);\n"
"expected (cells) float64 the training shares (0: not a known cell). Per feature: values (m) int64 its\n"
"values, unpooled (m) float64 the chi-square over its known cells, n = their count, divided by\n"
"1 + n / profile_counts[j] (0 when n is 0).");

static PyObject *
chi2_screen(PyObject *self, PyObject *args)
{
    PyObject *o_counts, *o_off, *o_known, *o_exp, *o_prof, *o_values, *o_unpooled;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &o_counts, &o_off, &o_known, &o_exp, &o_prof, &o_values, &o_unpooled))
        return NULL;
    Buf b[7];
    memset(b, 0, sizeof(b));
    Py_ssize_t m = buf_items(o_off, &b[1], 8, 0, "offsets");
    Py_ssize_t cells = m < 0 ? -1 : buf_items(o_counts, &b[0], 8, 0, "counts");
    if (cells < 0 || buf_get(o_known, &b[2], 8, m, 0, "n_known") < 0 || buf_get(o_exp, &b[3], 8, cells, 0, "expected") < 0
        || buf_get(o_prof, &b[4], 8, m, 0, "profile_counts") < 0 || buf_get(o_values, &b[5], 8, m, 1, "values") < 0
        || buf_get(o_unpooled, &b[6], 8, m, 1, "unpooled") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *counts = b[0].view.buf, *offsets = b[1].view.buf, *n_known = b[2].view.buf;
    const double *expected = b[3].view.buf, *profile = b[4].view.buf;
    int64_t *values = b[5].view.buf;
    double *unpooled = b[6].view.buf;
    for (Py_ssize_t j = 0; j < m; j++) {
        const int64_t off = offsets[j], k = n_known[j];
        if (off < 0 || k < 0 || off > cells || k >= cells - off) {
            PyErr_SetString(PyExc_ValueError, "a feature's cells out of range");
            RELEASE_ALL(b);
            return NULL;
        }
        int64_t total = 0, n = 0;
        for (int64_t c = off; c <= off + k; c++) {
            total += counts[c];
            n += expected[c] > 0.0 ? counts[c] : 0;
        }
        double chi2 = 0.0;
        for (int64_t c = off; n != 0 && c <= off + k; c++) {
            if (expected[c] > 0.0) {
                const double e = (double)n * expected[c], d = (double)counts[c] - e;
                chi2 += d * d / e;
            }
        }
        values[j] = total;
        unpooled[j] = n != 0 ? chi2 / (1.0 + (double)n / profile[j]) : 0.0;
    }
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

/* ---- block_sums -------------------------------------------------------------------------- */

/* The blocks of `size` events that events start .. start + n - 1 touch; -1 with ValueError if
 * start + n overflows. */
static Py_ssize_t
blocks_touched(Py_ssize_t start, Py_ssize_t n, Py_ssize_t size)
{
    if (start > PY_SSIZE_T_MAX - n) {
        PyErr_SetString(PyExc_ValueError, "start + n too large");
        return -1;
    }
    return n ? (Py_ssize_t)((start + n - 1) / size - start / size + 1) : 0;
}

PyDoc_STRVAR(block_sums_doc,
"block_sums(values, start, size, partial, out) -> complete\n"
"--\n\n"
"detectors.cusum.BlockAccumulator.add: values (n, c) int64 holds c integer columns of the events\n"
"start..start+n-1, summed over blocks of `size` events aligned on the event count into out (nb, c)\n"
"int64, nb = the blocks the events touch. partial (c) int64, the sums of the block the last call left\n"
"incomplete, is added to the first; it is left holding the last block if that is incomplete, zeros\n"
"if not. Returns how many rows of out are complete blocks (nb, or nb - 1).");

static PyObject *
block_sums(PyObject *self, PyObject *args)
{
    PyObject *o_values, *o_partial, *o_out;
    long long start;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "OLnOO", &o_values, &start, &size, &o_partial, &o_out))
        return NULL;
    if (size < 1 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "size >= 1, start >= 0");
        return NULL;
    }
    Buf b[3];
    memset(b, 0, sizeof(b));
    Py_ssize_t c = buf_items(o_partial, &b[1], 8, 1, "partial");
    const Py_ssize_t n = c < 0 ? -1 : buf_split(o_values, &b[0], c, "values", "rows of len(partial) >= 1 columns");
    if (n < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const Py_ssize_t nb = blocks_touched(start, n, size);
    if (nb < 0 || buf_get(o_out, &b[2], 8, size_mul(nb, c), 1, "out") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *values = b[0].view.buf;
    int64_t *partial = b[1].view.buf, *out = b[2].view.buf;
    if (nb == 0) {
        RELEASE_ALL(b);
        return PyLong_FromLong(0);
    }
    /* unsigned: the wrap-around of numpy's int64 sums, without C's undefined signed overflow */
    uint64_t *o = (uint64_t *)out;
    memcpy(o, partial, (size_t)c * 8);
    if (nb > 1)
        memset(o + c, 0, (size_t)((nb - 1) * c) * 8);
    const Py_ssize_t first = (Py_ssize_t)(size - start % size); /* events of the first block here */
    for (Py_ssize_t i = 0, k = 0, end = first < n ? first : n; i < n; k++, end = end + size < n ? end + size : n) {
        uint64_t *row = o + k * c;
        for (; i < end; i++) {
            const uint64_t *v = (const uint64_t *)values + i * c;
            for (Py_ssize_t q = 0; q < c; q++)
                row[q] += v[q];
        }
    }
    const int incomplete = (start + n) % size != 0;
    if (incomplete)
        memcpy(partial, o + (nb - 1) * c, (size_t)c * 8);
    else
        memset(partial, 0, (size_t)c * 8);
    RELEASE_ALL(b);
    return PyLong_FromSsize_t(nb - incomplete);
}

/* ---- point_mass_blocks ------------------------------------------------------------------- */

/* the watched values of one row, by a perfect hash: each value (normalised: -0.0 is 0.0) alone in its
 * slot of PM_SLOTS, the multiplier tried until none collide; an empty slot holds NaN (equal to
 * nothing) and counts into a spare, so that looking a value up is one probe without a branch */
#define PM_VALUES 15
#define PM_SLOTS 256

static inline unsigned
pm_slot(double v, uint64_t mult)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    return (unsigned)((bits * mult) >> 56);
}

PyDoc_STRVAR(point_mass_blocks_doc,
"point_mass_blocks(x, start, size, rows, values, last, out)\n"
"\n"
"Hits of point-mass chains (detectors.pointmass) per block of `size` (<= 15) events aligned on the event\n"
"count: x float64 (R, n) holds events start..start+n-1 of R rows (valid values finite); chain c\n"
"watches row rows[c] (int64, non-decreasing; at most 15 distinct finite values and one NaN per row)\n"
"and hits where the\n"
"value equals values[c] (float64, finite), or, values[c] NaN, where a finite value equals the row's\n"
"previous event's (last[r] before the first; last float64 (R), updated to each row's last value).\n"
"out int64 (nb, m): each touched block's hits.");

static PyObject *
point_mass_blocks(PyObject *self, PyObject *args)
{
    PyObject *o_x, *o_rows, *o_values, *o_last, *o_out;
    long long start;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "OLnOOOO", &o_x, &start, &size, &o_rows, &o_values, &o_last, &o_out))
        return NULL;
    if (size < 1 || size > 15 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "1 <= size <= 15, start >= 0");
        return NULL;
    }
    Buf b[5];
    memset(b, 0, sizeof(b));
    const Py_ssize_t r = buf_items(o_last, &b[0], 8, 1, "last");
    const Py_ssize_t n = r < 1 ? -1 : buf_split(o_x, &b[1], r, "x", "R rows of n values, R = len(last) >= 1");
    const Py_ssize_t m = n < 0 ? -1 : buf_items(o_rows, &b[2], 8, 0, "rows");
    if (m < 0 || buf_get(o_values, &b[3], 8, m, 0, "values") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const Py_ssize_t nb = blocks_touched(start, n, size);
    if (nb < 0 || buf_get(o_out, &b[4], 8, size_mul(nb, m), 1, "out") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    double *last = b[0].view.buf;
    const double *x = b[1].view.buf, *values = b[3].view.buf;
    const int64_t *rows = b[2].view.buf;
    int64_t *out = b[4].view.buf;
    for (Py_ssize_t c = 0; c < m; c++) {
        if (rows[c] < 0 || rows[c] >= r || (c && rows[c] < rows[c - 1]) || isinf(values[c])) {
            PyErr_SetString(PyExc_ValueError, "rows: non-decreasing rows of x; values: finite or NaN");
            RELEASE_ALL(b);
            return NULL;
        }
    }
    const Py_ssize_t first = (Py_ssize_t)(size - start % size); /* events of the first block here */
    for (Py_ssize_t c0 = 0, c1; c0 < m; c0 = c1) { /* chains c0..c1-1: one row's */
        const int64_t row = rows[c0];
        double table[PM_SLOTS];
        uint8_t chain_of[PM_SLOTS]; /* slot -> the value's ordinal among the row's; 128 empty */
        double watched[PM_VALUES];
        uint8_t watched_chain[PM_VALUES];
        Py_ssize_t repeat = -1, n_values = 0;
        for (c1 = c0; c1 < m && rows[c1] == row; c1++) {
            if (isnan(values[c1])) {
                if (repeat >= 0) {
                    PyErr_SetString(PyExc_ValueError, "values: one NaN (the repeat chain) per row at most");
                    RELEASE_ALL(b);
                    return NULL;
                }
                repeat = c1 - c0;
                continue;
            }
            for (Py_ssize_t q = 0; q < n_values; q++) {
                if (watched[q] == values[c1] + 0.0) {
                    PyErr_SetString(PyExc_ValueError, "values: a value watched twice in a row");
                    RELEASE_ALL(b);
                    return NULL;
                }
            }
            if (n_values == PM_VALUES || c1 - c0 > 127) {
                PyErr_SetString(PyExc_ValueError, "values: at most 15 per row");
                RELEASE_ALL(b);
                return NULL;
            }
            watched[n_values] = values[c1] + 0.0;
            watched_chain[n_values++] = (uint8_t)(c1 - c0);
        }
        uint64_t mult = 0x9E3779B97F4A7C15ULL;
        for (int placed = 0; !placed; mult += 0x632BE59BD9B4E019ULL) {
            for (int q = 0; q < PM_SLOTS; q++) {
                table[q] = NAN;
                chain_of[q] = 128;
            }
            placed = 1;
            for (Py_ssize_t q = 0; q < n_values && placed; q++) {
                const unsigned slot = pm_slot(watched[q], mult);
                placed = chain_of[slot] == 128;
                table[slot] = watched[q];
                chain_of[slot] = (uint8_t)q;
            }
            if (placed)
                break;
        }
        const double *xr = x + row * n;
        /* a block's hits of every value chain of the row packed in one register, 4 bits a chain (blocks
         * of at most 15 events): adding a constant per event, no increment waits for another's store */
        uint64_t inc[PM_SLOTS];
        for (int q = 0; q < PM_SLOTS; q++)
            inc[q] = chain_of[q] == 128 ? 0 : 1ULL << (4 * chain_of[q]);
        /* the repeat indicator in the last nibble: x - x is 0 for a finite x (NaN for NaN and inf) */
        const uint64_t repeat_inc = repeat >= 0 ? 1ULL << 60 : 0;
        int64_t hits[128];
        double prev = last[row];
        for (Py_ssize_t lo = 0, k = 0, hi = first < n ? first : n; lo < n; k++, lo = hi, hi = hi + size < n ? hi + size : n) {
            uint64_t packed = 0;
            if (n_values) {
                for (Py_ssize_t i = lo; i < hi; i++) {
                    const double v = xr[i] + 0.0;
                    const unsigned slot = pm_slot(v, mult);
                    packed += (table[slot] == v ? inc[slot] : 0) + ((v == prev) & (v - v == 0) ? repeat_inc : 0);
                    prev = v;
                }
            } else { /* the repeat chain alone (a feature without frequent values) */
                for (Py_ssize_t i = lo; i < hi; i++) {
                    packed += (xr[i] == prev) & (xr[i] - xr[i] == 0);
                    prev = xr[i];
                }
                packed <<= 60;
            }
            for (Py_ssize_t q = 0; q < n_values; q++)
                hits[watched_chain[q]] = (int64_t)((packed >> (4 * q)) & 15);
            if (repeat >= 0)
                hits[repeat] = (int64_t)(packed >> 60);
            memcpy(out + k * m + c0, hits, (size_t)(c1 - c0) * 8);
        }
    }
    for (Py_ssize_t q = 0; n && q < r; q++)
        last[q] = x[q * n + n - 1];
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

/* ---- grid_blocks ------------------------------------------------------------------------- */

PyDoc_STRVAR(grid_blocks_doc,
"grid_blocks(x, start, size, rows, steps, off, out)\n"
"\n"
"Hits of the point-mass grid chains (detectors.pointmass) per block of `size` events aligned on the\n"
"event count: x float64 (R, n) holds events start..start+n-1 of R rows; chain c reads row rows[c]\n"
"(int64) and hits where a finite value is a multiple of steps[c] (float64: |v/s - rint(v/s)| <= 1e-9\n"
"|v/s|, detectors.diagnosis.on_grid), or, off[c] (int64) non-zero, where a finite value is not.\n"
"out int64 (nb, g): each touched block's hits.");

static PyObject *
grid_blocks(PyObject *self, PyObject *args)
{
    PyObject *o_x, *o_rows, *o_steps, *o_off, *o_out;
    long long start;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "OLnOOOO", &o_x, &start, &size, &o_rows, &o_steps, &o_off, &o_out))
        return NULL;
    if (size < 1 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "size >= 1, start >= 0");
        return NULL;
    }
    Buf b[5];
    memset(b, 0, sizeof(b));
    const Py_ssize_t g = buf_items(o_rows, &b[0], 8, 0, "rows");
    if (g < 0 || buf_get(o_steps, &b[1], 8, g, 0, "steps") < 0 || buf_get(o_off, &b[2], 8, g, 0, "off") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const Py_ssize_t items = buf_items(o_x, &b[3], 8, 0, "x");
    if (items < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    const int64_t *rows = b[0].view.buf, *off = b[2].view.buf;
    const double *steps = b[1].view.buf, *x = b[3].view.buf;
    int64_t r_max = -1;
    for (Py_ssize_t c = 0; c < g; c++) {
        if (rows[c] < 0 || !(steps[c] > 0) || isinf(steps[c])) {
            PyErr_SetString(PyExc_ValueError, "rows: >= 0; steps: finite and > 0");
            RELEASE_ALL(b);
            return NULL;
        }
        r_max = rows[c] > r_max ? rows[c] : r_max;
    }
    /* x is (R, n): n is given by the out buffer's blocks, so take R as the rows' count from x's size */
    const Py_ssize_t r = PyObject_Size(o_x);
    if (r < 0 || r <= r_max || items % (r ? r : 1)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "x: R rows of n values, R > max(rows)");
        RELEASE_ALL(b);
        return NULL;
    }
    const Py_ssize_t n = r ? items / r : 0;
    const Py_ssize_t nb = blocks_touched(start, n, size);
    if (nb < 0 || buf_get(o_out, &b[4], 8, size_mul(nb, g), 1, "out") < 0) {
        RELEASE_ALL(b);
        return NULL;
    }
    int64_t *out = b[4].view.buf;
    const Py_ssize_t first = (Py_ssize_t)(size - start % size); /* events of the first block here */
    for (Py_ssize_t c = 0; c < g; c++) {
        const double *xr = x + rows[c] * n, step = steps[c];
        const int64_t want = off[c] != 0;
        for (Py_ssize_t lo = 0, k = 0, hi = first < n ? first : n; lo < n; k++, lo = hi, hi = hi + size < n ? hi + size : n) {
            int64_t hits = 0;
            for (Py_ssize_t i = lo; i < hi; i++) {
                const double v = xr[i];
                if (isfinite(v)) {
                    const double q = v / step;
                    hits += (fabs(q - nearbyint(q)) <= 1e-9 * fabs(q)) != want;
                }
            }
            out[k * g + c] = hits;
        }
    }
    RELEASE_ALL(b);
    Py_RETURN_NONE;
}

/* ---- spacesaving_update ------------------------------------------------------------------ */

/* detectors.sketches.SpaceSaving's arrays: per slot (a held label) its count, error and position (the
 * order it was first held in), and a binary heap of the slots by (count, position), exact, with each
 * slot's place in it. */
typedef struct {
    int64_t *table; /* slot * 3: count, error, position */
    int64_t *heap;  /* heap index -> slot */
    int64_t *where; /* slot -> heap index */
} Sketch;

static inline int
slot_before(const Sketch *s, int64_t a, int64_t b)
{
    const int64_t *x = s->table + 3 * a, *y = s->table + 3 * b;
    return x[0] < y[0] || (x[0] == y[0] && x[2] < y[2]);
}

static inline void
heap_place(Sketch *s, Py_ssize_t i, int64_t slot)
{
    s->heap[i] = slot;
    s->where[slot] = i;
}

static void
sift_down(Sketch *s, Py_ssize_t i, Py_ssize_t n)
{
    const int64_t slot = s->heap[i];
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && slot_before(s, s->heap[child + 1], s->heap[child]))
            child++;
        if (!slot_before(s, s->heap[child], slot))
            break;
        heap_place(s, i, s->heap[child]);
        i = child;
    }
    heap_place(s, i, slot);
}

static void
sift_up(Sketch *s, Py_ssize_t i)
{
    const int64_t slot = s->heap[i];
    while (i > 0) {
        const Py_ssize_t parent = (i - 1) / 2;
        if (!slot_before(s, slot, s->heap[parent]))
            break;
        heap_place(s, i, s->heap[parent]);
        i = parent;
    }
    heap_place(s, i, slot);
}

/* The label a value is counted as: itself if an exact str of at most max_label characters, else
 * str(value) cut to max_label. A new reference, or NULL with an exception set. */
static PyObject *
sketch_label(PyObject *value, Py_ssize_t max_label)
{
    if (PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) <= max_label)
        return Py_NewRef(value);
    PyObject *text = PyObject_Str(value);
    if (text == NULL || PyUnicode_GET_LENGTH(text) <= max_label)
        return text;
    PyObject *cut = PyUnicode_Substring(text, 0, max_label);
    Py_DECREF(text);
    return cut;
}

/* Count label `count` more times: 0, or -1 with an exception set (the sketch unchanged). */
static int
sketch_count(Sketch *s, PyObject *slots, PyObject *labels, Py_ssize_t capacity, PyObject *label, int64_t count,
             int64_t *next_position)
{
    PyObject *o_slot = PyDict_GetItemWithError(slots, label);
    if (o_slot != NULL) {
        const Py_ssize_t slot = PyLong_AsSsize_t(o_slot);
        if (slot < 0 || slot >= PyDict_GET_SIZE(slots)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "_slots: a slot out of range");
            return -1;
        }
        s->table[3 * slot] += count;
        sift_down(s, s->where[slot], PyDict_GET_SIZE(slots));
        return 0;
    }
    if (PyErr_Occurred())
        return -1;
    const Py_ssize_t held = PyDict_GET_SIZE(slots);
    Py_ssize_t slot;
    int64_t floor = 0;
    if (held < capacity) {
        slot = held;
        s->heap[held] = slot;
    } else {
        /* evict the smallest (count, position): the heap's root */
        slot = (Py_ssize_t)s->heap[0];
        floor = s->table[3 * slot];
        if (PyDict_DelItem(slots, PyList_GET_ITEM(labels, slot)) < 0)
            return -1;
    }
    PyObject *o_new = PyLong_FromSsize_t(slot);
    if (o_new == NULL || PyDict_SetItem(slots, label, o_new) < 0) {
        Py_XDECREF(o_new);
        return -1;  /* a victim dropped and no label in its place: only on a failure of Python itself */
    }
    Py_DECREF(o_new);
    if (PyList_SetItem(labels, slot, Py_NewRef(label)) < 0)
        return -1;
    int64_t *row = s->table + 3 * slot;
    row[0] = floor + count;
    row[1] = floor;
    row[2] = (*next_position)++;
    if (held < capacity)
        sift_up(s, held);
    else
        sift_down(s, 0, held);
    return 0;
}

PyDoc_STRVAR(spacesaving_update_doc,
"spacesaving_update(sketch, values, count, max_label, exclude) -> None\n"
"--\n\n"
"detectors.sketches.SpaceSaving's counting, on the sketch's own attributes: _slots (label -> slot),\n"
"_labels (slot -> label), _table (int64, capacity x 3: count, error, position), _heap and _where\n"
"(int64, capacity: the slots by (count, position), each slot's place), _capacity, _total,\n"
"_next_position. Each value not in `exclude` (a set, or None) is counted `count` times as\n"
"str(value)[:max_label]; a new label at capacity takes the place of the smallest (count, position).\n"
"On an exception, the values before it stay counted (_total and _next_position say so).");

static PyObject *
spacesaving_update(PyObject *self, PyObject *args)
{
    PyObject *sketch, *values, *exclude;
    long long count;
    Py_ssize_t max_label;
    if (!PyArg_ParseTuple(args, "OOLnO", &sketch, &values, &count, &max_label, &exclude))
        return NULL;
    if (exclude != Py_None && !PyAnySet_Check(exclude)) {
        PyErr_SetString(PyExc_TypeError, "exclude: a set or None");
        return NULL;
    }
    static const char *const names[] = {"_slots", "_labels", "_table", "_heap", "_where", "_capacity", "_total",
                                        "_next_position"};
    PyObject *o[8] = {NULL};
    Buf b[3];
    memset(b, 0, sizeof(b));
    PyObject *it = NULL;
    for (int k = 0; k < 8; k++)
        if ((o[k] = PyObject_GetAttrString(sketch, names[k])) == NULL)
            goto done;
    PyObject *slots = o[0], *labels = o[1];
    const Py_ssize_t capacity = PyLong_AsSsize_t(o[5]);
    long long total = PyLong_AsLongLong(o[6]);
    int64_t next_position = PyLong_AsLongLong(o[7]);
    if (PyErr_Occurred())
        goto done;
    if (!PyDict_CheckExact(slots) || !PyList_CheckExact(labels) || capacity < 1
        || PyList_GET_SIZE(labels) != capacity || PyDict_GET_SIZE(slots) > capacity || count < 1 || max_label < 0) {
        PyErr_SetString(PyExc_ValueError, "spacesaving_update: not a SpaceSaving sketch, or count < 1");
        goto done;
    }
    if (buf_get(o[2], &b[0], 8, size_mul(capacity, 3), 1, "_table") < 0
        || buf_get(o[3], &b[1], 8, capacity, 1, "_heap") < 0 || buf_get(o[4], &b[2], 8, capacity, 1, "_where") < 0)
        goto done;
    Sketch s = {b[0].view.buf, b[1].view.buf, b[2].view.buf};
    it = PyObject_GetIter(values);
    if (it == NULL)
        goto done;
    PyObject *value;
    while ((value = PyIter_Next(it)) != NULL) {
        int skip = 0;
        if (exclude != Py_None && (skip = PySet_Contains(exclude, value)) < 0) {
            Py_DECREF(value);
            break;
        }
        if (skip) {
            Py_DECREF(value);
            continue;
        }
        PyObject *label = sketch_label(value, max_label);
        Py_DECREF(value);
        if (label == NULL)
            break;
        const int rc = sketch_count(&s, slots, labels, capacity, label, count, &next_position);
        Py_DECREF(label);
        if (rc < 0)
            break;
        total += count;
    }
    /* what was counted, also before an exception */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *o_total = PyLong_FromLongLong(total), *o_position = PyLong_FromLongLong((long long)next_position);
    if (o_total == NULL || o_position == NULL || PyObject_SetAttrString(sketch, "_total", o_total) < 0
        || PyObject_SetAttrString(sketch, "_next_position", o_position) < 0) {
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
    } else {
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    Py_XDECREF(o_total);
    Py_XDECREF(o_position);
done:
    Py_XDECREF(it);
    RELEASE_ALL(b);
    for (int k = 0; k < 8; k++)
        Py_XDECREF(o[k]);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* ---- usable_events ---------------------------------------------------------------------- */


PyDoc_STRVAR(usable_events_doc,
"usable_events(items, max_model_name, max_features) -> bool\n"
"--\n\n"
"Whether the list is not empty and every item is a dict (exactly) whose 'model' is a str (exactly) of\n"
"1..max_model_name characters and whose 'features' is a dict (exactly) of at most max_features\n"
"items: detectors.events.all_usable, one pass.");

static PyObject *
usable_events(PyObject *self, PyObject *args)
{
    PyObject *items;
    Py_ssize_t max_model, max_features;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &items, &max_model, &max_features))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n == 0)
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ev = PyList_GET_ITEM(items, i);
        if (!PyDict_CheckExact(ev))
            Py_RETURN_FALSE;
        PyObject *model = PyDict_GetItemWithError(ev, key_model);
        if (model == NULL && PyErr_Occurred())
            return NULL;
        if (model == NULL || !PyUnicode_CheckExact(model) || PyUnicode_GET_LENGTH(model) < 1
            || PyUnicode_GET_LENGTH(model) > max_model)
            Py_RETURN_FALSE;
        PyObject *features = PyDict_GetItemWithError(ev, key_features);
        if (features == NULL && PyErr_Occurred())
            return NULL;
        if (features == NULL || !PyDict_CheckExact(features) || PyDict_GET_SIZE(features) > max_features)
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"read_columns", read_columns, METH_VARARGS, read_columns_doc},
    {"pit_transform", pit_transform, METH_VARARGS, pit_transform_doc},
    {"numeric_blocks", numeric_blocks, METH_VARARGS, numeric_blocks_doc},
    {"categorical_blocks", categorical_blocks, METH_VARARGS, categorical_blocks_doc},
    {"cusum_sums", cusum_sums, METH_VARARGS, cusum_sums_doc},
    {"usable_events", usable_events, METH_VARARGS, usable_events_doc},
    {"block_sums", block_sums, METH_VARARGS, block_sums_doc},
    {"point_mass_blocks", point_mass_blocks, METH_VARARGS, point_mass_blocks_doc},
    {"grid_blocks", grid_blocks, METH_VARARGS, grid_blocks_doc},
    {"ks_uniform", ks_uniform, METH_VARARGS, ks_uniform_doc},
    {"ks_alarms", ks_alarms, METH_VARARGS, ks_alarms_doc},
    {"chi2_screen", chi2_screen, METH_VARARGS, chi2_screen_doc},
    {"spacesaving_update", spacesaving_update, METH_VARARGS, spacesaving_update_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._kernels",
    "The monitors' per-value loops, compiled (see detectors/_kernels.c).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    key_model = PyUnicode_InternFromString("model");
    key_features = PyUnicode_InternFromString("features");
    key_confidence = PyUnicode_InternFromString("confidence");
    key_model_version = PyUnicode_InternFromString("model_version");
    if (key_model == NULL || key_features == NULL || key_confidence == NULL || key_model_version == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL || PyModule_AddIntMacro(m, VERSIONS_NONE) < 0 || PyModule_AddIntMacro(m, VERSIONS_EXPECTED) < 0
        || PyModule_AddIntMacro(m, VERSIONS_OTHER) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}

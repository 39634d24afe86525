/* JSON messages -> the monitors' columns, without a Python object per event or per value.
 *
 * `scan` parses a block of messages with yyjson (vendored in detectors/vendor/yyjson, MIT) and keeps
 * each document; a message that is one plain event of a routed model gets its model's name, any other
 * (not JSON, a list, a reject, a number orjson would not read, nesting deeper than orjson allows...)
 * gets None and goes through the dict path (detectors.events.decode_message), so rejects and their
 * reasons are the dict path's. `Block.fill` then writes the events of one model straight into that
 * model's columns, with the contract of _kernels.read_columns (the dict path's reader), value for value.
 *
 * Why yyjson: one C file under MIT, a strict RFC 8259 reader (UTF-8 checked, no NaN, comments or trailing
 * commas unless asked), correctly rounded doubles as orjson's, an immutable DOM whose documents can be
 * kept between routing and filling; measured on this project's events it parses ~4x faster than orjson
 * builds its dicts (bench/RESULTS.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_columns.h"
#include "vendor/yyjson/yyjson.h"

/* orjson refuses nesting deeper than 1024 (its "depth limit exceeded"); a message nested near that is
 * left to it */
#define MAX_DEPTH 512

typedef struct {
    PyObject_HEAD
    Py_ssize_t first; /* the number of its first payload in the caller's numbering */
    Py_ssize_t n;
    yyjson_doc **docs;     /* NULL: not a fast event */
    yyjson_val **features; /* the last "features" of each event */
    yyjson_val **confidence;
    yyjson_val **version;
} Block;

static void
block_free(Block *b)
{
    if (b->docs != NULL) {
        for (Py_ssize_t i = 0; i < b->n; i++)
            if (b->docs[i] != NULL)
                yyjson_doc_free(b->docs[i]);
    }
    PyMem_Free(b->docs);
    PyMem_Free(b->features);
    PyMem_Free(b->confidence);
    PyMem_Free(b->version);
    b->docs = NULL;
    b->features = b->confidence = b->version = NULL;
}

static void
Block_dealloc(Block *self)
{
    block_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* nesting within orjson's limit (a scalar: 0) */
static int
shallow(yyjson_val *v, int depth)
{
    if (!yyjson_is_ctn(v))
        return 1;
    if (depth >= MAX_DEPTH)
        return 0;
    yyjson_val *item;
    if (yyjson_is_arr(v)) {
        yyjson_arr_iter it = yyjson_arr_iter_with(v);
        while ((item = yyjson_arr_iter_next(&it)))
            if (!shallow(item, depth + 1))
                return 0;
    }
    else {
        yyjson_obj_iter it = yyjson_obj_iter_with(v);
        yyjson_val *key;
        while ((key = yyjson_obj_iter_next(&it)))
            if (!shallow(yyjson_obj_iter_get_val(key), depth + 1))
                return 0;
    }
    return 1;
}

static inline int
key_is(yyjson_val *key, const char *text, size_t len)
{
    return yyjson_get_len(key) == len && memcmp(yyjson_get_str(key), text, len) == 0;
}

/* the message's event fields if it is one plain event object (its last occurrence of each key, as a
 * dict keeps it); 0 otherwise */
static int
plain_event(yyjson_doc *doc, Py_ssize_t max_model, Py_ssize_t max_features, yyjson_val **model, yyjson_val **features,
            yyjson_val **confidence, yyjson_val **version)
{
    yyjson_val *root = yyjson_doc_get_root(doc), *key;
    if (!yyjson_is_obj(root))
        return 0;
    *model = *features = *confidence = *version = NULL;
    yyjson_obj_iter it = yyjson_obj_iter_with(root);
    while ((key = yyjson_obj_iter_next(&it))) {
        yyjson_val *v = yyjson_obj_iter_get_val(key);
        if (key_is(key, "model", 5))
            *model = v;
        else if (key_is(key, "features", 8))
            *features = v;
        else if (key_is(key, "confidence", 10))
            *confidence = v;
        else if (key_is(key, "model_version", 13))
            *version = v;
        if (!shallow(v, 2))
            return 0;
    }
    /* a model name of more bytes than the limit may still be short enough in characters: the dict path decides */
    if (*model == NULL || !yyjson_is_str(*model) || yyjson_get_len(*model) == 0
        || (Py_ssize_t)yyjson_get_len(*model) > max_model)
        return 0;
    return *features != NULL && yyjson_is_obj(*features) && (Py_ssize_t)yyjson_obj_size(*features) <= max_features;
}

static PyTypeObject BlockType;

PyDoc_STRVAR(scan_doc,
"scan(payloads, first, models, max_message_bytes, max_model_name, max_features) -> (Block, [model or None])\n"
"--\n\n"
"Parse each payload (bytes) of the list; keep those that are one plain JSON event object of a model\n"
"in `models` ({name: name} of the routed models) within the limits. For each payload, that model's\n"
"name (the object in `models`) or None: the payload is for the dict path. `first`: the number the\n"
"caller gives the first payload (Block.fill's rows count from it).");

static PyObject *
scan(PyObject *self, PyObject *args)
{
    PyObject *payloads, *models;
    Py_ssize_t first, max_bytes, max_model, max_features;
    if (!PyArg_ParseTuple(args, "O!nO!nnn", &PyList_Type, &payloads, &first, &PyDict_Type, &models, &max_bytes,
                          &max_model, &max_features))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    Block *block = PyObject_New(Block, &BlockType);
    if (block == NULL)
        return NULL;
    block->n = n;
    block->first = first;
    block->docs = PyMem_Calloc(n ? n : 1, sizeof(yyjson_doc *));
    block->features = PyMem_Calloc(n ? n : 1, sizeof(yyjson_val *));
    block->confidence = PyMem_Calloc(n ? n : 1, sizeof(yyjson_val *));
    block->version = PyMem_Calloc(n ? n : 1, sizeof(yyjson_val *));
    PyObject *names = PyList_New(n);
    if (block->docs == NULL || block->features == NULL || block->confidence == NULL || block->version == NULL
        || names == NULL) {
        Py_XDECREF(names);
        Py_DECREF(block);
        return PyErr_NoMemory();
    }
    /* events of one model mostly come together: the last name found, by its bytes */
    const char *last_text = NULL;
    size_t last_len = 0;
    PyObject *last_name = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(payloads, i), *name = Py_None;
        PyList_SET_ITEM(names, i, Py_NewRef(Py_None));
        if (!PyBytes_CheckExact(p))
            continue;
        Py_ssize_t len = PyBytes_GET_SIZE(p);
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(p);
        /* oversized, or a msgpack map / array (detectors.events: msgpack first) */
        if (len == 0 || len > max_bytes || (data[0] >= 0x80 && data[0] <= 0x9F) || (data[0] >= 0xDC && data[0] <= 0xDF))
            continue;
        yyjson_doc *doc = yyjson_read((const char *)data, (size_t)len, 0);
        if (doc == NULL)
            continue;
        yyjson_val *model;
        if (!plain_event(doc, max_model, max_features, &model, &block->features[i], &block->confidence[i],
                         &block->version[i])) {
            yyjson_doc_free(doc);
            continue;
        }
        const char *text = yyjson_get_str(model);
        size_t tlen = yyjson_get_len(model);
        if (last_name != NULL && tlen == last_len && memcmp(text, last_text, tlen) == 0)
            name = last_name;
        else {
            PyObject *s = PyUnicode_DecodeUTF8(text, (Py_ssize_t)tlen, "strict");
            if (s == NULL) { /* yyjson checked the UTF-8; a surrogate escape orjson refuses */
                PyErr_Clear();
                yyjson_doc_free(doc);
                continue;
            }
            /* the dict's value: the model's name object, so that the caller's groups share it */
            name = PyDict_GetItemWithError(models, s);
            Py_DECREF(s);
            if (PyErr_Occurred()) {
                yyjson_doc_free(doc);
                Py_DECREF(names);
                Py_DECREF(block);
                return NULL;
            }
            if (name == NULL) { /* not routed here: the router's reject, on the dict path */
                yyjson_doc_free(doc);
                continue;
            }
            last_name = name;
            last_text = text;
            last_len = tlen;
        }
        block->docs[i] = doc;
        Py_SETREF(PyList_GET_ITEM(names, i), Py_NewRef(name));
    }
    return Py_BuildValue("(NN)", block, names);
}

/* ---- fill ----------------------------------------------------------------------------- */

/* UTF-8 texts -> numbers: the column names, a categorical feature's labels */
typedef struct {
    Py_ssize_t mask; /* slots - 1 */
    const char **text;
    Py_ssize_t *len;
    int64_t *value;
} TextTable;

static inline uint64_t
text_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t k = 0; k < len; k++)
        h = (h ^ (unsigned char)s[k]) * 1099511628211ULL;
    return h;
}

/* the texts are borrowed from str objects the caller holds for the whole call */
static int
table_init(TextTable *t, Py_ssize_t count)
{
    Py_ssize_t slots = 8;
    while (slots < 2 * count)
        slots *= 2;
    t->mask = slots - 1;
    t->text = PyMem_Calloc(slots, sizeof(char *));
    t->len = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    t->value = PyMem_Calloc(slots, sizeof(int64_t));
    if (t->text == NULL || t->len == NULL || t->value == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
table_free(TextTable *t)
{
    PyMem_Free(t->text);
    PyMem_Free(t->len);
    PyMem_Free(t->value);
}

static int
table_put(TextTable *t, PyObject *key, int64_t value)
{
    if (!PyUnicode_Check(key))
        return 0; /* no JSON string equals it */
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(key, &len);
    if (s == NULL) { /* a lone surrogate: no JSON string orjson reads equals it */
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t at = (Py_ssize_t)(text_hash(s, (size_t)len) & (uint64_t)t->mask);
    while (t->text[at] != NULL)
        at = (at + 1) & t->mask;
    t->text[at] = s;
    t->len[at] = len;
    t->value[at] = value;
    return 0;
}

/* the value of text, or -1 */
static inline int64_t
table_get(const TextTable *t, const char *s, size_t len)
{
    Py_ssize_t at = (Py_ssize_t)(text_hash(s, len) & (uint64_t)t->mask);
    while (t->text[at] != NULL) {
        if ((size_t)t->len[at] == len && memcmp(t->text[at], s, len) == 0)
            return t->value[at];
        at = (at + 1) & t->mask;
    }
    return -1;
}

/* a JSON number as read_columns reads the int or float orjson makes of it */
static inline double
number_of(yyjson_val *v)
{
    if (yyjson_is_real(v))
        return yyjson_get_real(v);
    if (yyjson_is_sint(v))
        return (double)yyjson_get_sint(v);
    return (double)yyjson_get_uint(v);
}

static inline double
classify(yyjson_val *v, uint8_t *status)
{
    if (yyjson_is_num(v)) {
        double d = number_of(v);
        if (isfinite(d)) {
            *status = ST_VALID;
            return d;
        }
    }
    else if (yyjson_is_null(v)) {
        *status = ST_MISSING;
        return NAN;
    }
    *status = ST_INVALID;
    return INFINITY;
}

/* the Python value orjson makes of a scalar (str, int, float, bool), or NULL with an exception */
static PyObject *
scalar_object(yyjson_val *v)
{
    if (yyjson_is_str(v))
        return PyUnicode_DecodeUTF8(yyjson_get_str(v), (Py_ssize_t)yyjson_get_len(v), "strict");
    if (yyjson_is_real(v))
        return PyFloat_FromDouble(yyjson_get_real(v));
    if (yyjson_is_sint(v))
        return PyLong_FromLongLong(yyjson_get_sint(v));
    if (yyjson_is_uint(v))
        return PyLong_FromUnsignedLongLong(yyjson_get_uint(v));
    return PyBool_FromLong(yyjson_get_bool(v));
}

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int
buf_get(PyObject *obj, Buf *b, Py_ssize_t itemsize, Py_ssize_t count, const char *name)
{
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    b->held = 1;
    if (b->view.len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, b->view.len, itemsize * count);
        return -1;
    }
    return 0;
}

/* the unresolved entry (j, i, value) of event i's column j, already appended for an earlier duplicate key */
static int
drop_unresolved(PyObject *out, Py_ssize_t j, Py_ssize_t i)
{
    for (Py_ssize_t k = PyList_GET_SIZE(out) - 1; k >= 0; k--) {
        PyObject *t = PyList_GET_ITEM(out, k);
        if (PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1)) != i)
            break;
        if (PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0)) == j)
            return PySequence_DelItem(out, k);
    }
    return 0;
}

PyDoc_STRVAR(fill_doc,
"fill(rows, columns, n_numeric, tables, bool_codes, x, status, codes, cat_absent, extra, expected_version,\n"
"     confidence) -> (unresolved, invalid, versions)\n"
"--\n\n"
"_kernels.read_columns(events, ...) with top=(expected_version, confidence) for the scanned events at\n"
"`rows` (a list of payload numbers, each one a model's event), except that the values left at code -3 come\n"
"back as a list of (j, i, value): the str, int, float or bool orjson makes of the value.");

static PyObject *
Block_fill(Block *self, PyObject *args)
{
    PyObject *rows, *columns, *tables, *o_bool, *o_x, *o_status, *o_codes, *o_absent, *o_extra, *expected, *o_conf;
    Py_ssize_t f;
    if (!PyArg_ParseTuple(args, "O!O!nO!OOOOOOOO", &PyList_Type, &rows, &PyDict_Type, &columns, &f, &PyTuple_Type,
                          &tables, &o_bool, &o_x, &o_status, &o_codes, &o_absent, &o_extra, &expected, &o_conf))
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(rows), m = PyTuple_GET_SIZE(tables), width = f + m;
    if (f < 0 || PyDict_GET_SIZE(columns) != width) {
        PyErr_SetString(PyExc_ValueError, "columns: one per numeric feature and per table");
        return NULL;
    }
    const char *expected_text = NULL;
    Py_ssize_t expected_len = 0;
    if (expected != Py_None && (expected_text = PyUnicode_AsUTF8AndSize(expected, &expected_len)) == NULL)
        PyErr_Clear(); /* a surrogate in the baseline's version: no event's equals it */
    Buf b[6];
    memset(b, 0, sizeof(b));
    TextTable cols = {0}, *labels = PyMem_Calloc(m ? m : 1, sizeof(TextTable));
    Py_ssize_t *seen = PyMem_Malloc((width ? width : 1) * sizeof(Py_ssize_t));
    PyObject *unresolved = PyList_New(0), *result = NULL;
    if (labels == NULL || seen == NULL || unresolved == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (table_init(&cols, width) < 0)
        goto done;
    {
        Py_ssize_t pos = 0;
        PyObject *k, *c;
        while (PyDict_Next(columns, &pos, &k, &c)) {
            Py_ssize_t col = PyLong_AsSsize_t(c);
            if (col < 0 || col >= width) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "columns: values must be 0..len(columns)-1");
                goto done;
            }
            table_put(&cols, k, col);
        }
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        PyObject *t = PyTuple_GET_ITEM(tables, j), *k, *c;
        if (!PyDict_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "tables must be dicts");
            goto done;
        }
        if (table_init(&labels[j], PyDict_GET_SIZE(t)) < 0)
            goto done;
        Py_ssize_t pos = 0;
        while (PyDict_Next(t, &pos, &k, &c)) {
            int64_t code = PyLong_AsLongLong(c);
            if (code == -1 && PyErr_Occurred())
                goto done;
            table_put(&labels[j], k, code);
        }
    }
    if (buf_get(o_bool, &b[0], 8, 2 * m, "bool_codes") < 0 || buf_get(o_x, &b[1], 8, f * n, "x") < 0
        || buf_get(o_status, &b[2], 1, f * n, "status") < 0 || buf_get(o_codes, &b[3], 8, m * n, "codes") < 0
        || buf_get(o_absent, &b[4], 1, m * n, "cat_absent") < 0)
        goto done;
    if (PyObject_GetBuffer(o_extra, &b[5].view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    b[5].held = 1;
    Buf cb = {0};
    if (PyObject_GetBuffer(o_conf, &cb.view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        goto done;
    cb.held = 1;
    const Py_ssize_t n_extra = b[5].view.len, n_conf = cb.view.len / 8;
    if ((n_extra != 0 && n_extra != n) || (n_conf != 0 && n_conf != n)) {
        PyErr_SetString(PyExc_ValueError, "extra, confidence: one per event, or none");
        PyBuffer_Release(&cb.view);
        goto done;
    }
    const int64_t *bool_codes = b[0].view.buf;
    double *x = b[1].view.buf, *conf = cb.view.buf;
    uint8_t *status = b[2].view.buf, *cat_absent = b[4].view.buf, *extra = b[5].view.buf;
    int64_t *codes = b[3].view.buf;
    Py_ssize_t invalid = 0;
    int no_version = 1, all_expected = expected != Py_None;
    /* keys by position: events of one producer list their keys in one order */
    enum { KEY_CACHE = 256 };
    const char *cache_text[KEY_CACHE];
    size_t cache_len[KEY_CACHE];
    Py_ssize_t cache_col[KEY_CACHE], cached = 0;
    for (Py_ssize_t col = 0; col < width; col++)
        seen[col] = -1;
    memset(cat_absent, 0, (size_t)(m * n));

    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t row = PyLong_AsSsize_t(PyList_GET_ITEM(rows, i)) - self->first;
        if (row < 0 || row >= self->n || self->docs[row] == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_IndexError, "payload %zd is not a scanned event", row + self->first);
            PyBuffer_Release(&cb.view);
            goto done;
        }
        if (n_conf) {
            yyjson_val *c = self->confidence[row];
            uint8_t st;
            double d = c == NULL ? NAN : classify(c, &st);
            conf[i] = d >= 0.0 && d <= 1.0 ? d : (d != d ? d : INFINITY);
        }
        yyjson_val *version = self->version[row];
        if (version != NULL && !yyjson_is_null(version)) {
            no_version = 0;
            if (all_expected && !(expected_text != NULL && yyjson_is_str(version)
                                  && (Py_ssize_t)yyjson_get_len(version) == expected_len
                                  && memcmp(yyjson_get_str(version), expected_text, (size_t)expected_len) == 0))
                all_expected = 0;
        }
        else
            all_expected = 0;

        yyjson_obj_iter it = yyjson_obj_iter_with(self->features[row]);
        yyjson_val *key;
        Py_ssize_t k = 0, matched = 0, unknown = 0;
        while ((key = yyjson_obj_iter_next(&it))) {
            yyjson_val *v = yyjson_obj_iter_get_val(key);
            const char *text = yyjson_get_str(key);
            size_t len = yyjson_get_len(key);
            Py_ssize_t col;
            if (k < cached && cache_len[k] == len && memcmp(cache_text[k], text, len) == 0)
                col = cache_col[k];
            else {
                col = (Py_ssize_t)table_get(&cols, text, len);
                if (k < KEY_CACHE) { /* the texts live in the block's documents for the whole call */
                    cache_text[k] = text;
                    cache_len[k] = len;
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
            if (seen[col] == i) { /* a key given twice: the last one counts, as in the dict orjson makes */
                if (col < f)
                    invalid -= status[col * n + i] == ST_INVALID;
                else if (codes[(col - f) * n + i] == UNRESOLVED_CODE && drop_unresolved(unresolved, col - f, i) < 0) {
                    PyBuffer_Release(&cb.view);
                    goto done;
                }
            }
            else {
                seen[col] = i;
                matched++;
            }
            if (col < f) {
                Py_ssize_t at = col * n + i;
                x[at] = classify(v, &status[at]);
                invalid += status[at] == ST_INVALID;
                continue;
            }
            Py_ssize_t j = col - f;
            int64_t code;
            if (yyjson_is_str(v)) {
                code = table_get(&labels[j], yyjson_get_str(v), yyjson_get_len(v));
                if (code < 0)
                    code = UNRESOLVED_CODE;
            }
            else if (yyjson_is_null(v))
                code = MISSING_CODE;
            else if (yyjson_is_bool(v))
                code = bool_codes[2 * j + (yyjson_get_bool(v) ? 1 : 0)];
            else if (yyjson_is_ctn(v))
                code = INVALID_CODE;
            else
                code = UNRESOLVED_CODE;
            codes[j * n + i] = code;
            if (code == UNRESOLVED_CODE) {
                PyObject *value = scalar_object(v);
                PyObject *entry = value == NULL ? NULL : Py_BuildValue("(nnN)", j, i, value);
                if (entry == NULL || PyList_Append(unresolved, entry) < 0) {
                    Py_XDECREF(entry);
                    PyBuffer_Release(&cb.view);
                    goto done;
                }
                Py_DECREF(entry);
            }
        }
        if (matched < width)
            mark_absent(i, n, f, width, seen, x, status, codes, cat_absent);
        if (n_extra)
            extra[i] = unknown > 0;
    }
    PyBuffer_Release(&cb.view);
    result = Py_BuildValue("(Oni)", unresolved, invalid,
                           no_version ? VERSIONS_NONE : all_expected ? VERSIONS_EXPECTED : VERSIONS_OTHER);
done:
    for (int k = 0; k < 6; k++)
        if (b[k].held)
            PyBuffer_Release(&b[k].view);
    if (labels != NULL)
        for (Py_ssize_t j = 0; j < m; j++)
            table_free(&labels[j]);
    PyMem_Free(labels);
    table_free(&cols);
    PyMem_Free(seen);
    Py_XDECREF(unresolved);
    return result;
}

PyDoc_STRVAR(versions_doc,
"versions(rows) -> list or None\n"
"--\n\n"
"The 'model_version' of the scanned events at `rows` as orjson makes it (None if absent or null),\n"
"or None if one is a list or a map (then the caller reads the events).");

static PyObject *
Block_versions(Block *self, PyObject *rows)
{
    if (!PyList_Check(rows)) {
        PyErr_SetString(PyExc_TypeError, "rows: a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t row = PyLong_AsSsize_t(PyList_GET_ITEM(rows, i)) - self->first;
        if (row < 0 || row >= self->n || self->docs[row] == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_IndexError, "payload %zd is not a scanned event", row + self->first);
            Py_DECREF(out);
            return NULL;
        }
        yyjson_val *v = self->version[row];
        PyObject *value;
        if (v == NULL || yyjson_is_null(v))
            value = Py_NewRef(Py_None);
        else if (yyjson_is_ctn(v)) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        else if ((value = scalar_object(v)) == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, value);
    }
    return out;
}

static PyMethodDef Block_methods[] = {
    {"fill", (PyCFunction)Block_fill, METH_VARARGS, fill_doc},
    {"versions", (PyCFunction)Block_versions, METH_O, versions_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "detectors._decode.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)Block_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The parsed documents of a block of messages (`scan`), until it is freed.",
    .tp_methods = Block_methods,
};

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "detectors._decode",
    "JSON messages straight into the monitors' columns (detectors/_decode.c).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__decode(void)
{
    if (PyType_Ready(&BlockType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL)
        return NULL;
    if (PyModule_AddObjectRef(mod, "Block", (PyObject *)&BlockType) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}

/* Native scan of an SQLite hash chain (nexml_ext.store._chainscan).
 *
 * An accelerator for the longest part of `nexml audit verify` on SQLite, never a judge: it walks
 * a chain's stored rows in seq order, assembles each record's canonical JSON from the raw
 * columns, hashes it with its stored prev_hash and compares with the stored hash, exactly as
 * governance/audit.py's fast path does with tokens the database assembled. It stops at the
 * first row it cannot prove (an unexpected storage type, a hash that differs, a separator
 * `,"key":` that does not occur exactly once: see governance/audit.py for why that count
 * matters) or whose link is wrong, and hands back where it stopped; Python then decides that
 * row and everything after it with its own paths (store/chain_scan.py). A row it proves hashes,
 * with SHA-256, to the hash stored for it: the proof is the hash, not this code.
 *
 * Canonical JSON here is json.dumps(sort_keys=True, separators=(",", ":"),
 * ensure_ascii=False) encoded as UTF-8: strings escape only `"`, `\` and control characters
 * (\b \f \n \r \t, the rest as \u00xx); floats are repr() (PyOS_double_to_string, mode 'r'),
 * NaN and the infinities as json.dumps spells them; times are SQLAlchemy's stored text
 * 'YYYY-MM-DD HH:MM:SS.ffffff' as "YYYY-MM-DDTHH:MM:SS.ffffffZ". tests/governance holds this
 * equal to canonical_json on generated records.
 *
 * It links the system SQLite, the library Python's own sqlite3 module loads on Debian, so one
 * copy of SQLite serves both connections in a process (two copies would release each other's
 * POSIX locks on close); chain_scan.py turns it off when the two report different versions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <string.h>

static PyObject *ScanError;

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 8192;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *bytes, size_t n) {
    if (reserve(b, n)) return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* Token writers: 0 written, 1 a stored value this scan does not vouch for, -1 error. */

static int put_text(Buf *b, sqlite3_stmt *st, int col) {
    static const char hex[] = "0123456789abcdef";
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_TEXT) return 1;
    const unsigned char *s = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (reserve(b, n * 6 + 2)) return -1;
    char *out = b->data + b->len;
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\f': *out++ = 'f'; break;
        case '\n': *out++ = 'n'; break;
        case '\r': *out++ = 'r'; break;
        case '\t': *out++ = 't'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    return 0;
}

static int put_int(Buf *b, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_INTEGER) return 1;
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)sqlite3_column_int64(st, col));
    return put(b, digits, (size_t)n);
}

static int put_bool(Buf *b, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_INTEGER) return 1;
    sqlite3_int64 v = sqlite3_column_int64(st, col);
    if (v == 1) return put(b, "true", 4);
    if (v == 0) return put(b, "false", 5);
    return 1;
}

static int put_float(Buf *b, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_FLOAT) return 1;
    double v = sqlite3_column_double(st, col);
    if (isnan(v)) return put(b, "NaN", 3);
    if (isinf(v)) return v > 0 ? put(b, "Infinity", 8) : put(b, "-Infinity", 9);
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return -1;
    int rc = put(b, text, strlen(text));
    PyMem_Free(text);
    return rc;
}

static int put_time(Buf *b, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_TEXT) return 1;
    const unsigned char *s = sqlite3_column_text(st, col);
    if (sqlite3_column_bytes(st, col) != 26 || s[10] != ' ') return 1;
    if (reserve(b, 30)) return -1;
    char *out = b->data + b->len;
    *out++ = '"';
    for (int i = 0; i < 26; i++) {
        if (s[i] == '"') return 1; /* no token holds a double quote (see audit.py) */
        *out++ = s[i] == ' ' ? 'T' : (char)s[i];
    }
    *out++ = 'Z';
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    return 0;
}

static int put_json(Buf *b, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL) return put(b, "null", 4);
    if (type != SQLITE_TEXT) return 1;
    const unsigned char *s = sqlite3_column_text(st, col);
    return put(b, s, (size_t)sqlite3_column_bytes(st, col));
}

/* How many times the separators occur in body (each `,"key":` starts with `,"` and no key
 * holds one, so occurrences never overlap). `first` marks the first letters of their keys:
 * most `,"` in a record start some other key, and are passed over without a comparison. */
static Py_ssize_t count_separators(const char *body, size_t n, PyObject *seps,
                                   const unsigned char *first) {
    Py_ssize_t found = 0, count = PyTuple_GET_SIZE(seps);
    const char *p = body, *end = body + n;
    while ((p = memchr(p, ',', (size_t)(end - p))) != NULL) {
        if (p + 2 < end && p[1] == '"' && first[(unsigned char)p[2]]) {
            for (Py_ssize_t i = 0; i < count; i++) {
                PyObject *sep = PyTuple_GET_ITEM(seps, i);
                Py_ssize_t len = PyBytes_GET_SIZE(sep);
                if (end - p >= len && memcmp(p, PyBytes_AS_STRING(sep), (size_t)len) == 0) {
                    found++;
                    break;
                }
            }
        }
        p++;
    }
    return found;
}

/* A stored value as Python's sqlite3 module gives it (for the link check's message). */
static PyObject *value(sqlite3_stmt *st, int col) {
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: return PyLong_FromLongLong(sqlite3_column_int64(st, col));
    case SQLITE_FLOAT: return PyFloat_FromDouble(sqlite3_column_double(st, col));
    case SQLITE_TEXT:
        return PyUnicode_DecodeUTF8((const char *)sqlite3_column_text(st, col),
                                    sqlite3_column_bytes(st, col), "replace");
    case SQLITE_BLOB:
        return PyBytes_FromStringAndSize(sqlite3_column_blob(st, col),
                                         sqlite3_column_bytes(st, col));
    default: Py_RETURN_NONE;
    }
}

static const char *scan_doc =
    "scan(uri, sql, kinds, keys, separators, expected, last, until)\n"
    "  -> (expected, last, count, stop)\n\n"
    "Walk the rows of `sql` (id, seq, prev_hash, hash, then the hashed columns in key order)\n"
    "from record `expected`, whose predecessor's hash is `last`, up to record `until`.\n"
    "`kinds` holds one letter per column (t text, i int, b bool, f float, d time, j json),\n"
    "`keys` its `{\"name\":` or `,\"name\":` prefix. `stop` is None (record `until` verified,\n"
    "or the rows ran out), ('link', seq, prev_hash) for a row that does not follow, or\n"
    "('row',) for a row this scan cannot prove; the walk's state is as far as it verified.";

static PyObject *scan(PyObject *self, PyObject *args) {
    const char *uri, *sql, *kinds, *last_in;
    Py_ssize_t nkinds, last_len;
    PyObject *keys, *seps;
    long long expected, until;
    if (!PyArg_ParseTuple(args, "ssy#O!O!Ls#L", &uri, &sql, &kinds, &nkinds, &PyTuple_Type,
                          &keys, &PyTuple_Type, &seps, &expected, &last_in, &last_len, &until))
        return NULL;
    if (PyTuple_GET_SIZE(keys) != nkinds) {
        PyErr_SetString(PyExc_ValueError, "one key per kind");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkinds; i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, i))) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return NULL;
        }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seps); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(seps, i))) {
            PyErr_SetString(PyExc_TypeError, "separators must be bytes");
            return NULL;
        }
    if (last_len > 255) {
        PyErr_SetString(PyExc_ValueError, "last hash too long");
        return NULL;
    }
    char last[256];
    size_t last_n = (size_t)last_len;
    memcpy(last, last_in, last_n);
    unsigned char first[256] = {0};
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seps); i++) {
        PyObject *sep = PyTuple_GET_ITEM(seps, i);
        if (PyBytes_GET_SIZE(sep) < 3 || memcmp(PyBytes_AS_STRING(sep), ",\"", 2) != 0) {
            PyErr_SetString(PyExc_ValueError, "a separator is `,\"key\":`");
            return NULL;
        }
        first[(unsigned char)PyBytes_AS_STRING(sep)[2]] = 1;
    }

    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    EVP_MD *md = NULL;
    EVP_MD_CTX *ctx = NULL;
    Buf body = {NULL, 0, 0};
    PyObject *stop = NULL, *result = NULL;
    long long count = 0;
    int rc = SQLITE_DONE;

    /* NOMUTEX: this connection never leaves this call, so no API call on it need lock. */
    int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(uri, &db, flags, NULL) != SQLITE_OK) {
        PyErr_Format(ScanError, "cannot open %s: %s", uri, db ? sqlite3_errmsg(db) : "no memory");
        goto done;
    }
    sqlite3_busy_timeout(db, 5000); /* as Python's sqlite3 waits by default */
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        PyErr_Format(ScanError, "cannot prepare the scan: %s", sqlite3_errmsg(db));
        goto done;
    }
    if (sqlite3_column_count(st) != 4 + nkinds) {
        PyErr_SetString(ScanError, "the scan's columns do not match its kinds");
        goto done;
    }
    md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    ctx = EVP_MD_CTX_new();
    if (md == NULL || ctx == NULL) {
        PyErr_SetString(ScanError, "OpenSSL has no SHA-256");
        goto done;
    }

    while (expected <= until && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* The link: this row is record `expected` and points at the last hash walked. */
        if (sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
            sqlite3_column_int64(st, 1) != expected ||
            sqlite3_column_type(st, 2) != SQLITE_TEXT ||
            (size_t)sqlite3_column_bytes(st, 2) != last_n ||
            memcmp(sqlite3_column_text(st, 2), last, last_n) != 0) {
            PyObject *seq = value(st, 1), *prev = value(st, 2);
            if (seq != NULL && prev != NULL) stop = Py_BuildValue("(sOO)", "link", seq, prev);
            Py_XDECREF(seq);
            Py_XDECREF(prev);
            if (stop == NULL) goto done;
            break;
        }
        body.len = 0;
        int proven = 1;
        for (Py_ssize_t i = 0; i < nkinds && proven; i++) {
            PyObject *key = PyTuple_GET_ITEM(keys, i);
            if (put(&body, PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key))) goto done;
            int col = (int)i + 4, token;
            switch (kinds[i]) {
            case 't': token = put_text(&body, st, col); break;
            case 'i': token = put_int(&body, st, col); break;
            case 'b': token = put_bool(&body, st, col); break;
            case 'f': token = put_float(&body, st, col); break;
            case 'd': token = put_time(&body, st, col); break;
            case 'j': token = put_json(&body, st, col); break;
            default:
                PyErr_Format(PyExc_ValueError, "unknown kind %c", kinds[i]);
                goto done;
            }
            if (token < 0) goto done;
            proven = token == 0;
        }
        if (proven && put(&body, "}", 1)) goto done;
        const unsigned char *stored = NULL;
        if (proven && sqlite3_column_type(st, 3) == SQLITE_TEXT &&
            sqlite3_column_bytes(st, 3) == 64)
            stored = sqlite3_column_text(st, 3);
        else
            proven = 0;
        if (proven) {
            unsigned char digest[32];
            char hexed[64];
            static const char hex[] = "0123456789abcdef";
            if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, last, last_n) ||
                !EVP_DigestUpdate(ctx, body.data, body.len) ||
                !EVP_DigestFinal_ex(ctx, digest, NULL)) {
                PyErr_SetString(ScanError, "SHA-256 failed");
                goto done;
            }
            for (int i = 0; i < 32; i++) {
                hexed[2 * i] = hex[digest[i] >> 4];
                hexed[2 * i + 1] = hex[digest[i] & 15];
            }
            proven = memcmp(hexed, stored, 64) == 0 &&
                     count_separators(body.data, body.len, seps, first) == PyTuple_GET_SIZE(seps);
        }
        if (!proven) {
            stop = Py_BuildValue("(s)", "row");
            if (stop == NULL) goto done;
            break;
        }
        memcpy(last, stored, 64);
        last_n = 64;
        expected++;
        count++;
        if ((count & 8191) == 0 && PyErr_CheckSignals() < 0) goto done;
    }
    if (stop == NULL && expected <= until && rc != SQLITE_DONE) {
        PyErr_Format(ScanError, "the scan failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    if (stop == NULL) {
        stop = Py_None;
        Py_INCREF(stop);
    }
    result = Py_BuildValue("(Ls#LO)", expected, last, (Py_ssize_t)last_n, count, stop);

done:
    Py_XDECREF(stop);
    PyMem_Free(body.data);
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return result;
}

static PyObject *sqlite_version(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(sqlite3_libversion());
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, NULL},
    {"sqlite_version", sqlite_version, METH_NOARGS, "The version of the SQLite it links."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chainscan",
    "Native scan of an SQLite hash chain: an accelerator for audit verification.", -1, methods,
};

PyMODINIT_FUNC PyInit__chainscan(void) {
    methods[0].ml_doc = scan_doc;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    ScanError = PyErr_NewException("nexml_ext.store._chainscan.ScanError", NULL, NULL);
    if (ScanError == NULL || PyModule_AddObject(m, "ScanError", ScanError) < 0) {
        Py_XDECREF(ScanError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(ScanError);
    /* chain_scan.py uses this module only when it says the interface it expects: a module
     * compiled from an older checkout (an editable install not rebuilt) is left unused. */
    if (PyModule_AddIntConstant(m, "INTERFACE", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

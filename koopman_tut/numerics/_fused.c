/* Fused float32 -> float64 passes over a chunk of snapshots (koopman_tut.numerics.native).

   torch converts a float32 chunk into a float64 buffer in one pass (copy_) and takes the
   deviations or steps in a second (sub_); a combination W @ c converts every chunk and then
   multiplies it. These kernels do each in one pass, reading the float32 data once:

     kt_deviations  dst[i, t] = w[i, t] - w[i, T-1] (t < T-1), dst[i, T-1] = w[i, T-1]
     kt_steps       dst[i, t] = w[i, t+1] - w[i, t] (t < T-1), dst[i, T-1] = 0 - w[i, T-1]
     kt_combine     out[i]    = sum_t w[i, t] c[t], rounded once to float32
     kt_copy_row    a recorder's row <- its tensors' bytes, one after another (any dtype)
     holds          a recorder's per-step checks in one call (a Python function of this module)

   Every value is converted to float64 before it is subtracted or multiplied, as torch does,
   so the deviations and steps are bit for bit torch's (a NaN's payload aside: which operand's
   a NaN minus a NaN keeps is the CPU's choice); a combination sums its float64
   products in another order than torch's GEMV (error bounds that hold for any order hold).
   Element (i, t) of w lies at w[i*si + t*st]; kernels take rows of W (si) or snapshots
   (st) contiguous. They run on the OpenMP threads torch already runs on: the caller passes
   GOMP_parallel and omp_get_thread_num of torch's own libgomp (kt_set_openmp), so no second
   thread pool competes with torch's for the cores. Thread k converts the k-th block of
   rows, as torch's static schedule does, so the GEMM that follows finds them in its cache.

   kt_copy_row writes the row with streaming stores (x86-64: SSE2, which every x86-64 CPU
   has; elsewhere memcpy): the row goes to memory without first being read into the cache
   (half the memory traffic of a plain copy into memory not touched for a while) and without
   evicting the model's own data from it. A fence ends every thread's part, so what the
   caller writes next (a disk recording's count) is never seen before the row.

   Return value: 0, or 1 when the layout is not one of the two (nothing was written). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define KT_ABI 4 /* bumped whenever a signature or a meaning changes: native.py checks it */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

typedef float f4 __attribute__((vector_size(16)));
typedef double d4 __attribute__((vector_size(32)));
typedef void (*parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*thread_num_fn)(void);

static parallel_fn gomp_parallel;      /* torch's GOMP_parallel, or NULL: one thread */
static thread_num_fn gomp_thread_num;  /* torch's omp_get_thread_num */

int kt_abi(void) { return KT_ABI; }

void kt_set_openmp(void *parallel, void *thread_num) {
    gomp_parallel = (parallel_fn)parallel;
    gomp_thread_num = (thread_num_fn)thread_num;
}

CLONES static int deviations(const float *restrict w, ptrdiff_t si, ptrdiff_t st, double *restrict dst, ptrdiff_t di,
                             ptrdiff_t dt, ptrdiff_t rows, ptrdiff_t T) {
    if (st == 1 && dt == 1) {  /* row-major: row by row */
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *s = w + i * si;
            double *d = dst + i * di, r = s[T - 1];
            for (ptrdiff_t t = 0; t < T - 1; t++) d[t] = (double)s[t] - r;
            d[T - 1] = r;
        }
        return 0;
    }
    if (si == 1 && di == 1) {  /* snapshot-major: snapshot by snapshot */
        const float *r = w + (T - 1) * st;
        for (ptrdiff_t t = 0; t < T - 1; t++) {
            const float *s = w + t * st;
            double *d = dst + t * dt;
            for (ptrdiff_t i = 0; i < rows; i++) d[i] = (double)s[i] - (double)r[i];
        }
        double *d = dst + (T - 1) * dt;
        for (ptrdiff_t i = 0; i < rows; i++) d[i] = r[i];
        return 0;
    }
    return 1;
}

CLONES static int steps(const float *restrict w, ptrdiff_t si, ptrdiff_t st, double *restrict dst, ptrdiff_t di,
                        ptrdiff_t dt, ptrdiff_t rows, ptrdiff_t T) {
    if (st == 1 && dt == 1) {
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *s = w + i * si;
            double *d = dst + i * di;
            for (ptrdiff_t t = 0; t < T; t++) d[t] = s[t];  /* each value converted once, */
            for (ptrdiff_t t = 0; t < T - 1; t++) d[t] = d[t + 1] - d[t];  /* then differenced in place */
            d[T - 1] = 0.0 - d[T - 1];  /* 0 - r, not -r: a zero stays +0.0, as torch's */
        }
        return 0;
    }
    if (si == 1 && di == 1) {
        for (ptrdiff_t t = 0; t < T - 1; t++) {
            const float *s = w + t * st, *s1 = s + st;
            double *d = dst + t * dt;
            for (ptrdiff_t i = 0; i < rows; i++) d[i] = (double)s1[i] - (double)s[i];
        }
        const float *r = w + (T - 1) * st;
        double *d = dst + (T - 1) * dt;
        for (ptrdiff_t i = 0; i < rows; i++) d[i] = 0.0 - (double)r[i];
        return 0;
    }
    return 1;
}

CLONES static int combine(const float *restrict w, ptrdiff_t si, ptrdiff_t st, const double *restrict c, float *restrict out,
                          ptrdiff_t rows, ptrdiff_t T) {
    if (st == 1) {  /* row-major: four float64 vector sums per row, 16 entries a step */
        ptrdiff_t T16 = T & ~(ptrdiff_t)15;
        for (ptrdiff_t i = 0; i < rows; i++) {
            const float *s = w + i * si;
            for (ptrdiff_t k = 0; k < T; k += 16) __builtin_prefetch(s + 8 * si + k);  /* 8 rows ahead */
            d4 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
            for (ptrdiff_t t = 0; t < T16; t += 16) {
                f4 x0, x1, x2, x3;
                d4 c0, c1, c2, c3;
                memcpy(&x0, s + t, 16), memcpy(&x1, s + t + 4, 16);
                memcpy(&x2, s + t + 8, 16), memcpy(&x3, s + t + 12, 16);
                memcpy(&c0, c + t, 32), memcpy(&c1, c + t + 4, 32);
                memcpy(&c2, c + t + 8, 32), memcpy(&c3, c + t + 12, 32);
                a0 += __builtin_convertvector(x0, d4) * c0;
                a1 += __builtin_convertvector(x1, d4) * c1;
                a2 += __builtin_convertvector(x2, d4) * c2;
                a3 += __builtin_convertvector(x3, d4) * c3;
            }
            d4 a = (a0 + a1) + (a2 + a3);
            double sum = (a[0] + a[1]) + (a[2] + a[3]);
            for (ptrdiff_t t = T16; t < T; t++) sum += (double)s[t] * c[t];
            out[i] = (float)sum;
        }
        return 0;
    }
    if (si == 1) {  /* snapshot-major: blocks of rows, each summed over the snapshots in float64, */
        enum { B = 4096 };  /* four snapshots a sweep: one load and store of acc per four products, */
        double acc[B];      /* added in the order of t as one at a time would (the same sums, bit for bit) */
        for (ptrdiff_t i0 = 0; i0 < rows; i0 += B) {
            ptrdiff_t m = rows - i0 < B ? rows - i0 : B, t = 0;
            for (ptrdiff_t i = 0; i < m; i++) acc[i] = 0.0;
            for (; t + 4 <= T; t += 4) {
                const float *s0 = w + t * st + i0, *s1 = s0 + st, *s2 = s1 + st, *s3 = s2 + st;
                double c0 = c[t], c1 = c[t + 1], c2 = c[t + 2], c3 = c[t + 3];
                for (ptrdiff_t i = 0; i < m; i++)
                    acc[i] = (((acc[i] + (double)s0[i] * c0) + (double)s1[i] * c1) + (double)s2[i] * c2)
                             + (double)s3[i] * c3;
            }
            for (; t < T; t++) {
                const float *s = w + t * st + i0;
                double ct = c[t];
                for (ptrdiff_t i = 0; i < m; i++) acc[i] += (double)s[i] * ct;
            }
            for (ptrdiff_t i = 0; i < m; i++) out[i0 + i] = (float)acc[i];
        }
        return 0;
    }
    return 1;
}

enum { DEVIATIONS, STEPS, COMBINE };

typedef struct {
    int kind, parts, rc;
    const float *w;
    ptrdiff_t si, st, di, dt, rows, T;
    double *dst;
    const double *c;
    float *out;
} job;

enum { MAX_PARTS = 64 };

static void run_part(void *p, int k) {
    job *j = p;
    ptrdiff_t lo = j->rows * k / j->parts, hi = j->rows * (k + 1) / j->parts;
    const float *w = j->w + lo * j->si;
    int rc;
    switch (j->kind) {
        case DEVIATIONS: rc = deviations(w, j->si, j->st, j->dst + lo * j->di, j->di, j->dt, hi - lo, j->T); break;
        case STEPS: rc = steps(w, j->si, j->st, j->dst + lo * j->di, j->di, j->dt, hi - lo, j->T); break;
        default: rc = combine(w, j->si, j->st, j->c, j->out + lo, hi - lo, j->T);
    }
    if (rc) __atomic_store_n(&j->rc, 1, __ATOMIC_RELAXED);
}

static int take(unsigned long long *claimed, int k) {  /* whether this thread took block k (bit k) first */
    unsigned long long bit = 1ULL << k;
    return !(__atomic_fetch_or(claimed, bit, __ATOMIC_RELAXED) & bit);
}

typedef struct {
    void (*part)(void *, int);  /* does block k of job */
    void *job;
    int parts;
    unsigned long long claimed;  /* bit k: block k taken by a thread */
} team;

static void team_body(void *p) {  /* thread k: block k first (torch's static schedule), then any not taken */
    team *t = p;
    int me = gomp_thread_num ? gomp_thread_num() : 0;
    if (me < t->parts && take(&t->claimed, me)) t->part(t->job, me);
    for (int k = 0; k < t->parts; k++)  /* a team smaller than asked for still does every block */
        if (take(&t->claimed, k)) t->part(t->job, k);
}

static void on_threads(void (*body)(void *), void *arg, int threads) {  /* body(arg) on each of torch's threads */
    if (threads > 1 && gomp_parallel && gomp_thread_num) gomp_parallel(body, arg, (unsigned)threads, 0);
    else body(arg);
}

static void run_team(void (*part)(void *, int), void *job, int parts) {  /* every block, on torch's threads */
    team t = {.part = part, .job = job, .parts = parts, .claimed = 0};
    on_threads(team_body, &t, parts);
}

static int part_count(ptrdiff_t most, int threads) {  /* threads, at most MAX_PARTS and ``most``, at least 1 */
    int parts = threads < MAX_PARTS ? threads : MAX_PARTS;
    if (most < parts) parts = (int)most;
    return parts < 1 ? 1 : parts;
}

static int run(job *j, int threads) {
    if (j->rows < 1 || j->T < 1) return 1;  /* nothing to convert, and no last snapshot to read */
    /* below 2^15 entries per thread, fewer threads: waking one costs more than it saves */
    int parts = part_count(j->rows * j->T / 32768, threads);
    j->parts = parts, j->rc = 0;
    run_team(run_part, j, parts);
    return j->rc;
}

int kt_deviations(const float *w, ptrdiff_t si, ptrdiff_t st, double *dst, ptrdiff_t di, ptrdiff_t dt,
                  ptrdiff_t rows, ptrdiff_t T, int threads) {
    job j = {.kind = DEVIATIONS, .w = w, .si = si, .st = st, .dst = dst, .di = di, .dt = dt, .rows = rows, .T = T};
    return run(&j, threads);
}

int kt_steps(const float *w, ptrdiff_t si, ptrdiff_t st, double *dst, ptrdiff_t di, ptrdiff_t dt,
             ptrdiff_t rows, ptrdiff_t T, int threads) {
    job j = {.kind = STEPS, .w = w, .si = si, .st = st, .dst = dst, .di = di, .dt = dt, .rows = rows, .T = T};
    return run(&j, threads);
}

int kt_combine(const float *w, ptrdiff_t si, ptrdiff_t st, const double *c, float *out, ptrdiff_t rows,
               ptrdiff_t T, int threads) {
    job j = {.kind = COMBINE, .w = w, .si = si, .st = st, .c = c, .out = out, .rows = rows, .T = T};
    return run(&j, threads);
}

/* dst[0:n] <- s[0:n] (bytes), 16-byte streaming stores from the first aligned byte of dst */
static void stream_bytes(char *dst, const char *s, ptrdiff_t n) {
#if defined(__SSE2__)
    ptrdiff_t i = (ptrdiff_t)(-(uintptr_t)dst & 15);
    if (i > n) i = n;
    memcpy(dst, s, (size_t)i);
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + i)), b = _mm_loadu_si128((const __m128i *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32)), d = _mm_loadu_si128((const __m128i *)(s + i + 48));
        _mm_stream_si128((__m128i *)(dst + i), a), _mm_stream_si128((__m128i *)(dst + i + 16), b);
        _mm_stream_si128((__m128i *)(dst + i + 32), c), _mm_stream_si128((__m128i *)(dst + i + 48), d);
    }
    for (; i + 16 <= n; i += 16) _mm_stream_si128((__m128i *)(dst + i), _mm_loadu_si128((const __m128i *)(s + i)));
    memcpy(dst + i, s + i, (size_t)(n - i));
    _mm_sfence();
#else
    memcpy(dst, s, (size_t)n);
#endif
}

typedef struct {
    char *dst;
    const char *const *src;   /* piece q's bytes */
    const ptrdiff_t *ends;    /* piece q ends at byte ends[q] of the row */
    int pieces, parts;
} row_job;

static void copy_part(void *p, int k) {  /* bytes [lo, hi) of the row, cut at multiples of 64 */
    row_job *j = p;
    ptrdiff_t total = j->ends[j->pieces - 1], start = 0;
    ptrdiff_t lo = (total * k / j->parts) & ~(ptrdiff_t)63;
    ptrdiff_t hi = k + 1 == j->parts ? total : (total * (k + 1) / j->parts) & ~(ptrdiff_t)63;
    for (int q = 0; q < j->pieces; start = j->ends[q++]) {
        ptrdiff_t a = lo > start ? lo : start, b = hi < j->ends[q] ? hi : j->ends[q];
        if (a < b) stream_bytes(j->dst + a, j->src[q] + (a - start), b - a);
    }
}

int kt_copy_row(char *dst, const char *const *src, const ptrdiff_t *ends, int pieces, int threads) {
    if (pieces < 1) return 1;
    int parts = part_count(ends[pieces - 1] >> 17, threads);  /* 128 KiB a thread at least, as run()'s rule */
    row_job j = {.dst = dst, .src = src, .ends = ends, .pieces = pieces, .parts = parts};
    run_team(copy_part, &j, parts);
    return 0;
}

/* holds(spec[, dst, src, ends, pieces, threads]): whether everything a recorder checks at every step is as it was,
   in one call, and the next row copied beside those checks (kt_copy_row's arguments; the Python-level
   checks cost tens of microseconds inside a training step, where the interpreter's data are out of the cache;
   koopman_tut.recording.step_checks builds spec and says which checks it holds). spec is the tuple
   (holders, keys, values, same, tensors, aliases, address, held, at, absent), its checks:
     holders[i][keys[i]] is values[i]  a dict's entry (dict.get's lookup; a missing key reads as ``absent``) or a
                                      list's item (keys[i] an int); keys[i] None: len(holders[i]) == values[i];
                                      another holder: its attribute keys[i] (a str), read as Python reads it;
     same(tensors[i], aliases[i])     is True (torch.Tensor.is_set_to: the same storage, offset, sizes, strides);
     address(held[i]) == at[i]        (torch.Tensor.data_ptr: the data have not moved inside their storage).
   False at the first that fails or raises an Exception (a key's hash, say): the caller's own checks then run and
   say what changed; a KeyboardInterrupt or SystemExit raised inside stays raised. TypeError for a spec of another
   form. Checks that may run Python code (an attribute read, a lookup by a tensor, whose __hash__ is Python's) come
   first, then the addresses; with a row to copy, the calling thread (it holds the GIL) then runs the checks read
   in C alone while torch's other threads copy the row, and joins the copy when done: no code of the program's
   own runs on this thread while the row is copied (the caller passes no row
   under a torch function or dispatch mode, whose Python code is_set_to would run). Not excluded: is_set_to lets
   go of the GIL, so another Python thread may run meanwhile (as during the Python route's copy, a ctypes call);
   a dict key whose Python __eq__ meets a str key of the same hash. A row copied under a False answer is written
   but is no snapshot. */
static int failed(void) {  /* a check raised: an Exception is cleared and the check fails (0: the caller's Python
    checks meet it again), anything else (KeyboardInterrupt, SystemExit) stays raised (-1), as in Python */
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
    PyErr_Clear();
    return 0;
}

static int item_holds(PyObject *holder, PyObject *key, PyObject *value, PyObject *absent) {  /* 1, 0, or -1 raised */
    if (PyDict_Check(holder)) {  /* a subclass too (defaultdict, OrderedDict): its own entries, as dict.get reads */
        PyObject *v = PyDict_GetItemWithError(holder, key);  /* borrowed */
        if (v == NULL && PyErr_Occurred()) return failed();
        return (v == NULL ? absent : v) == value;
    }
    if (!PyList_CheckExact(holder)) {
        if (!PyUnicode_CheckExact(key)) return 0;
        PyObject *v = PyObject_GetAttr(holder, key);  /* new reference: properties, __getattr__, a new __dict__ */
        if (v == NULL) return failed();
        int same = v == value;
        Py_DECREF(v);
        return same;
    }
    PyObject *number = key == Py_None ? value : key;  /* a length, or an index */
    Py_ssize_t i = PyLong_CheckExact(number) ? PyLong_AsSsize_t(number) : -1;
    if (i == -1 && PyErr_Occurred()) PyErr_Clear();  /* beyond Py_ssize_t: no list has it */
    if (key == Py_None) return i >= 0 && PyList_GET_SIZE(holder) == i;
    return i >= 0 && i < PyList_GET_SIZE(holder) && PyList_GET_ITEM(holder, i) == value;
}

static int call_gives(PyObject *fn, PyObject *a, PyObject *b, PyObject *want) {  /* fn(a[, b]) is True / == want */
    PyObject *args[2] = {a, b}, *r = PyObject_Vectorcall(fn, args, b == NULL ? 1 : 2, NULL);
    if (r == NULL) return failed();
    int ok = want == NULL ? r == Py_True : PyObject_RichCompareBool(r, want, Py_EQ) == 1;
    if (PyErr_Occurred()) ok = failed();
    Py_DECREF(r);
    return ok;
}

static int runs_no_python(PyObject *holder, PyObject *key) {  /* a check read in C alone: a dict's or a list's
    entry at a str or int key, a list's length (an attribute may be a property; a tensor key hashes in Python) */
    return (PyDict_Check(holder) || PyList_CheckExact(holder))
           && (key == Py_None || PyUnicode_CheckExact(key) || PyLong_CheckExact(key));
}

static int items_hold(PyObject **t, int in_c) {  /* the entries of spec t read in C alone (in_c) or the others */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t[0]); i++) {
        PyObject *holder = PyTuple_GET_ITEM(t[0], i), *key = PyTuple_GET_ITEM(t[1], i);
        int r = runs_no_python(holder, key) == in_c ? item_holds(holder, key, PyTuple_GET_ITEM(t[2], i), t[9]) : 1;
        if (r != 1) return r;
    }
    return 1;
}

static int in_c_checks_hold(PyObject **t) {  /* the entries read in C and the storages (is_set_to, in C for the
                                                 plain tensors and parameters step_checks.spec admits) */
    int r = items_hold(t, 1);
    for (Py_ssize_t i = 0; r == 1 && i < PyTuple_GET_SIZE(t[4]); i++)
        r = call_gives(t[3], PyTuple_GET_ITEM(t[4], i), PyTuple_GET_ITEM(t[5], i), NULL);
    return r;
}

typedef struct {
    team copy;     /* the row's blocks, taken by whichever thread is free */
    PyObject **t;  /* the spec, checked by the calling thread (it holds the GIL) while the others copy */
    int ok;
} checked_copy;

static void checked_copy_body(void *p) {
    checked_copy *c = p;
    if (!gomp_thread_num || gomp_thread_num() == 0) c->ok = in_c_checks_hold(c->t);
    team_body(&c->copy);  /* then the blocks not yet taken */
}

static int as_size(PyObject *o, Py_ssize_t *v) {  /* a non-negative int */
    *v = PyLong_Check(o) ? PyLong_AsSsize_t(o) : -1;
    if (*v == -1 && PyErr_Occurred()) PyErr_Clear();
    return *v >= 0;
}

static PyObject *holds(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    PyObject *t[10], *spec = nargs >= 1 ? args[0] : NULL;
    Py_ssize_t a[5] = {0};  /* the row's copy: dst, src, ends (addresses), pieces, threads */
    int ok = (nargs == 1 || nargs == 6) && PyTuple_CheckExact(spec) && PyTuple_GET_SIZE(spec) == 10;
    for (int i = 0; ok && i < 10; i++) {
        t[i] = PyTuple_GET_ITEM(spec, i);
        ok = i == 3 || i == 6 || i == 9 || PyTuple_CheckExact(t[i]);
    }
    for (int i = 1; ok && i < nargs; i++) ok = as_size(args[i], &a[i - 1]) && a[i - 1] > 0;
    if (nargs == 6 && ok) ok = a[3] <= INT_MAX;
    if (!ok || PyTuple_GET_SIZE(t[1]) != PyTuple_GET_SIZE(t[0]) || PyTuple_GET_SIZE(t[2]) != PyTuple_GET_SIZE(t[0])
        || PyTuple_GET_SIZE(t[5]) != PyTuple_GET_SIZE(t[4]) || PyTuple_GET_SIZE(t[8]) != PyTuple_GET_SIZE(t[7])) {
        PyErr_SetString(PyExc_TypeError, "holds(spec[, dst, src, ends, pieces, threads]): spec must be (holders, "
                        "keys, values, same, tensors, aliases, address, held, at, absent), the tuples of each check "
                        "of the same length; the row's copy five positive ints (kt_copy_row's arguments)");
        return NULL;
    }
    /* first what may run Python code (a property, a tensor's __hash__), which could move or change the data, then
       the addresses the copy reads (data moved inside their storage leave them freed) */
    int r = items_hold(t, 0);
    for (Py_ssize_t i = 0; r == 1 && i < PyTuple_GET_SIZE(t[7]); i++)
        r = call_gives(t[6], PyTuple_GET_ITEM(t[7], i), NULL, PyTuple_GET_ITEM(t[8], i));
    if (r == 1 && nargs == 1) r = in_c_checks_hold(t);
    if (r != 1 || nargs == 1) return r < 0 ? NULL : PyBool_FromLong(r);
    /* the row copied while the checks read in C run: a False answer leaves it written but not a snapshot (the
       caller writes it again or not at all) */
    const ptrdiff_t *ends = (const ptrdiff_t *)a[2];
    int pieces = (int)a[3], threads = (int)(a[4] < MAX_PARTS ? a[4] : MAX_PARTS);
    row_job j = {.dst = (char *)a[0], .src = (const char *const *)a[1], .ends = ends, .pieces = pieces};
    j.parts = part_count(ends[pieces - 1] >> 16, MAX_PARTS);  /* blocks of 64 KiB: a thread free early takes more */
    if (ends[pieces - 1] < (1 << 16)) threads = 1;  /* the copy takes less than waking a thread */
    else if (threads > j.parts + 1) threads = j.parts + 1;  /* the calling thread and one a block at most */
    checked_copy c = {.copy = {.part = copy_part, .job = &j, .parts = j.parts, .claimed = 0}, .t = t, .ok = 0};
    on_threads(checked_copy_body, &c, threads);
    return c.ok < 0 ? NULL : PyBool_FromLong(c.ok);
}

static PyMethodDef methods[] = {
    {"holds", (PyCFunction)(void (*)(void))holds, METH_FASTCALL,
     "holds(spec[, dst, src, ends, pieces, threads]) -> bool: a recorder's per-step checks in one call, its row "
     "copied beside them (see _fused.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_fused", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&module); }

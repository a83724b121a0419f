/*
 * runtime.c - the embedded interpreter: started lazily, once per process,
 * never finalized; plus logging into the daemon's log and record arenas.
 */
#define _GNU_SOURCE
#include <Python.h>

#include <dlfcn.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"

/* From libslurmfull (resolved in the daemon's global scope). */
extern void log_var(int level, const char *fmt, ...);
extern int get_log_level(void);
extern bool running_in_slurmctld(void);
extern bool running_in_slurmd(void);

#ifndef SPM_PYTHON_HOME
#error "SPM_PYTHON_HOME must name the build interpreter's sys.base_prefix"
#endif

static const char *ctx_names[] = { "prep/python", "site_factor/python" };

SPM_EXPORT const char *spm_ctx_name(int ctx)
{
	if (ctx < 0 || ctx > SPM_CTX_SITE_FACTOR)
		return "slurmpy";
	return ctx_names[ctx];
}

SPM_EXPORT int spm_daemon(void)
{
	if (running_in_slurmctld())
		return SPM_DAEMON_SLURMCTLD;
	if (running_in_slurmd())
		return SPM_DAEMON_SLURMD;
	return SPM_DAEMON_OTHER;
}

void spm_log(int level, const char *prefix, const char *msg)
{
	if (level < SPM_LOG_ERROR)
		level = SPM_LOG_ERROR;
	if (level > SPM_LOG_DEBUG2)
		level = SPM_LOG_DEBUG2;
	if (get_log_level() < level)
		return;
	/* Slurm adds "error: " itself at LOG_LEVEL_ERROR. */
	log_var(level, "%s: %s", prefix ? prefix : "slurmpy", msg ? msg : "");
}

int spm_log_level(void)
{
	return get_log_level();
}

SPM_EXPORT void spm_logf(int ctx, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (get_log_level() < level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	spm_log(level, spm_ctx_name(ctx), buf);
}

void spm_boot_failure(const char *text)
{
	/* One log line per traceback line keeps the daemon log greppable. */
	const char *p = text ? text : "(no traceback)";

	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);

		if (len)
			log_var(SPM_LOG_ERROR,
				"slurmpy: Python bridge failed to start: %.*s",
				len, p);
		if (!nl)
			break;
		p = nl + 1;
	}
}

/* ---- interpreter start ---- */

static pthread_once_t py_once = PTHREAD_ONCE_INIT;
static int py_status = -1;

/* Directory holding this library: its python/ subdirectory has our package
 * and the cffi backend it needs, whatever the daemon's environment is. */
static int _self_dir(char *out, size_t len)
{
	Dl_info info;
	char tmp[4096];

	if (!dladdr((void *)&_self_dir, &info) || !info.dli_fname)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s", info.dli_fname);
	snprintf(out, len, "%s", dirname(tmp));
	return 0;
}

static void _start_python(void)
{
	PyConfig config;
	PyStatus status;
	Dl_info info;
	char dir[4096], pypath[8192];

	/* Keep this library mapped whatever Slurm dlcloses. */
	if (dladdr((void *)&_start_python, &info) && info.dli_fname)
		(void)dlopen(info.dli_fname,
			     RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);

	/* Slurm opened us RTLD_LOCAL, which hides libpython's symbols from
	 * C extension modules: promote it (as slurm_lua.c does for liblua). */
	if (!dladdr((void *)&Py_InitializeFromConfig, &info) ||
	    !info.dli_fname ||
	    !dlopen(info.dli_fname,
		    RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD | RTLD_NODELETE)) {
		log_var(SPM_LOG_ERROR,
			"slurmpy: cannot make libpython global: %s",
			dlerror());
		return;
	}

	if (_self_dir(dir, sizeof(dir))) {
		log_var(SPM_LOG_ERROR,
			"slurmpy: cannot locate libslurmpy.so");
		return;
	}
	snprintf(pypath, sizeof(pypath), "%s/python", dir);

	/* SPM_PYTHONMALLOC=malloc (a diagnostic knob: the isolated config
	 * ignores PYTHONMALLOC) puts Python objects on the C heap, so that
	 * LeakSanitizer sees the records Python still references. */
	{
		PyPreConfig pre;
		const char *m = getenv("SPM_PYTHONMALLOC");

		PyPreConfig_InitIsolatedConfig(&pre);
		if (m && !strcmp(m, "malloc"))
			pre.allocator = PYMEM_ALLOCATOR_MALLOC;
		status = Py_PreInitialize(&pre);
		if (PyStatus_Exception(status)) {
			log_var(SPM_LOG_ERROR,
				"slurmpy: Python pre-initialization failed: %s",
				status.err_msg ? status.err_msg : "unknown error");
			return;
		}
	}

	/* Isolated: ignore PYTHON* variables and the user site of the
	 * daemon's environment; home is fixed at build time so the stdlib is
	 * found whatever PATH systemd gave us. */
	PyConfig_InitIsolatedConfig(&config);
	config.install_signal_handlers = 0;
	config.parse_argv = 0;
	config.write_bytecode = 0;
	config.site_import = 1;
	status = PyConfig_SetBytesString(&config, &config.home,
					 SPM_PYTHON_HOME);
	if (!PyStatus_Exception(status))
		status = PyConfig_SetBytesString(&config, &config.program_name,
						 SPM_PYTHON_EXECUTABLE);
	if (!PyStatus_Exception(status)) {
		char *argv[] = { "slurmpy" };
		status = PyConfig_SetBytesArgv(&config, 1, argv);
	}
	if (!PyStatus_Exception(status))
		status = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(status)) {
		log_var(SPM_LOG_ERROR,
			"slurmpy: Python did not start (home=%s): %s%s%s",
			SPM_PYTHON_HOME, status.func ? status.func : "",
			status.func ? ": " : "",
			status.err_msg ? status.err_msg : "unknown error");
		return;
	}
	/* Our package dir goes first on sys.path (an isolated config ignores
	 * pythonpath_env). */
	{
		PyObject *path = PySys_GetObject("path");    /* borrowed */
		PyObject *dir_obj = PyUnicode_DecodeFSDefault(pypath);
		int bad = !path || !dir_obj || PyList_Insert(path, 0, dir_obj);

		Py_XDECREF(dir_obj);
		if (bad) {
			PyErr_Clear();
			log_var(SPM_LOG_ERROR,
				"slurmpy: cannot add %s to sys.path", pypath);
		}
	}
	/* Release the GIL: only worker threads take it from now on. */
	(void)PyEval_SaveThread();
	py_status = 0;
	log_var(SPM_LOG_VERBOSE, "slurmpy: Python %s started (home=%s, package dir=%s)",
		Py_GetVersion(), SPM_PYTHON_HOME, pypath);
}

int spm_runtime_start(void)
{
	pthread_once(&py_once, _start_python);
	return py_status;
}

/* ---- arenas ---- */

struct spm_chunk {
	struct spm_chunk *next;
	size_t used, size;
	max_align_t data[];
};

struct spm_arena {
	int refs;
	bool pooled;               /* header + first chunk are one block */
	struct spm_chunk *head;    /* newest chunk first */
	spm_arena_t *next_free;    /* while in the free list */
};

/* Small arenas (one per hook call) are recycled: the daemon thread takes
 * one, a worker gives it back, and neither reaches malloc/free (whose
 * cross-thread frees of 2 KiB blocks contend on glibc's main arena). */
#define SMALL_CHUNK 2048
#define POOL_MAX 1024
#define ARENA_HDR ((sizeof(struct spm_arena) + sizeof(max_align_t) - 1) & \
		   ~(sizeof(max_align_t) - 1))

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static spm_arena_t *pool_head;
static int pool_count;

static struct spm_chunk *_chunk_new(size_t size)
{
	struct spm_chunk *c = malloc(sizeof(*c) + size);

	if (!c)
		return NULL;
	c->next = NULL;
	c->used = 0;
	c->size = size;
	return c;
}

static spm_arena_t *_small_arena(void)
{
	spm_arena_t *a;
	struct spm_chunk *c;

	pthread_mutex_lock(&pool_mu);
	if ((a = pool_head)) {
		pool_head = a->next_free;
		pool_count--;
	}
	pthread_mutex_unlock(&pool_mu);
	if (!a && !(a = malloc(ARENA_HDR + sizeof(*c) + SMALL_CHUNK)))
		return NULL;
	c = (struct spm_chunk *)((char *)a + ARENA_HDR);
	c->next = NULL;
	c->used = 0;
	c->size = SMALL_CHUNK;
	a->head = c;
	a->pooled = true;
	a->refs = 1;
	return a;
}

spm_arena_t *spm_arena_new(size_t first_chunk)
{
	spm_arena_t *a;

	if (first_chunk <= SMALL_CHUNK)
		return _small_arena();
	if (!(a = malloc(sizeof(*a))))
		return NULL;
	if (!(a->head = _chunk_new(first_chunk))) {
		free(a);
		return NULL;
	}
	a->pooled = false;
	a->refs = 1;
	return a;
}

void *spm_arena_alloc(spm_arena_t *a, size_t size)
{
	struct spm_chunk *c = a->head;
	size_t align = sizeof(max_align_t);
	size_t off = (c->used + align - 1) & ~(align - 1);
	void *p;

	if (off > c->size || c->size - off < size) {
		size_t sz = c->size * 2;

		if (sz < size)
			sz = size;
		if (!(c = _chunk_new(sz)))
			return NULL;
		c->next = a->head;
		a->head = c;
		off = 0;
	}
	p = (char *)c->data + off;
	c->used = off + size;
	memset(p, 0, size);
	return p;
}

char *spm_arena_strdup(spm_arena_t *a, const char *s)
{
	size_t len;
	char *p;

	if (!s)
		return NULL;
	len = strlen(s);
	/* strings need no alignment: pack them tightly */
	if (a->head->size - a->head->used >= len + 1) {
		p = (char *)a->head->data + a->head->used;
		a->head->used += len + 1;
	} else if (!(p = spm_arena_alloc(a, len + 1))) {
		return NULL;
	}
	memcpy(p, s, len + 1);
	return p;
}

void spm_arena_ref(spm_arena_t *a)
{
	if (a)
		__atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
}

void spm_arena_unref(spm_arena_t *a)
{
	struct spm_chunk *c, *next, *embedded;

	if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL))
		return;
	embedded = a->pooled ?
		(struct spm_chunk *)((char *)a + ARENA_HDR) : NULL;
	for (c = a->head; c; c = next) {
		next = c->next;
		if (c != embedded)
			free(c);
	}
	if (a->pooled) {
		pthread_mutex_lock(&pool_mu);
		if (pool_count < POOL_MAX) {
			a->next_free = pool_head;
			pool_head = a;
			pool_count++;
			a = NULL;
		}
		pthread_mutex_unlock(&pool_mu);
	}
	free(a);
}

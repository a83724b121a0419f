/*
 * runtime.c - the embedded interpreter: started lazily, once per process,
 * never finalized, in UTF-8 mode, its stderr into the daemon log; and the
 * thread hygiene of the threads that run it (signal masks, fork).
 */
#define _GNU_SOURCE
#include <Python.h>

#include <dlfcn.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spm.h"

/* From libslurmfull (resolved in the daemon's global scope). */
extern void log_var(int level, const char *fmt, ...);

#ifndef SPM_PYTHON_HOME
#error "SPM_PYTHON_HOME must name the build interpreter's sys.base_prefix"
#endif

/* ---- threads ---- */

static __thread bool in_worker;
static bool forked_child;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In the child of a fork() made by a worker thread (a handler's
 * subprocess, os.fork()): the worker's blocked signals must not reach the
 * programs it starts, and the worker must never resume its loop there. */
static void _atfork_child(void)
{
	sigset_t none;

	if (!in_worker)
		return;
	forked_child = true;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
}

static void _register_atfork(void)
{
	(void)pthread_atfork(NULL, NULL, _atfork_child);
}

int spm_thread_create(pthread_t *tid, const pthread_attr_t *attr,
		      void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	/* The new thread inherits the mask: no window in which a signal
	 * meant for the daemon's own threads could land in it. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(tid, attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

void spm_worker_thread_enter(void)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_once(&atfork_once, _register_atfork);
	in_worker = true;
}

bool spm_forked_child(void)
{
	return __atomic_load_n(&forked_child, __ATOMIC_RELAXED);
}

/* ---- the interpreter's stderr, until the bridge installs its own ---- */

static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static char err_buf[4096];
static size_t err_len;

static void _err_flush_locked(void)
{
	if (err_len)
		log_var(SPM_LOG_ERROR, "slurmpy: %.*s", (int)err_len, err_buf);
	err_len = 0;
}

static PyObject *_err_write(PyObject *self, PyObject *arg)
{
	Py_ssize_t n;
	const char *s;

	(void)self;
	if (!(s = PyUnicode_AsUTF8AndSize(arg, &n)))
		return NULL;
	pthread_mutex_lock(&err_mu);
	for (Py_ssize_t i = 0; i < n; i++) {
		if (s[i] == '\n' || err_len == sizeof(err_buf) - 1)
			_err_flush_locked();
		if (s[i] != '\n')
			err_buf[err_len++] = s[i];
	}
	pthread_mutex_unlock(&err_mu);
	return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(arg));
}

static PyObject *_err_flush(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	pthread_mutex_lock(&err_mu);
	_err_flush_locked();
	pthread_mutex_unlock(&err_mu);
	Py_RETURN_NONE;
}

static PyMethodDef err_methods[] = {
	{ "write", _err_write, METH_O, NULL },
	{ "flush", _err_flush, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef err_module = {
	PyModuleDef_HEAD_INIT, "_slurmpy_stderr",
	"sys.stderr until slurmpy_plugins installs its own: into the daemon log",
	-1, err_methods, NULL, NULL, NULL, NULL,
};

/* With the GIL: errors printed by cffi's embedding init (which writes to
 * sys.stderr) reach the daemon log, not the daemon's /dev/null. */
static void _stderr_to_log(void)
{
	PyObject *m = PyModule_Create(&err_module);

	if (!m || PySys_SetObject("stderr", m) || PySys_SetObject("stdout", m)) {
		PyErr_Clear();
		log_var(SPM_LOG_ERROR, "slurmpy: cannot route Python's stderr to the log");
	}
	Py_XDECREF(m);
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
		/* Slurm never calls setlocale(): without UTF-8 mode a
		 * handler's open(), json and subprocess text would be ASCII. */
		pre.utf8_mode = 1;
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
	_stderr_to_log();
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


/*
 * spank_python.c - spank/python: routes SPANK's callbacks to the handler
 * named on the plugin's plugstack.conf line:
 *
 *   required spank_python.so handler=module:Class [handler=...] path=DIR [key=value ...]
 *
 * Every srun, sbatch, salloc and slurmstepd loads it, so nothing here
 * starts Python at load.  slurm_spank_init reads the handler's module file
 * as text (the first <module>.py found on path=) for two facts, without
 * Python:
 *   - its options: each `SpankOption("name", arg="VALUE", help="text")`
 *     written with string literals (arg=None: a flag), registered with
 *     spank_option_register, so srun/sbatch/salloc --help lists them;
 *   - its hooks: a hook runs Python only if the file has `def <hook>(`
 *     (blanks allowed between the words);
 *     in a process whose context has none of them Python never starts.
 * `slurmpy-plugins check` and the kit read the same facts through Python
 * and refuse a handler whose class disagrees with this reading.
 *
 * A hook that is defined runs synchronously, on the thread SPANK calls it
 * on (no daemon lock is held in srun or slurmstepd): it loads
 * slurmpy/libslurmpy.so beside this file (not linked: a process with no
 * such hook never maps libpython), then spm_runtime_start() and the
 * bridge's spm_py_spank().  Its failure is a non-zero SPANK
 * return (a `required` plugin fails the step) and slurm_error() with the
 * message (slurmd's log from slurmstepd, the terminal from srun).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "slurm/slurm.h"
#include "slurm/spank.h"

#include "spm.h"
#define SPM_COMPAT_SPANK
#include "compat.h"   /* the release differences: spank_prepend_task_argv */

SPANK_PLUGIN(python, 1);

/* From libslurmfull: the SlurmUser uid, trusted as an owner of handler
 * files (as root is). */
#include "src/common/read_config.h"
/* slurmd's and slurmstepd's `conf` (SlurmdSpoolDir, expanded) */
#include "src/slurmd/slurmd/slurmd.h"

#define SP_MAX_OPTS 64
#define SP_MAX_SRC (4 << 20)

struct sp_opt {
	char *name;
	char *arginfo;           /* NULL: a flag */
	char *help;
	int given;
	char *value;             /* the last value given (NULL for a flag) */
};

static struct sp_opt opts[SP_MAX_OPTS];
static int n_opts;

/* Option i as SPANK takes it (no callback: the caller sets one). */
static struct spank_option _spank_option(int i)
{
	struct spank_option o = {
		.name = opts[i].name,
		.arginfo = opts[i].arginfo,
		.usage = opts[i].help ? opts[i].help : "",
		.has_arg = opts[i].arginfo ? 1 : 0,
		.val = i,
	};

	return o;
}
static char *args_joined;        /* the line's arguments, '\n'-joined */
static uint32_t hook_mask;       /* 1 << SPM_HOOK_SP_* the module defines */
static bool scanned;
/* from slurmpy/libslurmpy.so, loaded by _core() */
static int (*core_start)(void);
static int (*core_call)(spm_spank_call_t *call);
static void (*core_thread_enter)(void);
static uint32_t timeout_ms;      /* timeout=: the most a hook may take (0: none) */

static const struct { int hook; const char *name; } sp_hooks[] = {
	{ SPM_HOOK_SP_INIT, "init" },
	{ SPM_HOOK_SP_INIT_POST_OPT, "init_post_opt" },
	{ SPM_HOOK_SP_LOCAL_USER_INIT, "local_user_init" },
	{ SPM_HOOK_SP_USER_INIT, "user_init" },
	{ SPM_HOOK_SP_TASK_INIT_PRIVILEGED, "task_init_privileged" },
	{ SPM_HOOK_SP_TASK_INIT, "task_init" },
	{ SPM_HOOK_SP_TASK_POST_FORK, "task_post_fork" },
	{ SPM_HOOK_SP_TASK_EXIT, "task_exit" },
	{ SPM_HOOK_SP_EXIT, "exit" },
	{ SPM_HOOK_SP_JOB_PROLOG, "job_prolog" },
	{ SPM_HOOK_SP_JOB_EPILOG, "job_epilog" },
	{ SPM_HOOK_SP_SLURMD_EXIT, "slurmd_exit" },
};

/* ---- reading the module file (no Python) ---- */

static const char *_skip_ws(const char *p)
{
	for (;;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (*p == '\\' && p[1] == '\n') {
			p += 2;
			continue;
		}
		return p;
	}
}

/* A plain string literal ('..' or ".."; escapes \\ \' \" \n kept simple).
 * Returns the malloc'd text and sets *end, or NULL. */
static char *_literal(const char *p, const char **end)
{
	char q = *p, *out, *o;
	const char *s;

	if (q != '"' && q != '\'')
		return NULL;
	if (p[1] == q && p[2] == q)
		return NULL;                 /* no triple quotes */
	for (s = p + 1; *s && *s != q && *s != '\n'; s++)
		if (*s == '\\' && s[1])
			s++;
	if (*s != q)
		return NULL;
	if (!(out = o = malloc(s - p)))
		return NULL;
	for (const char *c = p + 1; c < s; c++) {
		if (*c == '\\' && c + 1 < s) {
			c++;
			*o++ = (*c == 'n') ? '\n' : *c;
		} else {
			*o++ = *c;
		}
	}
	*o = '\0';
	*end = s + 1;
	return out;
}

static bool _valid_opt_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

/* SpankOption("name", arg="VALUE"|None, help="text") at p (just past the
 * opening parenthesis); the keywords in any order, each optional. */
static void _scan_option(const char *p, const char *file)
{
	struct sp_opt o = { 0 };
	const char *e;
	bool arg_seen = false;

	p = _skip_ws(p);
	if (!(o.name = _literal(p, &e)) || !_valid_opt_name(o.name)) {
		slurm_error("spank/python: %s: a SpankOption( whose name is not a "
			    "string literal of letters, digits, '-' or '_': "
			    "not registered", file);
		free(o.name);
		return;
	}
	p = _skip_ws(e);
	while (*p == ',') {
		char **dst;
		size_t k;

		p = _skip_ws(p + 1);
		if (*p == ')')
			break;
		for (k = 0; isalnum((unsigned char)p[k]) || p[k] == '_'; k++)
			;
		if (k == 3 && !strncmp(p, "arg", 3))
			dst = &o.arginfo, arg_seen = true;
		else if (k == 4 && !strncmp(p, "help", 4))
			dst = &o.help;
		else
			goto bad;
		p = _skip_ws(p + k);
		if (*p != '=')
			goto bad;
		p = _skip_ws(p + 1);
		if (dst == &o.arginfo && !strncmp(p, "None", 4) &&
		    !isalnum((unsigned char)p[4]) && p[4] != '_') {
			p = _skip_ws(p + 4);
			continue;
		}
		free(*dst);
		if (!(*dst = _literal(p, &e)))
			goto bad;
		p = _skip_ws(e);
	}
	if (*p != ')')
		goto bad;
	(void)arg_seen;
	if (n_opts == SP_MAX_OPTS) {
		slurm_error("spank/python: %s: more than %d options: --%s not "
			    "registered", file, SP_MAX_OPTS, o.name);
		goto drop;
	}
	for (int i = 0; i < n_opts; i++)
		if (!strcmp(opts[i].name, o.name))
			goto drop;           /* declared twice: once is enough */
	opts[n_opts++] = o;
	return;
bad:
	slurm_error("spank/python: %s: SpankOption(\"%s\", ...) must be written "
		    "with string literals only (arg=\"VALUE\" or arg=None, "
		    "help=\"text\"): not registered", file, o.name);
drop:
	free(o.name);
	free(o.arginfo);
	free(o.help);
}

static void _scan_source(const char *src, const char *file)
{
	static const char tag[] = "SpankOption(";

	for (const char *p = strstr(src, tag); p; p = strstr(p + 1, tag)) {
		/* not part of a longer name (a module prefix is fine) */
		if (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
			continue;
		_scan_option(p + sizeof(tag) - 1, file);
	}
	/* `def <hook>(`, with any blanks between the words */
	for (const char *p = strstr(src, "def"); p; p = strstr(p + 3, "def")) {
		const char *n, *e;

		if ((p > src && !isspace((unsigned char)p[-1])) ||
		    (p[3] != ' ' && p[3] != '\t'))
			continue;
		for (n = p + 3; *n == ' ' || *n == '\t'; n++)
			;
		for (e = n; isalnum((unsigned char)*e) || *e == '_'; e++)
			;
		for (p = e; *p == ' ' || *p == '\t'; p++)
			;
		if (*p != '(')
			continue;
		for (size_t i = 0; i < sizeof(sp_hooks) / sizeof(sp_hooks[0]); i++)
			if (strlen(sp_hooks[i].name) == (size_t)(e - n) &&
			    !strncmp(n, sp_hooks[i].name, e - n))
				hook_mask |= 1u << sp_hooks[i].hook;
	}
}

static const char *_arg(int ac, char **av, const char *key)
{
	size_t n = strlen(key);

	for (int i = 0; i < ac; i++)
		if (!strncmp(av[i], key, n) && av[i][n] == '=')
			return av[i] + n + 1;
	return NULL;
}

static char *_read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	if (!(buf = malloc(SP_MAX_SRC + 1))) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, SP_MAX_SRC, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* The first <path dir>/<module as a path>.py (or package __init__.py). */
static void _scan_one(const char *handler, const char *path)
{
	char module[512], file[4096], *dirs, *save = NULL, *src = NULL;

	snprintf(module, sizeof(module), "%.*s",
		 (int)strcspn(handler, ":"), handler);
	for (char *c = module; *c; c++)
		if (*c == '.')
			*c = '/';
	if (!(dirs = strdup(path)))
		return;
	for (char *d = strtok_r(dirs, ":", &save); d && !src;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(file, sizeof(file), "%s/%s.py", d, module);
		if (!(src = _read_file(file))) {
			snprintf(file, sizeof(file), "%s/%s/__init__.py", d, module);
			src = _read_file(file);
		}
	}
	free(dirs);
	if (!src) {
		/* Let Python say why (its loader names what it looked for):
		 * every hook is treated as defined. */
		hook_mask = ~0u;
		return;
	}
	_scan_source(src, file);
	free(src);
}

/* handlers=DIR: every *.py of DIR (not dot files: _loader.dir_listing's
 * rule).  A directory that cannot be read: every hook is treated as
 * defined, and Python's loader says why. */
static void _scan_dir(const char *dir)
{
	char file[4096], *src;
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d) {
		hook_mask = ~0u;
		return;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len < 4 ||
		    strcmp(e->d_name + len - 3, ".py"))
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
		if (!(src = _read_file(file))) {
			hook_mask = ~0u;
			continue;
		}
		_scan_source(src, file);
		free(src);
	}
	closedir(d);
}

/* Every handler= of the line (one line serves every handler a site
 * needs: SPANK loads the .so once), in order; or handlers=DIR. */
static void _scan(int ac, char **av)
{
	const char *path = _arg(ac, av, "path");
	const char *dir = _arg(ac, av, "handlers");
	int n = 0;

	if (dir) {
		_scan_dir(dir);
		return;
	}
	if (path)
		for (int i = 0; i < ac; i++)
			if (!strncmp(av[i], "handler=", 8)) {
				_scan_one(av[i] + 8, path);
				n++;
			}
	if (!n || !path)
		slurm_error("spank/python: plugstack.conf needs handler=module:Class "
			    "(one or more) and path=DIR, or handlers=DIR");
}

/* ---- what Python calls back (spm_spank_call_t) ---- */

static int _raw_get_item(void *spv, int item, int64_t *out)
{
	spank_t sp = spv;
	uint32_t u = 0;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int i, rc;

	switch (item) {
	case SPM_SP_JOB_ID: rc = spank_get_item(sp, S_JOB_ID, &u); break;
	case SPM_SP_STEP_ID: rc = spank_get_item(sp, S_JOB_STEPID, &u); break;
	case SPM_SP_NNODES: rc = spank_get_item(sp, S_JOB_NNODES, &u); break;
	case SPM_SP_NODEID: rc = spank_get_item(sp, S_JOB_NODEID, &u); break;
	case SPM_SP_LOCAL_TASK_COUNT:
		rc = spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &u); break;
	case SPM_SP_TOTAL_TASK_COUNT:
		rc = spank_get_item(sp, S_JOB_TOTAL_TASK_COUNT, &u); break;
	case SPM_SP_TASK_GLOBAL_ID:
		rc = spank_get_item(sp, S_TASK_GLOBAL_ID, &u); break;
	case SPM_SP_ARRAY_ID: rc = spank_get_item(sp, S_JOB_ARRAY_ID, &u); break;
	case SPM_SP_ARRAY_TASK_ID:
		rc = spank_get_item(sp, S_JOB_ARRAY_TASK_ID, &u); break;
	case SPM_SP_UID:
		if ((rc = spank_get_item(sp, S_JOB_UID, &uid)) == ESPANK_SUCCESS)
			u = uid;
		break;
	case SPM_SP_GID:
		if ((rc = spank_get_item(sp, S_JOB_GID, &gid)) == ESPANK_SUCCESS)
			u = gid;
		break;
	case SPM_SP_TASK_ID:
		if ((rc = spank_get_item(sp, S_TASK_ID, &i)) == ESPANK_SUCCESS) {
			*out = i;
			return 0;
		}
		return -1;
	case SPM_SP_TASK_PID:
		if ((rc = spank_get_item(sp, S_TASK_PID, &pid)) == ESPANK_SUCCESS) {
			*out = pid;
			return 0;
		}
		return -1;
	default:
		return -1;
	}
	if (rc != ESPANK_SUCCESS)
		return -1;
	*out = u;
	return 0;
}

static int _raw_getenv(void *spv, const char *name, char **value)
{
	size_t len = 1024;

	*value = NULL;
	for (;;) {
		char *buf = malloc(len);
		spank_err_t rc;

		if (!buf)
			return -1;
		rc = spank_getenv(spv, name, buf, (int)len);
		if (rc == ESPANK_SUCCESS) {
			*value = buf;
			return 0;
		}
		free(buf);
		if (rc == ESPANK_ENV_NOEXIST)
			return 1;
		if (rc != ESPANK_NOSPACE || len >= (1 << 24))
			return -1;
		len *= 4;
	}
}

static int _raw_setenv(void *spv, const char *name, const char *value, int overwrite)
{
	return spank_setenv(spv, name, value, overwrite) == ESPANK_SUCCESS ? 0 : -1;
}

static int _raw_unsetenv(void *spv, const char *name)
{
	return spank_unsetenv(spv, name) == ESPANK_SUCCESS ? 0 : -1;
}

static int _raw_option(void *spv, const char *name, const char **value)
{
	*value = NULL;
	for (int i = 0; i < n_opts; i++) {
		if (strcmp(opts[i].name, name))
			continue;
		if (!opts[i].given && spank_context() == S_CTX_JOB_SCRIPT) {
			/* job_prolog/job_epilog: SPANK calls no option
			 * callback there; the values are in the job's
			 * environment, which spank_option_getopt reads. */
			struct spank_option o = _spank_option(i);
			char *arg = NULL;

			if (spank_option_getopt(spv, &o, &arg) == ESPANK_SUCCESS) {
				opts[i].given = 1;
				opts[i].value = (o.has_arg && arg) ? strdup(arg) : NULL;
			}
		}
		if (!opts[i].given)
			return 0;
		*value = opts[i].value;
		return 1;
	}
	return -1;
}

static void _free_str(char *s)
{
	free(s);
}

static int _raw_get_argv(void *spv, int *argc, const char ***argv)
{
	return spank_get_item(spv, S_JOB_ARGV, argc, argv) == ESPANK_SUCCESS ? 0 : -1;
}

static int _raw_prepend_argv(void *spv, int argc, const char **argv)
{
	return spm_compat_spank_prepend_argv(spv, argc, argv);   /* -2 before 23.11 */
}

/* SPANK hands us each option given (locally from the command line, in
 * slurmstepd from srun's request or sbatch's environment) here. */
static int _option_cb(int val, const char *optarg, int remote)
{
	(void)remote;
	if (val < 0 || val >= n_opts)
		return -1;
	opts[val].given = 1;
	free(opts[val].value);
	opts[val].value = (opts[val].arginfo && optarg) ? strdup(optarg) : NULL;
	return 0;
}


/* ---- the box: what a hook's Python call reaches SPANK through ----
 *
 * With timeout= the call runs on a thread of its own and the hook returns
 * (failed) at the deadline, leaving that thread to finish whenever it
 * does.  From then on it must not touch SPANK (the spank_t is the hook's,
 * gone with it): every callback takes the box's mutex and refuses once
 * the box is abandoned.  The box is freed by whichever side lets go last. */
struct sp_box {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	spank_t sp;
	bool abandoned, done;
	int refs, rc;
	spm_spank_call_t call;
};

static void _box_unref(struct sp_box *b)
{
	bool last;

	pthread_mutex_lock(&b->mu);
	last = --b->refs == 0;
	pthread_mutex_unlock(&b->mu);
	if (last) {
		pthread_mutex_destroy(&b->mu);
		pthread_cond_destroy(&b->cv);
		free(b);
	}
}

#define SP_GUARDED(call_expr) do { \
		struct sp_box *b = spv; \
		int r = -1; \
		pthread_mutex_lock(&b->mu); \
		if (!b->abandoned) { \
			void *sp_ = b->sp; \
			r = (call_expr); \
		} \
		pthread_mutex_unlock(&b->mu); \
		return r; \
	} while (0)

static int _get_item(void *spv, int item, int64_t *out)
{
	SP_GUARDED(_raw_get_item(sp_, item, out));
}

static int _getenv(void *spv, const char *name, char **value)
{
	*value = NULL;
	SP_GUARDED(_raw_getenv(sp_, name, value));
}

static int _setenv(void *spv, const char *name, const char *value, int overwrite)
{
	SP_GUARDED(_raw_setenv(sp_, name, value, overwrite));
}

static int _unsetenv(void *spv, const char *name)
{
	SP_GUARDED(_raw_unsetenv(sp_, name));
}

static int _option(void *spv, const char *name, const char **value)
{
	*value = NULL;
	SP_GUARDED(_raw_option(sp_, name, value));
}

static int _get_argv(void *spv, int *argc, const char ***argv)
{
	SP_GUARDED(_raw_get_argv(sp_, argc, argv));
}

static int _prepend_argv(void *spv, int argc, const char **argv)
{
	SP_GUARDED(_raw_prepend_argv(sp_, argc, argv));
}

static void *_call_thread(void *arg)
{
	struct sp_box *b = arg;
	int rc;

	/* This thread blocks every signal (they stay the process's): as for
	 * the daemons' workers, the child of a fork() made here (a hook's
	 * subprocess) gets an empty mask back, or the programs a hook starts
	 * would ignore SIGTERM and SIGINT. */
	core_thread_enter();
	rc = core_call(&b->call);

	pthread_mutex_lock(&b->mu);
	b->rc = rc;
	b->done = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	_box_unref(b);
	return NULL;
}

/* Run the call; with a limit, on its own thread, waited for until the
 * deadline.  Returns the bridge's code, or -2 at the deadline. */
static int _call(struct sp_box *b)
{
	struct timespec until;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t tid;
	int rc, err = 0;

	if (timeout_ms == 0)
		return core_call(&b->call);
	b->refs = 2;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);                /* signals stay the process's */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&tid, &attr, _call_thread, b);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc) {
		b->refs = 1;
		return core_call(&b->call);
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&b->mu);
	while (!b->done && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&b->cv, &b->mu, &until);
	if (b->done) {
		rc = b->rc;
	} else {
		b->abandoned = true;
		rc = -2;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

/* ---- the hooks ---- */

static const char *_context_name(void)
{
	switch (spank_context()) {
	case S_CTX_LOCAL: return "local";
	case S_CTX_REMOTE: return "remote";
	case S_CTX_ALLOCATOR: return "allocator";
	case S_CTX_SLURMD: return "slurmd";
	case S_CTX_JOB_SCRIPT: return "job_script";
	default: return "error";
	}
}

/* ---- stats: the node's shared spank file ----
 *
 * Only the node's root processes publish: slurmstepd (remote context),
 * its `spank prolog|epilog` (job_script) and slurmd (slurmd_exit), all
 * into one file, <SlurmdSpoolDir>/slurmpy-stats/spank.<host>.shared (mode
 * 0600, owned by root, in the root-owned directory), of a fixed size
 * (spm_stats_file_t): bounded disk use whatever the number of steps.
 * Counters are atomic adds on the mapping, no lock; a hook's last error
 * is written under a claim on its seq that a writer killed in the middle
 * cannot hold for good (spm.h).  The mapping is not inherited by fork
 * (MADV_DONTFORK): a task's process becomes the job's user, and Slurm makes
 * it dumpable (ptrace-able by that user) before its exec, so it never has
 * it; task_init_privileged, in that process while still root, maps the
 * file for that call alone.  srun, sbatch and salloc (local, allocator:
 * the user's processes) and task_init (run as the user) publish nothing:
 * a file the user could write would be figures nobody can trust.
 * `slurmpy-plugins stats` says so beside the figures. */
static spm_stats_file_t *sp_stats;  /* this process's mapping, or NULL */
static pid_t sp_stats_pid;          /* the process that tried to map it */

static bool _publishes(void)
{
	int c = spank_context();

	return c == S_CTX_REMOTE || c == S_CTX_JOB_SCRIPT || c == S_CTX_SLURMD;
}

/* The file in the directory dfd, mapped, or NULL; *replace: it is of
 * another layout (another release's). */
static spm_stats_file_t *_stats_map_at(int dfd, const char *name,
				       const char *host, bool *replace)
{
	spm_stats_file_t *m;
	struct stat st;
	int fd = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
			O_NOCTTY, 0600);

	*replace = false;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & 077) || st.st_nlink != 1 ||
	    (st.st_size == 0 && ftruncate(fd, sizeof(*m)))) {
		close(fd);
		return NULL;
	}
	if (st.st_size != 0 && st.st_size != sizeof(*m)) {
		close(fd);
		*replace = true;
		return NULL;
	}
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return NULL;
	(void)madvise(m, sizeof(*m), MADV_DONTFORK);
	if (__atomic_load_n(&m->magic, __ATOMIC_ACQUIRE) != SPM_STATS_MAGIC) {
		/* the first process (or several at once: the same values) */
		int64_t zero = 0;

		m->version = SPM_STATS_VERSION;
		m->size = sizeof(*m);
		m->pid = 0;
		m->daemon = SPM_DAEMON_SLURMSTEPD;
		m->ctx_count = SPM_CTX_COUNT;
		m->hook_count = SPM_HOOK_COUNT;
		memcpy(m->host, host, sizeof(m->host));
		snprintf(m->release, sizeof(m->release), "%s",
			 SLURM_VERSION_STRING);
		__atomic_compare_exchange_n(&m->started, &zero,
					    (int64_t)time(NULL), false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		__atomic_store_n(&m->magic, (uint64_t)SPM_STATS_MAGIC,
				 __ATOMIC_RELEASE);
	}
	if (m->version != SPM_STATS_VERSION || m->size != sizeof(*m)) {
		munmap(m, sizeof(*m));
		*replace = true;
		return NULL;
	}
	return m;
}

/* The file, mapped; NULL (nothing published) when it cannot be had
 * safely: not root, no SlurmdSpoolDir, a directory or file that is not
 * root's alone.  A file of another layout (a release before an upgrade)
 * is replaced by a new one: its processes keep adding to the old inode,
 * unlinked. */
static spm_stats_file_t *_stats_map(void)
{
	char dir[4200], name[128], host[64] = "";
	slurmd_conf_t **c;
	spm_stats_file_t *m = NULL;
	struct stat st;
	bool replace;
	int dfd;

	if (geteuid() != 0 || !_publishes())
		return NULL;
	c = (slurmd_conf_t **)dlsym(RTLD_DEFAULT, "conf");
	if (!c || !*c || !(*c)->spooldir || (*c)->spooldir[0] != '/')
		return NULL;
	gethostname(host, sizeof(host) - 1);
	for (char *h = host; *h; h++)
		if (*h == '/' || *h == '.')
			*h = *h == '.' ? '\0' : '_';
	snprintf(dir, sizeof(dir), "%s/slurmpy-stats", (*c)->spooldir);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return NULL;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return NULL;
	snprintf(name, sizeof(name), "spank.%s.shared", host);
	if (!fstat(dfd, &st) && st.st_uid == 0 && !(st.st_mode & 022)) {
		m = _stats_map_at(dfd, name, host, &replace);
		if (!m && replace && !unlinkat(dfd, name, 0))
			m = _stats_map_at(dfd, name, host, &replace);
	}
	close(dfd);
	return m;
}

/* This process's mapping, made once, in slurm_spank_init (as root, before
 * user_init drops privileges): SPANK calls it in slurmstepd's and slurmd's
 * own process, never in a task's. */
static void _stats_open(void)
{
	if (sp_stats_pid == getpid())
		return;
	sp_stats_pid = getpid();
	sp_stats = _stats_map();
}

/* One answered hook call (outcome SPM_STATS_*, us from the hook's start).
 * Without this process's own mapping (a task's process, or a process
 * SPANK called no init in), the file is mapped for this call alone. */
static void _publish(int hook, int outcome, uint64_t us, const char *where,
		     const char *text, bool written_off)
{
	spm_stats_file_t *m = NULL;
	bool transient = false;

	if (!_publishes())
		return;
	if (sp_stats_pid == getpid()) {
		m = sp_stats;
	} else if ((m = _stats_map())) {
		transient = true;
	}
	if (!m)
		return;
	spm_stats_count(&m->hooks[hook], outcome, us);
	if (written_off)
		spm_stats_add(&m->hooks[hook].written_off, 1);
	if (outcome != SPM_STATS_OK)
		spm_stats_write_error(&m->errors[hook], where, text,
				      (int64_t)time(NULL));
	if (transient)
		munmap(m, sizeof(*m));
}

static uint64_t _now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void _setup(int ac, char **av);

/* libslurmpy.so (and through it libpython) is loaded only here, by the
 * first hook the handler defines: spank_python.so does not link it, so a
 * process whose context has no such hook never maps the interpreter. */

static int _core(void)
{
	static int status = 1;       /* 1: not tried, 0: loaded, -1: failed */
	char path[4096], *slash;
	Dl_info info;
	void *h;

	if (status <= 0)
		return status;
	status = -1;
	if (!dladdr((void *)&_core, &info) || !info.dli_fname) {
		slurm_error("spank/python: cannot locate spank_python.so");
		return -1;
	}
	snprintf(path, sizeof(path), "%s", info.dli_fname);
	slash = strrchr(path, '/');
	snprintf(slash ? slash + 1 : path,
		 sizeof(path) - (slash ? (size_t)(slash + 1 - path) : 0),
		 "slurmpy/libslurmpy.so");
	if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE))) {
		slurm_error("spank/python: cannot load %s: %s", path, dlerror());
		return -1;
	}
	core_start = (int (*)(void))dlsym(h, "spm_runtime_start");
	core_call = (int (*)(spm_spank_call_t *))dlsym(h, "spm_py_spank");
	core_thread_enter = (void (*)(void))dlsym(h, "spm_worker_thread_enter");
	if (!core_start || !core_call || !core_thread_enter) {
		slurm_error("spank/python: %s lacks spm_runtime_start/spm_py_spank/"
			    "spm_worker_thread_enter", path);
		return -1;
	}
	status = 0;
	return 0;
}

static int _run(spank_t sp, int hook, const char *name, int ac, char **av)
{
	struct sp_box *b;
	uint64_t t0;
	int rc;
	char text[SPM_STATS_TEXT];

	_setup(ac, av);
	if (!(hook_mask & (1u << hook)))
		return 0;                /* not defined: no Python here */
	t0 = _now_us();
	if (_core() || core_start()) {
		slurm_error("spank/python: %s: Python cannot start in this "
			    "process (see the log)", name);
		_publish(hook, SPM_STATS_FAILED, _now_us() - t0, "",
			 "Python cannot start in this process (see the log)",
			 false);
		return -1;
	}
	if (!(b = calloc(1, sizeof(*b)))) {
		slurm_error("spank/python: %s: out of memory", name);
		_publish(hook, SPM_STATS_FAILED, _now_us() - t0, "",
			 "out of memory", false);
		return -1;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->refs = 1;
	b->sp = sp;
	b->call.hook = hook;
	b->call.context = _context_name();
	b->call.args = args_joined ? args_joined : "";
	b->call.slurm_user_id = slurm_conf.slurm_user_id;
	b->call.sp = b;
	b->call.get_item = _get_item;
	b->call.getenv = _getenv;
	b->call.setenv = _setenv;
	b->call.unsetenv = _unsetenv;
	b->call.option = _option;
	b->call.free_str = _free_str;
	b->call.get_argv = _get_argv;
	b->call.prepend_argv = _prepend_argv;
	rc = _call(b);
	if (rc == SPM_PY_OK) {
		_publish(hook, SPM_STATS_OK, _now_us() - t0, NULL, NULL, false);
		_box_unref(b);
		return 0;
	}
	if (rc == -2) {
		slurm_error("spank/python: %s failed: it did not return within "
			    "timeout=%u ms (left running, cut off from SPANK)",
			    name, timeout_ms);
		snprintf(text, sizeof(text), "%s did not return within "
			 "timeout=%u ms", name, timeout_ms);
		/* b->call is the abandoned thread's now */
		_publish(hook, SPM_STATS_TIMEOUT, _now_us() - t0, "", text,
			 true);
	} else {
		b->call.msg[sizeof(b->call.msg) - 1] = '\0';
		b->call.where[sizeof(b->call.where) - 1] = '\0';
		/* Python says why in msg for the handler's failures */
		slurm_error("spank/python: %s failed: %s", name,
			    rc == SPM_PY_FAILED || rc == SPM_PY_UNLOADED ?
			    b->call.msg : rc == SPM_PY_UNATTACHED ?
			    "the bridge is not attached (see the log)" :
			    "the bridge failed (see the log)");
		_publish(hook, SPM_STATS_FAILED, _now_us() - t0, b->call.where,
			 rc == SPM_PY_FAILED || rc == SPM_PY_UNLOADED ?
			 b->call.msg : rc == SPM_PY_UNATTACHED ?
			 "the bridge is not attached (see the log)" :
			 "the bridge failed (see the log)", false);
	}
	_box_unref(b);
	return -1;
}

/* The line's arguments and the module's reading, once per process: in
 * slurm_spank_init, or at the first hook where SPANK calls no init (the
 * job_script process of job_prolog/job_epilog). */
static void _setup(int ac, char **av)
{
	size_t len = 1;

	if (scanned)
		return;
	scanned = true;
	for (int i = 0; i < ac; i++)
		len += strlen(av[i]) + 1;
	if ((args_joined = malloc(len))) {
		args_joined[0] = '\0';
		for (int i = 0; i < ac; i++) {
			if (i)
				strcat(args_joined, "\n");
			strcat(args_joined, av[i]);
		}
	}
	_scan(ac, av);
	{
		const char *t = _arg(ac, av, "timeout");
		char *end = NULL;
		double sec = t ? strtod(t, &end) : 0;

		/* a bad value is refused by Python's reading of the line
		 * (and by check): here it only means no limit */
		if (t && end && !*end && sec > 0 && sec <= 86400)
			timeout_ms = (uint32_t)(sec * 1000 + 0.5);
	}
}

extern int slurm_spank_init(spank_t sp, int ac, char **av)
{
	_setup(ac, av);
	/* stats: mapped now, as root, if a hook may run Python here */
	if (hook_mask && _publishes() && geteuid() == 0)
		_stats_open();
	/* The options exist in every context (remote too: SPANK hands their
	 * values to the callback there); job_script/slurmd take none. */
	if (spank_context() == S_CTX_JOB_SCRIPT || spank_context() == S_CTX_SLURMD)
		return _run(sp, SPM_HOOK_SP_INIT, "init", ac, av);
	for (int i = 0; i < n_opts; i++) {
		struct spank_option o = _spank_option(i);

		o.cb = _option_cb;

		if (spank_option_register(sp, &o) != ESPANK_SUCCESS)
			slurm_error("spank/python: cannot register option --%s",
				    opts[i].name);
	}
	return _run(sp, SPM_HOOK_SP_INIT, "init", ac, av);
}

/* SPANK finds a callback by its symbol: each one exists, and returns at
 * once (no Python) when the handler's module does not define it.  A cost
 * of that: with slurm_spank_job_prolog/epilog present slurmd runs the
 * job_script process (`slurmstepd spank prolog|epilog`) for every job on
 * every node, Python or not. */
extern int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_INIT_POST_OPT, "init_post_opt", ac, av);
}

extern int slurm_spank_local_user_init(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_LOCAL_USER_INIT, "local_user_init", ac, av);
}

extern int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_USER_INIT, "user_init", ac, av);
}

extern int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_TASK_INIT_PRIVILEGED, "task_init_privileged", ac, av);
}

extern int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_TASK_INIT, "task_init", ac, av);
}

extern int slurm_spank_task_post_fork(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_TASK_POST_FORK, "task_post_fork", ac, av);
}

extern int slurm_spank_task_exit(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_TASK_EXIT, "task_exit", ac, av);
}

extern int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_EXIT, "exit", ac, av);
}

extern int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_JOB_PROLOG, "job_prolog", ac, av);
}

extern int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_JOB_EPILOG, "job_epilog", ac, av);
}

extern int slurm_spank_slurmd_exit(spank_t sp, int ac, char **av)
{
	return _run(sp, SPM_HOOK_SP_SLURMD_EXIT, "slurmd_exit", ac, av);
}

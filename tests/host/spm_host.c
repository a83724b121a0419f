/*
 * spm_host.c - a tiny stand-in for slurmctld / slurmd that drives ONE Slurm
 * plugin (.so) from a line protocol on stdin.  Built against the configured
 * Slurm 22.05.8 source tree and linked with libslurmfull.so, exported with
 * -rdynamic so a plugin resolves the daemon-only symbols defined here
 * (job_list, find_job_record, conf, slurmscriptd_run_prepilog, ...).
 *
 * Protocol (see tests/host/README.md for the full grammar):
 *   request  : VERB [key=value ...]                  one per line
 *   response : zero or more "row ..." lines, then exactly one
 *              "ok VERB key=value ..." or "error VERB message" line
 *   event    : "event KIND key=value ..." - may appear at any time
 *              (asynchronous callbacks, deadlock reports)
 *   values   : -  (NULL) | decimal or 0x integer | x<hex bytes> (string)
 *              | [] (empty list) | a bare lowercase word (enumerations)
 */

#define _GNU_SOURCE

#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"

#include "src/common/env.h"
#include "src/common/list.h"
#include "src/common/log.h"
#include "../../csrc/compat.h"   /* the shim's release differences */
#include SPM_PREP_H
#include SPM_CRED_H
#include "src/common/run_command.h"
#include "src/common/slurm_protocol_defs.h"
#include "src/common/uid.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmctld/locks.h"
#include "src/slurmctld/slurmctld.h"
#include "src/slurmd/slurmd/slurmd.h"

#include "spm_host.h"	/* what bench/bench_host.c shares */

#define HOST_NAME "spm_host"

/* ------------------------------------------------------------------------ */
/* The Slurm releases this host plays (22.05 to 26.05): their differences,   */
/* here and nowhere else in this file.  csrc/compat.h has the shim's.        */
/* ------------------------------------------------------------------------ */

/* the List typedef is gone in 24.11, ListIterator already in 24.05 */
#if SPM_SLURM_AT_LEAST(24, 11)
typedef list_t *host_list_t;
#else
typedef List host_list_t;
#endif
#if SPM_SLURM_AT_LEAST(24, 5)
typedef list_itr_t *host_itr_t;
#else
typedef ListIterator host_itr_t;
#endif

/* Which daemon this is: up to 24.11 libslurm tells from slurm_prog_name
 * (log_init() sets it); from 25.05 each daemon defines slurm_daemon (a
 * weak symbol in libslurm, IS_SLURMCTLD ...) and running_in_slurmctld()
 * is run_in_daemon(IS_SLURMCTLD).  -rdynamic makes ours the one libslurm
 * reads. */
#if SPM_SLURM_AT_LEAST(25, 5)
#include "src/common/run_in_daemon.h"
uint32_t slurm_daemon = 0;
static void host_set_daemon(const char *name)
{
	slurm_daemon = !strcmp(name, "slurmctld") ? IS_SLURMCTLD :
		       !strcmp(name, "slurmd") ? IS_SLURMD :
		       !strcmp(name, "slurmstepd") ? IS_SLURMSTEPD : 0;
}
#else
static void host_set_daemon(const char *name)
{
	(void)name;
}
#endif

/* PrologEpilogTimeout, split into PrologTimeout and EpilogTimeout in
 * 25.05: the conf() field names and what the fake slurmscriptd waits. */
#if SPM_SLURM_AT_LEAST(25, 5)
#define CONF_TIMEOUT_FIELDS CU(prolog_timeout), CU(epilog_timeout)
#define HOST_SCRIPT_TIMEOUT(is_epilog) \
	((is_epilog) ? slurm_conf.epilog_timeout : slurm_conf.prolog_timeout)
#define HOST_CONF_TIMEOUT_UNSET() \
	(slurm_conf.prolog_timeout = slurm_conf.epilog_timeout = NO_VAL16)
#else
#define CONF_TIMEOUT_FIELDS CU(prolog_epilog_timeout)
#define HOST_SCRIPT_TIMEOUT(is_epilog) slurm_conf.prolog_epilog_timeout
#define HOST_CONF_TIMEOUT_UNSET() \
	(slurm_conf.prolog_epilog_timeout = NO_VAL16)
#endif

/* 26.05: closeall() (in run_command()'s child) needs closeall_init(),
 * which each daemon calls at start; without it the child loops closing
 * fds for minutes. */
#if SPM_SLURM_AT_LEAST(26, 5)
#include "src/common/fd.h"
#define HOST_DAEMON_INIT() closeall_init()
#else
#define HOST_DAEMON_INIT() ((void)0)
#endif

/* job_env_t.jobid/step_id and job_desc_msg_t.job_id: members of a
 * slurm_step_id_t step_id from 25.11 (compat.h has the designators); the
 * field tables keep the names jobid, step_id and job_id. */
#define HOST_ENV_JOBID(e) spm_compat_env_job_id(e)
/* job_modify(): an err_msg from 23.02 on (22.05: none) */
#if SPM_SLURM_AT_LEAST(23, 2)
typedef int (*host_js_modify_fn)(job_desc_msg_t *, job_record_t *, uint32_t,
				 char **);
#define HOST_JS_MODIFY(fn, d, j, u, e) (fn)((d), (j), (u), (e))
#else
typedef int (*host_js_modify_fn)(job_desc_msg_t *, job_record_t *, uint32_t);
#define HOST_JS_MODIFY(fn, d, j, u, e) ((void)(e), (fn)((d), (j), (u)))
#endif

/* struct job_details (22.05) is the typedef job_details_t in 24.11 */
typedef __typeof__(*((job_record_t *) 0)->details) host_details_t;

/* slurmd's job_env_t, plus the job's user name: a field of job_env_t before
 * 23.11, carried by the job credential from then on. */
typedef struct {
	job_env_t env;
	char *user_name;
	slurm_cred_t *cred;     /* what prep_p_prolog/epilog get */
#if SPM_SLURM_AT_LEAST(23, 11)
	slurm_cred_t cred_buf;
	slurm_cred_arg_t cred_arg;
	identity_t cred_id;
#endif
} host_env_t;

/* Before the hook call: put user_name where this release's slurmd has it. */
static void host_env_attach_user(host_env_t *h)
{
	h->cred = NULL;
#if SPM_SLURM_AT_LEAST(23, 11)
	if (h->user_name) {
		memset(&h->cred_buf, 0, sizeof(h->cred_buf));
		memset(&h->cred_arg, 0, sizeof(h->cred_arg));
		memset(&h->cred_id, 0, sizeof(h->cred_id));
		h->cred_id.uid = h->env.uid;
		h->cred_id.gid = h->env.gid;
		h->cred_id.pw_name = h->user_name;
		h->cred_arg.id = &h->cred_id;
		h->cred_buf.magic = CRED_MAGIC;
		pthread_rwlock_init(&h->cred_buf.mutex, NULL);
		h->cred_buf.arg = &h->cred_arg;
		h->cred = &h->cred_buf;
	}
#else
	h->env.user_name = h->user_name;
#endif
}

static void host_env_detach_user(host_env_t *h)
{
#if SPM_SLURM_AT_LEAST(23, 11)
	if (h->cred)
		pthread_rwlock_destroy(&h->cred_buf.mutex);
#else
	h->env.user_name = NULL;
#endif
	h->cred = NULL;
}

/* slurm_conf's Prolog=/Epilog=... (set with conf(epilog=...)): one string
 * before 24.05, an array with a count from 24.05 on.  Used in the field
 * table below (CPE). */
#if SPM_SLURM_AT_LEAST(24, 5)
#define CPE(m) F_SV(B_CONF, slurm_conf_t, m, m##_cnt)
#else
#define CPE(m) CS(m)
#endif

/* plugin load errors (src/common/plugin.h's plugin_err_t in 22.05) */
enum {
	HOST_EPLUGIN_SUCCESS = 0, HOST_EPLUGIN_NOTFOUND, HOST_EPLUGIN_ACCESS_ERROR,
	HOST_EPLUGIN_DLOPEN_FAILED, HOST_EPLUGIN_INIT_FAILED,
	HOST_EPLUGIN_MISSING_NAME, HOST_EPLUGIN_BAD_VERSION,
};

/* ------------------------------------------------------------------------ */
/* Symbols a daemon would provide to its plugins (exported via -rdynamic).   */
/* ------------------------------------------------------------------------ */

/* slurmctld: the global job list, iterated by site_factor_p_update(). */
host_list_t job_list = NULL;
/* slurmctld's partitions, for job_submit plugins (parts_add/parts_clear) */
host_list_t part_list = NULL;
part_record_t *default_part_loc = NULL;
time_t last_job_update = 0;

/* slurmd: the global daemon config, dereferenced by prep/script (slurmd). */
slurmd_conf_t *conf = NULL;

/* ------------------------------------------------------------------------ */
/* Host state                                                                */
/* ------------------------------------------------------------------------ */

static struct {
	const char *plugin;
	const char *daemon;
	const char *log_file;
	int debug;
	int deadlock_ms;
} opt = { .debug = LOG_LEVEL_INFO, .deadlock_ms = 3000 };

static struct {
	void *handle;
	enum family family;
	bool fini_called;
	const char *type;	/* points into the plugin; valid while loaded */
	void (*fini)(void);
	/* prep */
	void (*register_callbacks)(prep_callbacks_t *callbacks);
	int (*prolog)(job_env_t *job_env, slurm_cred_t *cred);
	int (*epilog)(job_env_t *job_env, slurm_cred_t *cred);
	int (*prolog_slurmctld)(job_record_t *job_ptr, bool *async);
	int (*epilog_slurmctld)(job_record_t *job_ptr, bool *async);
	void (*required)(prep_call_type_t type, bool *required);
	/* site_factor */
	void (*sf_reconfig)(void);
	void (*sf_set)(job_record_t *job_ptr);
	void (*sf_update)(void);
	/* job_submit */
	int (*js_submit)(job_desc_msg_t *desc, uint32_t uid, char **err_msg);
	host_js_modify_fn js_modify;
	/* jobcomp (its record hooks as host_jc_*_fn: compat.h's releases) */
	void *jc_set_location;
	void *jc_end;
	void *jc_start;
	void *jc_get_jobs;
} plug;

/* for verbs outside this file (spm_host.h) */
host_js_submit_fn host_js_submit(void)
{
	return plug.js_submit;
}

static bool quit_requested = false;

/* Output: every line is written atomically under out_lock. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* "slurmctld job write lock" stand-in */
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
/* per-thread stack of how each nested job_lock_take() ended */
enum { LK_TAKEN = 0, LK_BYPASS_REENTRY, LK_BYPASS_TIMEOUT };
#define LOCK_DEPTH_MAX 16
static __thread int tl_lock_how[LOCK_DEPTH_MAX];
static __thread int tl_lock_depth = 0;
/* set while this thread is inside a plugin call */
static __thread int tl_in_plugin = 0;

/* Callback bookkeeping, all under cb_mutex. */
enum hook { HOOK_PROLOG_SLURMCTLD = 0, HOOK_EPILOG_SLURMCTLD, HOOK_CNT };
static const char *hook_names[HOOK_CNT] = {
	"prolog_slurmctld", "epilog_slurmctld"
};
typedef struct {
	int hook;
	uint32_t job_id;
} pending_t;
static pthread_mutex_t cb_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cond;
static uint64_t cb_total = 0, cb_deadlocks = 0, cb_unexpected = 0;
static uint64_t lock_deadlocks = 0;
static bool cb_quiet = false;		/* benchmark: count, do not print */
static pending_t *pending = NULL;
static size_t pending_cnt = 0, pending_cap = 0;

/* Threads of the fake slurmscriptd (joined at exit). */
typedef struct script_thread {
	pthread_t tid;
	struct script_thread *next;
} script_thread_t;
static pthread_mutex_t script_mutex = PTHREAD_MUTEX_INITIALIZER;
static script_thread_t *script_threads = NULL;
static uint64_t scripts_started = 0;

/* ------------------------------------------------------------------------ */
/* Small utilities                                                           */
/* ------------------------------------------------------------------------ */

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void *xmalloc_checked(size_t n)	/* host-private memory */
{
	void *p = calloc(1, n ? n : 1);

	if (!p) {
		fprintf(stderr, HOST_NAME ": out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

void out_begin(void)
{
	pthread_mutex_lock(&out_lock);
}

void out_printf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void out_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
}

/* " key=-" or " key=x<hex>" */
static void out_str(const char *key, const char *s)
{
	if (!s) {
		fprintf(stdout, " %s=-", key);
		return;
	}
	fprintf(stdout, " %s=x", key);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
		fprintf(stdout, "%02x", *p);
}

void out_end(void)
{
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* Host-generated text only; anything user-supplied is made printable. */
void out_error(const char *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void out_error(const char *verb, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			*p = '?';
	out_begin();
	out_printf("error %s %s", verb, msg);
	out_end();
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode a string value: "-" -> NULL, "x<hex>" -> xmalloc'd C string.
 * Returns 0 on success, -1 with *why set.
 */
static int decode_str(const char *val, char **out, const char **why)
{
	size_t n;
	char *s;

	*out = NULL;
	if (!strcmp(val, "-"))
		return 0;
	if (val[0] != 'x') {
		*why = "string values must be - or x<hex>";
		return -1;
	}
	val++;
	n = strlen(val);
	if (n % 2) {
		*why = "odd number of hex digits";
		return -1;
	}
	s = xmalloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(val[2 * i]), lo = hexval(val[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			xfree(s);
			*why = "bad hex digit";
			return -1;
		}
		if (!(s[i] = (char) (hi * 16 + lo))) {
			xfree(s);
			*why = "embedded NUL byte";
			return -1;
		}
	}
	*out = s;
	return 0;
}

static int parse_u64(const char *val, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	if (!val[0] || val[0] == '-' || val[0] == '+' || val[0] == ' ')
		return -1;
	errno = 0;
	v = strtoull(val, &end, 0);
	if (errno || !end || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_i64(const char *val, int64_t *out)
{
	char *end = NULL;
	long long v;

	if (!val[0] || val[0] == '+' || val[0] == ' ')
		return -1;
	errno = 0;
	v = strtoll(val, &end, 0);
	if (errno || !end || *end)
		return -1;
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Field tables                                                              */
/* ------------------------------------------------------------------------ */

typedef enum {
	K_UINT,		/* unsigned integer of .size bytes */
	K_SINT,		/* signed integer (time_t) of .size bytes */
	K_STR,		/* char * (xmalloc'd) */
	K_STRV,		/* char ** NULL terminated, optional count member */
	K_QOS,		/* job_ptr->qos_ptr->name */
} kind_t;

typedef enum { B_JOB, B_DETAILS, B_ENV, B_CONF, B_DCONF, B_DESC, B_PART } base_t;

typedef struct {
	const char *name;
	kind_t kind;
	base_t base;
	size_t off;
	size_t size;
	ssize_t cnt_off;	/* K_STRV: offset of element count or -1 */
	size_t cnt_size;
} field_t;

#define MSIZE(T, m) sizeof(((T *) 0)->m)
#define F_(B, T, m, k) { #m, k, B, offsetof(T, m), MSIZE(T, m), -1, 0 }
#define F_SV(B, T, m, c) { #m, K_STRV, B, offsetof(T, m), MSIZE(T, m), \
			   offsetof(T, c), MSIZE(T, c) }
#define F_SV0(B, T, m) { #m, K_STRV, B, offsetof(T, m), MSIZE(T, m), -1, 0 }

#define JU(m) F_(B_JOB, job_record_t, m, K_UINT)
#define JT(m) F_(B_JOB, job_record_t, m, K_SINT)
#define JS(m) F_(B_JOB, job_record_t, m, K_STR)
#define DU(m) F_(B_DETAILS, host_details_t, m, K_UINT)
#define DT(m) F_(B_DETAILS, host_details_t, m, K_SINT)
#define DS(m) F_(B_DETAILS, host_details_t, m, K_STR)
#define FE_(m, k) { #m, k, B_ENV, offsetof(host_env_t, env.m), \
		       MSIZE(job_env_t, m), -1, 0 }
#define FE_AS(name, m, k) { name, k, B_ENV, offsetof(host_env_t, env.m), \
			    MSIZE(job_env_t, m), -1, 0 }
#define EU(m) FE_(m, K_UINT)
#define ES(m) FE_(m, K_STR)
#define CU(m) F_(B_CONF, slurm_conf_t, m, K_UINT)
#define CS(m) F_(B_CONF, slurm_conf_t, m, K_STR)
#define SS(m) F_(B_DCONF, slurmd_conf_t, m, K_STR)
#define QU(m) F_(B_DESC, job_desc_msg_t, m, K_UINT)
#define QT(m) F_(B_DESC, job_desc_msg_t, m, K_SINT)
#define QS(m) F_(B_DESC, job_desc_msg_t, m, K_STR)
#define PU(m) F_(B_PART, part_record_t, m, K_UINT)
#define PS(m) F_(B_PART, part_record_t, m, K_STR)

static const field_t job_fields[] = {
	/* job_record_t integers */
	JU(job_id), JU(array_job_id), JU(array_task_id), JU(het_job_id),
	JU(het_job_offset), JU(user_id), JU(group_id), JU(job_state),
	JU(state_reason), JU(exit_code), JU(derived_ec), JU(priority),
	JU(site_factor), JU(restart_cnt), JU(batch_flag), JU(time_limit),
	JU(time_min), JU(node_cnt), JU(total_cpus), JU(total_nodes),
	JU(qos_id), JU(assoc_id), JU(resv_id), JU(bit_flags), JU(cpu_cnt),
	JU(direct_set_prio), JU(mail_type), JU(requid), JU(profile),
	JU(prep_prolog_cnt), JU(prep_epilog_cnt),
	JT(start_time), JT(end_time), JT(deadline), JT(suspend_time),
	JT(pre_sus_time), JT(preempt_time), JT(resize_time),
	/* job_record_t strings */
	JS(account), JS(admin_comment), JS(comment), JS(name), JS(nodes),
	JS(partition), JS(user_name), JS(wckey), JS(licenses), JS(batch_host),
	JS(resv_name), JS(alloc_node), JS(mcs_label), JS(state_desc),
	JS(tres_alloc_str), JS(tres_req_str), JS(tres_per_node),
	JS(tres_per_job), JS(tres_per_task), JS(tres_per_socket),
	JS(system_comment), JS(burst_buffer), JS(burst_buffer_state),
	JS(mail_user), JS(network), JS(origin_cluster), JS(resp_host),
	JS(selinux_context), JS(container), JS(cpus_per_tres),
	JS(mem_per_tres), JS(tres_bind), JS(tres_freq), JS(tres_fmt_req_str),
	JS(tres_fmt_alloc_str), JS(alias_list), JS(batch_features),
	JS(clusters), JS(gres_used), JS(sched_nodes), JS(nodes_completing),
	JS(nodes_pr), JS(het_job_id_set),
	F_SV(B_JOB, job_record_t, spank_job_env, spank_job_env_size),
	{ "qos", K_QOS, B_JOB, offsetof(job_record_t, qos_ptr),
	  MSIZE(job_record_t, qos_ptr), -1, 0 },
	/* host_details_t */
	DT(submit_time), DT(begin_time), DU(min_cpus), DU(min_nodes),
	DU(max_nodes), DU(nice), DU(requeue), DU(pn_min_memory),
	DU(pn_min_cpus), DU(pn_min_tmp_disk), DU(num_tasks),
	DU(cpus_per_task), DU(ntasks_per_node), DU(contiguous),
	DU(share_res), DU(whole_node),
	DS(work_dir), DS(features), DS(features_use), DS(std_out),
	DS(std_err), DS(std_in), DS(req_nodes), DS(exc_nodes),
	DS(dependency), DS(prefer), DS(cluster_features), DS(acctg_freq),
	F_SV(B_DETAILS, host_details_t, env_sup, env_cnt),
};

static const field_t env_fields[] = {
	FE_AS("jobid", SPM_ENV_JOB_ID_MEMBER, K_UINT),
	FE_AS("step_id", SPM_ENV_STEP_ID_MEMBER, K_UINT), EU(uid), EU(gid), EU(het_job_id),
	EU(exit_code), EU(derived_ec),
	{ "user_name", K_STR, B_ENV, offsetof(host_env_t, user_name),
	  MSIZE(host_env_t, user_name), -1, 0 },
	ES(partition), ES(node_list), ES(node_aliases), ES(work_dir),
	{ "spank_job_env", K_STRV, B_ENV,
	  offsetof(host_env_t, env.spank_job_env),
	  MSIZE(job_env_t, spank_job_env),
	  offsetof(host_env_t, env.spank_job_env_size),
	  MSIZE(job_env_t, spank_job_env_size) },
	{ "gres_job_env", K_STRV, B_ENV,
	  offsetof(host_env_t, env.gres_job_env),
	  MSIZE(job_env_t, gres_job_env), -1, 0 },
};

static const field_t conf_fields[] = {
	CS(prep_params), CS(prep_plugins), CS(site_factor_params),
	CS(site_factor_plugin), CPE(prolog), CPE(epilog), CPE(prolog_slurmctld),
	CPE(epilog_slurmctld), CS(slurm_user_name), CS(plugindir),
	CS(cluster_name), CS(priority_params), CS(priority_type),
	CS(slurmctld_params), CS(slurmd_params), CS(sched_params),
	CS(slurm_conf), CS(state_save_location), CS(tmp_fs),
	CS(job_submit_plugins), CS(job_comp_type), CS(job_comp_params),
	CONF_TIMEOUT_FIELDS, CU(slurm_user_id), CU(debug_flags),
	CU(priority_flags), CU(prolog_flags), CU(max_job_cnt),
	CU(priority_weight_age), CU(priority_weight_assoc),
	CU(priority_weight_fs), CU(priority_weight_js),
	CU(priority_weight_part), CU(priority_weight_qos),
};

/* job_desc_msg_t (job_submit requests): every member job_submit/python
 * copies, plus the ones it must leave alone. */
static const field_t desc_fields[] = {
	QU(contiguous), QU(core_spec), QU(cores_per_socket), QU(cpus_per_task),
	QU(immediate), QU(kill_on_node_fail), QU(mail_type),
	QU(ntasks_per_core), QU(ntasks_per_node), QU(ntasks_per_socket),
	QU(ntasks_per_tres), QU(pn_min_cpus), QU(reboot), QU(requeue),
	QU(shared), QU(sockets_per_node), QU(threads_per_core),
	QU(wait_all_nodes),
	{ "job_id", K_UINT, B_DESC, offsetof(job_desc_msg_t, SPM_DESC_JOB_ID_MEMBER),
	  MSIZE(job_desc_msg_t, SPM_DESC_JOB_ID_MEMBER), -1, 0 }, QU(user_id), QU(group_id),
	QU(delay_boot), QU(max_cpus), QU(max_nodes), QU(min_cpus),
	QU(min_nodes), QU(num_tasks), QU(pn_min_tmp_disk), QU(priority),
	QU(time_limit), QU(time_min), QU(pn_min_memory), QU(site_factor),
	QU(nice), QT(begin_time), QT(deadline),
	QS(account), QS(acctg_freq), QS(admin_comment), QS(alloc_node),
	QS(array_inx), QS(batch_features), QS(burst_buffer), QS(clusters),
	QS(comment), QS(container), QS(cpus_per_tres), QS(dependency),
	QS(exc_nodes), QS(features), QS(licenses), QS(mail_user),
	QS(mcs_label), QS(mem_per_tres), QS(name), QS(network),
	QS(partition), QS(prefer), QS(qos), QS(req_nodes), QS(reservation),
	QS(script), QS(std_err), QS(std_in), QS(std_out), QS(submit_line),
	QS(tres_per_job), QS(tres_per_node), QS(tres_per_socket),
	QS(tres_per_task), QS(wckey), QS(work_dir),
	F_SV(B_DESC, job_desc_msg_t, environment, env_size),
	F_SV(B_DESC, job_desc_msg_t, spank_job_env, spank_job_env_size),
	F_SV(B_DESC, job_desc_msg_t, argv, argc),
};

/* part_record_t (part_list, for job_submit plugins) */
static const field_t part_fields[] = {
	PU(max_time), PU(default_time), PU(max_nodes), PU(min_nodes),
	PU(total_nodes), PU(total_cpus), PU(max_cpus_per_node),
	PU(priority_tier), PU(flags), PU(state_up),
	PS(name), PS(nodes), PS(allow_accounts), PS(deny_accounts),
	PS(allow_qos), PS(deny_qos), PS(allow_groups), PS(qos_char),
	PS(alternate),
};

static const field_t dconf_fields[] = {
	SS(node_name), SS(conffile), SS(stepd_loc), SS(spooldir),
	SS(hostname), SS(logfile), SS(tmp_fs),
};

#define MAX_FIELDS 256

typedef struct {
	job_record_t *job;
	host_env_t *env;
	job_desc_msg_t *desc;
	part_record_t *part;
} target_t;

static void *field_base(const field_t *f, const target_t *t)
{
	switch (f->base) {
	case B_JOB:
		return t->job;
	case B_DETAILS:
		return t->job ? t->job->details : NULL;
	case B_ENV:
		return t->env;
	case B_CONF:
		return &slurm_conf;
	case B_DCONF:
		return conf;
	case B_DESC:
		return t->desc;
	case B_PART:
		return t->part;
	}
	return NULL;
}

static void store_uint(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1: { uint8_t x = v; memcpy(p, &x, 1); break; }
	case 2: { uint16_t x = v; memcpy(p, &x, 2); break; }
	case 4: { uint32_t x = v; memcpy(p, &x, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
}

/* Scribble over, then xfree, a NULL terminated xmalloc'd string vector. */
static void free_strv(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++) {
		memset(v[i], 'Z', strlen(v[i]));
		xfree(v[i]);
	}
	xfree(v);
}

static void free_str(char **slot)
{
	if (*slot) {
		memset(*slot, 'Z', strlen(*slot));
		xfree(*slot);
	}
}

/* Release whatever the field currently holds (strings, vectors, qos). */
static void field_release(const field_t *f, void *base)
{
	char *p = (char *) base + f->off;

	switch (f->kind) {
	case K_STR:
		free_str((char **) p);
		break;
	case K_STRV:
		free_strv(*(char ***) p);
		*(char ***) p = NULL;
		if (f->cnt_off >= 0)
			store_uint((char *) base + f->cnt_off, f->cnt_size, 0);
		break;
	case K_QOS: {
		slurmdb_qos_rec_t **q = (slurmdb_qos_rec_t **) p;

		if (*q) {
			free_str(&(*q)->name);
			xfree(*q);
		}
		break;
	}
	default:
		break;
	}
}

static void strv_append(const field_t *f, void *base, char *s)
{
	char ***vp = (char ***) ((char *) base + f->off);
	size_t n = 0;

	if (*vp)
		while ((*vp)[n])
			n++;
	xrealloc(*vp, (n + 2) * sizeof(char *));
	(*vp)[n] = s;
	(*vp)[n + 1] = NULL;
	if (f->cnt_off >= 0) {
		uint64_t max = (f->cnt_size >= 8) ? UINT64_MAX :
			((1ULL << (8 * f->cnt_size)) - 1);
		store_uint((char *) base + f->cnt_off, f->cnt_size,
			   (n + 1 > max) ? max : n + 1);
	}
}

/*
 * Apply key=value tokens to target using a field table.  Rejects unknown
 * keys, malformed values, and repeated keys (except list fields, where
 * each occurrence appends one element).  On error prints the error line
 * and returns -1.
 */
static int apply_fields(const char *verb, const field_t *tab, size_t ntab,
			const target_t *t, int argc, char **argv)
{
	bool seen[MAX_FIELDS] = { false };

	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const field_t *f = NULL;
		size_t idx = 0;
		const char *val, *why = NULL;
		void *base, *slot;

		if (!eq || eq == argv[i]) {
			out_error(verb, "expected key=value, got %s", argv[i]);
			return -1;
		}
		*eq = '\0';
		val = eq + 1;
		for (idx = 0; idx < ntab; idx++)
			if (!strcmp(tab[idx].name, argv[i])) {
				f = &tab[idx];
				break;
			}
		if (!f) {
			out_error(verb, "unknown field %s", argv[i]);
			*eq = '=';
			return -1;
		}
		*eq = '=';
		if (seen[idx] && f->kind != K_STRV) {
			out_error(verb, "duplicate field %s", f->name);
			return -1;
		}
		if (!(base = field_base(f, t))) {
			out_error(verb, "no target for field %s", f->name);
			return -1;
		}
		slot = (char *) base + f->off;

		switch (f->kind) {
		case K_UINT: {
			uint64_t v;

			if (parse_u64(val, &v) ||
			    (f->size < 8 && (v >> (8 * f->size)))) {
				out_error(verb, "bad %zu-byte unsigned value "
					  "for %s", f->size, f->name);
				return -1;
			}
			store_uint(slot, f->size, v);
			break;
		}
		case K_SINT: {
			int64_t v;

			if (parse_i64(val, &v) ||
			    (f->size == 4 && (v < INT32_MIN || v > INT32_MAX))) {
				out_error(verb, "bad signed value for %s",
					  f->name);
				return -1;
			}
			if (f->size == 4) {
				int32_t x = (int32_t) v;
				memcpy(slot, &x, 4);
			} else {
				memcpy(slot, &v, 8);
			}
			break;
		}
		case K_STR: {
			char *s;

			if (decode_str(val, &s, &why)) {
				out_error(verb, "field %s: %s", f->name, why);
				return -1;
			}
			free_str((char **) slot);
			*(char **) slot = s;
			break;
		}
		case K_STRV: {
			char *s;
			bool first = !seen[idx];

			if (!strcmp(val, "-") || !strcmp(val, "[]")) {
				if (!first) {
					out_error(verb, "field %s: - and [] "
						  "must be used alone",
						  f->name);
					return -1;
				}
				field_release(f, base);
				if (val[0] == '[')	/* empty, non-NULL */
					*(char ***) slot =
						xcalloc(1, sizeof(char *));
				seen[idx] = true;
				/* mark "closed": a following element errors */
				continue;
			}
			if (!first && !*(char ***) slot) {
				out_error(verb, "field %s: element after -",
					  f->name);
				return -1;
			}
			if (!first && !**(char ***) slot &&
			    *(char ***) slot) {
				out_error(verb, "field %s: element after []",
					  f->name);
				return -1;
			}
			if (decode_str(val, &s, &why)) {
				out_error(verb, "field %s: %s", f->name, why);
				return -1;
			}
			if (!s) {
				out_error(verb, "field %s: bad element",
					  f->name);
				return -1;
			}
			if (first)
				field_release(f, base);
			strv_append(f, base, s);
			break;
		}
		case K_QOS: {
			char *s;
			slurmdb_qos_rec_t **q = (slurmdb_qos_rec_t **) slot;

			if (decode_str(val, &s, &why)) {
				out_error(verb, "field %s: %s", f->name, why);
				return -1;
			}
			field_release(f, base);
			if (s) {
				*q = xmalloc(sizeof(**q));
				(*q)->name = s;
			}
			break;
		}
		}
		seen[idx] = true;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Job records                                                               */
/* ------------------------------------------------------------------------ */

/* Defaults as in slurmctld's _create_job_record() */
static job_record_t *job_new(void)
{
	job_record_t *job = xmalloc(sizeof(*job));

	job->details = xmalloc(sizeof(*job->details));
	job->magic = JOB_MAGIC;
	job->details->magic = DETAILS_MAGIC;
	job->array_task_id = NO_VAL;
	job->site_factor = NICE_OFFSET;
	job->prio_factors = xmalloc(sizeof(priority_factors_object_t));
	job->step_list = list_create(NULL);
	job->requid = -1;
	job->billable_tres = (double) NO_VAL;
	job->job_state = JOB_PENDING;
	job->time_limit = NO_VAL;
	job->details->submit_time = time(NULL);
	job->details->nice = NICE_OFFSET;
	return job;
}

static void hash_del(job_record_t *job);

/* Like slurmctld purging a record: free every field, scribble, free. */
static void job_free(void *x)
{
	job_record_t *job = x;
	host_details_t *d;

	if (!job)
		return;
	hash_del(job);
	d = job->details;
	for (size_t i = 0; i < NFIELDS(job_fields); i++) {
		const field_t *f = &job_fields[i];

		if (f->base == B_JOB)
			field_release(f, job);
		else if (d)
			field_release(f, d);
	}
	if (job->step_list)
		list_destroy(job->step_list);
	xfree(job->prio_factors);
	if (d) {
		memset(d, 0x5a, sizeof(*d));
		xfree(job->details);
	}
	memset(job, 0x5a, sizeof(*job));
	xfree(job);
}

static job_record_t *job_from_args(const char *verb, int argc, char **argv)
{
	job_record_t *job = job_new();
	target_t t = { .job = job };

	if (apply_fields(verb, job_fields, NFIELDS(job_fields), &t, argc,
			 argv)) {
		job_free(job);
		return NULL;
	}
	return job;
}

/*
 * Job id hash chained through job_ptr->job_next, like slurmctld's job_hash.
 * find_job_record() must not lock job_list: plugins call it from inside
 * list_for_each(job_list, ...), which already holds the List's own lock.
 */
#define JOB_HASH_SIZE (1 << 20)   /* slurmctld sizes its hash by MaxJobCount */
static job_record_t *job_hash[JOB_HASH_SIZE];
static pthread_mutex_t hash_mutex = PTHREAD_MUTEX_INITIALIZER;

static void hash_add(job_record_t *job)
{
	uint32_t inx = job->job_id % JOB_HASH_SIZE;

	pthread_mutex_lock(&hash_mutex);
	job->job_next = job_hash[inx];
	job_hash[inx] = job;
	pthread_mutex_unlock(&hash_mutex);
}

static void hash_del(job_record_t *job)
{
	job_record_t **pp;

	pthread_mutex_lock(&hash_mutex);
	for (pp = &job_hash[job->job_id % JOB_HASH_SIZE]; *pp;
	     pp = &(*pp)->job_next)
		if (*pp == job) {
			*pp = job->job_next;
			break;
		}
	job->job_next = NULL;
	pthread_mutex_unlock(&hash_mutex);
}

/* slurmctld API used by plugins */
extern job_record_t *find_job_record(uint32_t job_id)
{
	job_record_t *job;

	pthread_mutex_lock(&hash_mutex);
	for (job = job_hash[job_id % JOB_HASH_SIZE]; job; job = job->job_next)
		if (job->job_id == job_id)
			break;
	pthread_mutex_unlock(&hash_mutex);
	return job;
}

/* Put a record where slurmctld keeps it: job_list + hash. */
static void job_list_add(job_record_t *job)
{
	list_append(job_list, job);
	hash_add(job);
}

static int _match_ptr(void *x, void *key)
{
	return x == key;
}

/* Purge one record: out of job_list (no destructor), then free it. */
static void job_purge(job_record_t *job)
{
	(void) list_remove_first(job_list, _match_ptr, job);
	job_free(job);
}

/* Synthetic but realistic pending job for benchmarks. */
static job_record_t *job_synth(uint32_t i)
{
	static const char *parts[] = { "batch", "gpu", "debug", "long" };
	static const char *qos[] = { "normal", "high", "low" };
	job_record_t *job = job_new();

	job->job_id = 1000000 + i;
	job->user_id = 10000 + (i % 97);
	job->group_id = 10000 + (i % 13);
	job->account = xstrdup_printf("acct%02u", i % 50);
	job->user_name = xstrdup_printf("user%03u", i % 97);
	job->name = xstrdup_printf("sim_job_%u", i);
	job->partition = xstrdup(parts[i % 4]);
	job->comment = (i % 3) ? NULL : xstrdup("synthetic benchmark job");
	job->tres_req_str = xstrdup_printf("1=%u,2=%u,4=1", 1 + i % 64,
					   1024 * (1 + i % 16));
	job->qos_ptr = xmalloc(sizeof(*job->qos_ptr));
	job->qos_ptr->name = xstrdup(qos[i % 3]);
	job->qos_id = 1 + i % 3;
	job->assoc_id = 1 + i % 200;
	job->priority = 1000 + i % 5000;
	job->time_limit = 60 + i % 1440;
	job->job_state = JOB_PENDING;
	job->state_reason = WAIT_PRIORITY;
	job->details->min_cpus = 1 + i % 64;
	job->details->min_nodes = 1;
	job->details->max_nodes = 1 + i % 4;
	job->details->pn_min_memory = 1024 * (1 + i % 16);
	job->details->submit_time = time(NULL) - (i % 86400);
	job->details->work_dir = xstrdup_printf("/home/user%03u", i % 97);
	return job;
}

/* ------------------------------------------------------------------------ */
/* Job write lock + callbacks                                                */
/* ------------------------------------------------------------------------ */

static void emit_deadlock(const char *kind, const char *what,
			  uint32_t job_id, const char *reason)
{
	out_begin();
	out_printf("event %s hook=%s job_id=%u thread=%s reason=%s", kind,
		   what, job_id, tl_in_plugin ? "same" : "other", reason);
	out_end();
	fprintf(stderr, HOST_NAME ": *** DEADLOCK *** %s %s job_id=%u (%s): "
		"real slurmctld would hang here\n", kind, what, job_id, reason);
}

/*
 * Take the job write lock the way slurmctld would, but never hang: a
 * re-entry on a thread that already holds (or bypassed) it, or a wait longer
 * than --deadlock-ms, is reported and the lock is bypassed.  Every call must
 * be paired with job_lock_drop().  Returns 0 (locked) or 1 (bypassed).
 */
int job_lock_take(const char *kind, const char *what, uint32_t job_id)
{
	struct timespec ts;
	int rc, how;

	if (tl_lock_depth >= LOCK_DEPTH_MAX) {
		fprintf(stderr, HOST_NAME ": job lock nesting too deep\n");
		abort();
	}
	if (tl_lock_depth > 0) {
		emit_deadlock(kind, what, job_id, "lock_held_by_this_thread");
		how = LK_BYPASS_REENTRY;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += opt.deadlock_ms / 1000;
		ts.tv_nsec += (long) (opt.deadlock_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		rc = pthread_mutex_timedlock(&job_lock, &ts);
		if (rc)
			emit_deadlock(kind, what, job_id, rc == ETIMEDOUT ?
				      "lock_wait_timeout" : "lock_error");
		how = rc ? LK_BYPASS_TIMEOUT : LK_TAKEN;
	}
	tl_lock_how[tl_lock_depth++] = how;
	return how != LK_TAKEN;
}

void job_lock_drop(void)
{
	if (tl_lock_depth <= 0) {	/* plugin called unlock too often */
		error("%s: unlock of job lock that is not held", HOST_NAME);
		return;
	}
	if (tl_lock_how[--tl_lock_depth] == LK_TAKEN)
		pthread_mutex_unlock(&job_lock);
}

/* slurmctld API: map every lock set that includes the job lock onto ours */
extern void lock_slurmctld(slurmctld_lock_t lock_levels)
{
	if (lock_levels.job == NO_LOCK)
		return;
	if (job_lock_take("lock_deadlock", "lock_slurmctld", 0)) {
		pthread_mutex_lock(&cb_mutex);
		lock_deadlocks++;
		pthread_mutex_unlock(&cb_mutex);
	}
}

extern void unlock_slurmctld(slurmctld_lock_t lock_levels)
{
	if (lock_levels.job == NO_LOCK)
		return;
	job_lock_drop();
}

/* caller holds cb_mutex */
static void pending_add(int hook, uint32_t job_id)
{
	if (pending_cnt == pending_cap) {
		size_t cap = pending_cap ? pending_cap * 2 : 64;
		pending_t *p = realloc(pending, cap * sizeof(*p));

		if (!p) {
			fprintf(stderr, HOST_NAME ": out of memory\n");
			abort();
		}
		pending = p;
		pending_cap = cap;
	}
	pending[pending_cnt].hook = hook;
	pending[pending_cnt].job_id = job_id;
	pending_cnt++;
}

/* caller holds cb_mutex; returns true if an async call was outstanding */
static bool pending_take(int hook, uint32_t job_id)
{
	for (size_t i = 0; i < pending_cnt; i++)
		if (pending[i].hook == hook && pending[i].job_id == job_id) {
			pending[i] = pending[--pending_cnt];
			return true;
		}
	return false;
}

/*
 * The daemon's side of prep_callbacks_t: like prep_prolog_slurmctld_callback
 * it first takes the job write lock.
 */
static void callback_common(int hook, int rc, uint32_t job_id,
			    bool timed_out)
{
	bool same = tl_in_plugin;
	int bypass = job_lock_take("callback_deadlock", hook_names[hook],
				   job_id);
	bool expected;

	pthread_mutex_lock(&cb_mutex);
	expected = cb_quiet ? true : pending_take(hook, job_id);
	if (bypass)
		cb_deadlocks++;
	if (!expected)
		cb_unexpected++;
	cb_total++;
	if (!cb_quiet) {
		out_begin();
		out_printf("event callback hook=%s job_id=%u rc=%d "
			   "timed_out=%d thread=%s deadlock=%d expected=%d "
			   "seq=%" PRIu64, hook_names[hook], job_id, rc,
			   timed_out ? 1 : 0, same ? "same" : "other",
			   bypass, expected ? 1 : 0, cb_total);
		out_end();
	}
	pthread_cond_broadcast(&cb_cond);
	pthread_mutex_unlock(&cb_mutex);
	debug("%s: %s callback JobId=%u rc=%d timed_out=%d", HOST_NAME,
	      hook_names[hook], job_id, rc, timed_out);
	job_lock_drop();
}

static void host_prolog_slurmctld_cb(int rc, uint32_t job_id, bool timed_out)
{
	callback_common(HOOK_PROLOG_SLURMCTLD, rc, job_id, timed_out);
}

static void host_epilog_slurmctld_cb(int rc, uint32_t job_id, bool timed_out)
{
	callback_common(HOOK_EPILOG_SLURMCTLD, rc, job_id, timed_out);
}

static prep_callbacks_t host_callbacks;

/* slurmctld exports its callbacks under these names (nm -D slurmctld): a
 * plugin that was never given callbacks (22.05 re-inits a plugin added by
 * a reconfigure with NULL) can still answer through them. */
extern void prep_prolog_slurmctld_callback(int rc, uint32_t job_id,
					   bool timed_out)
{
	host_prolog_slurmctld_cb(rc, job_id, timed_out);
}

extern void prep_epilog_slurmctld_callback(int rc, uint32_t job_id,
					   bool timed_out)
{
	host_epilog_slurmctld_cb(rc, job_id, timed_out);
}

/* ------------------------------------------------------------------------ */
/* slurmctld / slurmd internals that prep/script references                  */
/* ------------------------------------------------------------------------ */

/* Port of slurmctld's job_mgr.c job_common_env_vars() (22.05), minus the
 * parts that need records the host does not model (het_job_list,
 * job_resrcs, part_ptr, resv_ptr). */
extern char **job_common_env_vars(job_record_t *job_ptr, bool is_complete)
{
	char **my_env, *name;

	my_env = xmalloc(sizeof(char *));
	my_env[0] = NULL;

	if (job_ptr->spank_job_env_size) {
		env_array_merge(&my_env,
				(const char **) job_ptr->spank_job_env);
		valid_spank_job_env(my_env, job_ptr->spank_job_env_size,
				    job_ptr->user_id);
	}
	setenvf(&my_env, "SLURM_JOB_ACCOUNT", "%s", job_ptr->account);
	if (is_complete) {
		int exit_code = 0, signal = 0;

		if (WIFEXITED(job_ptr->exit_code))
			exit_code = WEXITSTATUS(job_ptr->exit_code);
		if (WIFSIGNALED(job_ptr->exit_code))
			signal = WTERMSIG(job_ptr->exit_code);
		setenvf(&my_env, "SLURM_JOB_DERIVED_EC", "%u",
			job_ptr->derived_ec);
		setenvf(&my_env, "SLURM_JOB_EXIT_CODE2", "%d:%d", exit_code,
			signal);
		setenvf(&my_env, "SLURM_JOB_EXIT_CODE", "%u",
			job_ptr->exit_code);
	}
	if (job_ptr->array_task_id != NO_VAL) {
		setenvf(&my_env, "SLURM_ARRAY_JOB_ID", "%u",
			job_ptr->array_job_id);
		setenvf(&my_env, "SLURM_ARRAY_TASK_ID", "%u",
			job_ptr->array_task_id);
	}
	if (slurm_conf.cluster_name)
		setenvf(&my_env, "SLURM_CLUSTER_NAME", "%s",
			slurm_conf.cluster_name);
	if (job_ptr->comment)
		setenvf(&my_env, "SLURM_JOB_COMMENT", "%s", job_ptr->comment);
	if (job_ptr->het_job_id) {
		setenvf(&my_env, "SLURM_PACK_JOB_ID", "%u",
			job_ptr->het_job_id);
		setenvf(&my_env, "SLURM_PACK_JOB_OFFSET", "%u",
			job_ptr->het_job_offset);
		setenvf(&my_env, "SLURM_HET_JOB_ID", "%u",
			job_ptr->het_job_id);
		setenvf(&my_env, "SLURM_HET_JOB_OFFSET", "%u",
			job_ptr->het_job_offset);
	}
	setenvf(&my_env, "SLURM_JOB_GID", "%u", job_ptr->group_id);
	name = gid_to_string((gid_t) job_ptr->group_id);
	setenvf(&my_env, "SLURM_JOB_GROUP", "%s", name);
	xfree(name);
	setenvf(&my_env, "SLURM_JOBID", "%u", job_ptr->job_id);
	setenvf(&my_env, "SLURM_JOB_ID", "%u", job_ptr->job_id);
	if (job_ptr->licenses)
		setenvf(&my_env, "SLURM_JOB_LICENSES", "%s", job_ptr->licenses);
	setenvf(&my_env, "SLURM_JOB_NAME", "%s", job_ptr->name);
	setenvf(&my_env, "SLURM_JOB_NODELIST", "%s", job_ptr->nodes);
	setenvf(&my_env, "SLURM_JOB_PARTITION", "%s", job_ptr->partition);
	setenvf(&my_env, "SLURM_JOB_RESTART_COUNT", "%d", job_ptr->restart_cnt);
	setenvf(&my_env, "SLURM_JOB_UID", "%u", job_ptr->user_id);
	name = uid_to_string((uid_t) job_ptr->user_id);
	setenvf(&my_env, "SLURM_JOB_USER", "%s", name);
	xfree(name);
	if (job_ptr->wckey)
		setenvf(&my_env, "SLURM_WCKEY", "%s", job_ptr->wckey);
	if (job_ptr->details) {
		host_details_t *d = job_ptr->details;

		if (d->features_use)
			setenvf(&my_env, "SLURM_JOB_CONSTRAINTS", "%s",
				d->features_use);
		if (d->std_err)
			setenvf(&my_env, "SLURM_JOB_STDERR", "%s", d->std_err);
		if (d->std_in)
			setenvf(&my_env, "SLURM_JOB_STDIN", "%s", d->std_in);
		if (d->std_out)
			setenvf(&my_env, "SLURM_JOB_STDOUT", "%s", d->std_out);
		if (d->work_dir)
			setenvf(&my_env, "SLURM_JOB_WORK_DIR", "%s",
				d->work_dir);
	}
	return my_env;
}

typedef struct {
	uint32_t job_id;
	bool is_epilog;
	char *script;
	char **env;
} script_req_t;

/*
 * Fake slurmscriptd: run the script with run_command() like slurmscriptd's
 * _run_script(), then call the controller's callback directly (slurmscriptd
 * calls prep_{pro,epi}log_slurmctld_callback(), not the plugin's pointers).
 */
static void *script_thread(void *arg)
{
	script_req_t *req = arg;
	char *argv[2] = { req->script, NULL };
	int status = SLURM_ERROR, timeout = HOST_SCRIPT_TIMEOUT(req->is_epilog);
	bool timed_out = false;
	run_command_args_t args = {
		.env = req->env,
		.job_id = req->job_id,
		.script_argv = argv,
		.script_path = req->script,
		.script_type = req->is_epilog ? "EpilogSlurmctld" :
					       "PrologSlurmctld",
		.status = &status,
		.timed_out = &timed_out,
	};
	char *resp;

	args.max_wait = ((timeout <= 0) || (timeout == NO_VAL16)) ?
		-1 : timeout * 1000;
	resp = run_command(&args);
	if (status)
		error("%s: JobId=%u %s exit status %u:%u", HOST_NAME,
		      req->job_id, args.script_type, WEXITSTATUS(status),
		      WTERMSIG(status));
	debug("%s: %s JobId=%u output: %s", HOST_NAME, args.script_type,
	      req->job_id, resp ? resp : "");
	xfree(resp);
	if (req->is_epilog)
		host_epilog_slurmctld_cb(status, req->job_id, timed_out);
	else
		host_prolog_slurmctld_cb(status, req->job_id, timed_out);
	xfree(req->script);
	env_array_free(req->env);
	xfree(req);
	return NULL;
}

extern void slurmscriptd_run_prepilog(uint32_t job_id, bool is_epilog,
				      char *script, char **env)
{
	script_req_t *req = xmalloc(sizeof(*req));
	script_thread_t *st = xmalloc_checked(sizeof(*st));

	req->job_id = job_id;
	req->is_epilog = is_epilog;
	req->script = xstrdup(script);
	req->env = env_array_copy((const char **) env);
	pthread_mutex_lock(&script_mutex);
	if (pthread_create(&st->tid, NULL, script_thread, req)) {
		pthread_mutex_unlock(&script_mutex);
		error("%s: pthread_create: %m", HOST_NAME);
		xfree(req->script);
		env_array_free(req->env);
		xfree(req);
		free(st);
		return;
	}
	st->next = script_threads;
	script_threads = st;
	scripts_started++;
	pthread_mutex_unlock(&script_mutex);
}

static void join_script_threads(void)
{
	for (;;) {
		script_thread_t *st;

		pthread_mutex_lock(&script_mutex);
		st = script_threads;
		if (st)
			script_threads = st->next;
		pthread_mutex_unlock(&script_mutex);
		if (!st)
			return;
		pthread_join(st->tid, NULL);
		free(st);
	}
}

/* slurmd internals (only reached when spank prolog/epilog plugins exist) */
extern int container_g_join(uint32_t job_id, uid_t uid)
{
	debug("%s: container_g_join(%u, %u): no-op", HOST_NAME, job_id, uid);
	return SLURM_SUCCESS;
}

/*
 * slurmctld's side of drain.c's two RPCs (the host has no slurmctld):
 * `node_draining=1` (request `set`) makes this node read as already
 * draining; every update_node request is an event:
 *   event update_node node=<s> state=<u> reason=<s> uid=<u>
 * Defined here, they take the place of libslurmfull's (-rdynamic).
 */
static int host_node_draining;

extern int slurm_load_node_single(node_info_msg_t **resp, char *node_name,
				  uint16_t show_flags)
{
	node_info_msg_t *m = xmalloc(sizeof(*m));

	(void)show_flags;
	m->record_count = 1;
	m->node_array = xcalloc(1, sizeof(node_info_t));
	m->node_array[0].name = xstrdup(node_name);
	m->node_array[0].node_state = NODE_STATE_IDLE |
		(host_node_draining ? NODE_STATE_DRAIN : 0);
	if (host_node_draining)
		m->node_array[0].reason = xstrdup("maintenance by the admin");
	*resp = m;
	return SLURM_SUCCESS;
}

/* frees what the slurm_load_node_single() above made (libslurmfull's
 * would load the select plugin for select_nodeinfo) */
extern void slurm_free_node_info_msg(node_info_msg_t *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->record_count; i++) {
		xfree(m->node_array[i].name);
		xfree(m->node_array[i].reason);
	}
	xfree(m->node_array);
	xfree(m);
}

extern int slurm_update_node(update_node_msg_t *msg)
{
#if SPM_UPDATE_NODE_REASON_UID
	uid_t uid = msg->reason_uid;
#else
	uid_t uid = getuid();          /* 26.05: the RPC's own uid */
#endif
	out_begin();
	out_printf("event update_node state=%u uid=%u", msg->node_state,
		   (unsigned)uid);
	out_str("node", msg->node_names);
	out_str("reason", msg->reason);
	out_end();
	return SLURM_SUCCESS;
}

extern int send_slurmd_conf_lite(int fd, slurmd_conf_t *cf)
{
	error("%s: send_slurmd_conf_lite() is not supported", HOST_NAME);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Plugin loading (mirrors src/common/plugin.c)                              */
/* ------------------------------------------------------------------------ */

static const char *plugin_err_str(int e)
{
	switch (e) {
	case HOST_EPLUGIN_SUCCESS: return "Success";
	case HOST_EPLUGIN_NOTFOUND: return "Plugin file not found";
	case HOST_EPLUGIN_ACCESS_ERROR: return "Plugin access denied";
	case HOST_EPLUGIN_DLOPEN_FAILED: return "Dlopen of plugin file failed";
	case HOST_EPLUGIN_INIT_FAILED: return "Plugin init() callback failed";
	case HOST_EPLUGIN_MISSING_NAME:
		return "Plugin name/type/version symbol missing";
	case HOST_EPLUGIN_BAD_VERSION: return "Incompatible plugin version";
	}
	return "Unknown error";
}

typedef struct {
	const char *name;
	size_t off;	/* offset of the pointer inside plug */
} sym_t;

static const sym_t prep_syms[] = {
	{ "prep_p_register_callbacks", offsetof(typeof(plug),
						 register_callbacks) },
	{ "prep_p_prolog", offsetof(typeof(plug), prolog) },
	{ "prep_p_epilog", offsetof(typeof(plug), epilog) },
	{ "prep_p_prolog_slurmctld", offsetof(typeof(plug), prolog_slurmctld) },
	{ "prep_p_epilog_slurmctld", offsetof(typeof(plug), epilog_slurmctld) },
	{ "prep_p_required", offsetof(typeof(plug), required) },
};

static const sym_t site_syms[] = {
	{ "site_factor_p_reconfig", offsetof(typeof(plug), sf_reconfig) },
	{ "site_factor_p_set", offsetof(typeof(plug), sf_set) },
	{ "site_factor_p_update", offsetof(typeof(plug), sf_update) },
};

static const sym_t js_syms[] = {
	{ "job_submit", offsetof(typeof(plug), js_submit) },
	{ "job_modify", offsetof(typeof(plug), js_modify) },
};

/* jobcomp: up to 22.05 set_location(char *JobCompLoc), from 23.02
 * set_location(void); up to 24.11 log_record(job), from 25.05
 * record_job_end(job, event) and record_job_start(job, event). */
#if SPM_JC_HAS_JOB_START
#define HOST_JC_END_SYM "jobcomp_p_record_job_end"
typedef int (*host_jc_record_fn)(job_record_t *job_ptr, uint32_t event);
#define HOST_JC_CALL(fn, job, hook) ((host_jc_record_fn)(fn))((job), (hook))
#else
#define HOST_JC_END_SYM "jobcomp_p_log_record"
typedef int (*host_jc_record_fn)(job_record_t *job_ptr);
#define HOST_JC_CALL(fn, job, hook) ((host_jc_record_fn)(fn))((job))
#endif
#if SPM_SLURM_AT_LEAST(23, 2)
#define HOST_JC_SET_LOCATION(fn) ((int (*)(void))(fn))()
#else
#define HOST_JC_SET_LOCATION(fn) ((int (*)(char *))(fn))(NULL)
#endif

static const sym_t jc_syms[] = {
	{ "jobcomp_p_set_location", offsetof(typeof(plug), jc_set_location) },
	{ HOST_JC_END_SYM, offsetof(typeof(plug), jc_end) },
	{ "jobcomp_p_get_jobs", offsetof(typeof(plug), jc_get_jobs) },
#if SPM_JC_HAS_JOB_START
	{ "jobcomp_p_record_job_start", offsetof(typeof(plug), jc_start) },
#endif
};

static void plug_reset(void)
{
	memset(&plug, 0, sizeof(plug));
}

/* fini() + dlclose() like plugin_unload(); returns whether still mapped */
static int plug_unload(bool *fini_ran, int *fini_rc)
{
	int (*fini)(void);
	void *h;

	*fini_ran = false;
	*fini_rc = 0;
	if (!plug.handle)
		return 0;
	if (!plug.fini_called && (fini = dlsym(plug.handle, "fini"))) {
		tl_in_plugin = 1;
		*fini_rc = fini();
		tl_in_plugin = 0;
		*fini_ran = true;
	}
	dlclose(plug.handle);
	plug_reset();
	/* Did the object really go away?  (NODELETE, pinned, ...) */
	h = dlopen(opt.plugin, RTLD_LAZY | RTLD_NOLOAD);
	if (h) {
		dlclose(h);
		return 1;
	}
	return 0;
}

static void cmd_load_common(const char *verb, bool now)
{
	void *h;
	const char *name, *type, *derr;
	uint32_t *version;
	int (*init)(void);
	int rc = HOST_EPLUGIN_SUCCESS, init_rc = 0;
	uint64_t t0, init_ns = 0;
	const sym_t *syms = NULL;
	size_t nsyms = 0, missing = 0;
	char missing_list[1024] = "";
	enum family fam = FAM_NONE;

	(void) dlerror();
	h = dlopen(opt.plugin, now ? RTLD_NOW : RTLD_LAZY);
	if (!h) {
		derr = dlerror();
		error("plugin_load_from_file: dlopen(%s): %s", opt.plugin,
		      derr ? derr : "?");
		out_begin();
		out_printf("ok %s rc=%d", verb, HOST_EPLUGIN_DLOPEN_FAILED);
		out_str("err", plugin_err_str(HOST_EPLUGIN_DLOPEN_FAILED));
		out_str("dlerror", derr);
		out_end();
		return;
	}
	name = dlsym(h, "plugin_name");
	type = dlsym(h, "plugin_type");
	version = dlsym(h, "plugin_version");
	if (!name || !type || !version) {
		rc = HOST_EPLUGIN_MISSING_NAME;
	} else if ((*version & 0xffffff) != (SLURM_VERSION_NUMBER & 0xffffff)) {
		info("%s: Incompatible Slurm plugin %s version (%d.%02d.%d)",
		     HOST_NAME, opt.plugin, SLURM_VERSION_MAJOR(*version),
		     SLURM_VERSION_MINOR(*version),
		     SLURM_VERSION_MICRO(*version));
		rc = HOST_EPLUGIN_BAD_VERSION;
	}
	if (rc != HOST_EPLUGIN_SUCCESS) {
		out_begin();
		out_printf("ok %s rc=%d", verb, rc);
		out_str("err", plugin_err_str(rc));
		out_str("name", name);
		out_str("type", type);
		if (version)
			out_printf(" version=%u", *version);
		else
			out_printf(" version=-");
		out_end();
		dlclose(h);
		return;
	}
	if (!strncmp(type, "prep/", 5)) {
		fam = FAM_PREP;
		syms = prep_syms;
		nsyms = NFIELDS(prep_syms);
	} else if (!strncmp(type, "site_factor/", 12)) {
		fam = FAM_SITE_FACTOR;
		syms = site_syms;
		nsyms = NFIELDS(site_syms);
	} else if (!strncmp(type, "job_submit/", 11)) {
		fam = FAM_JOB_SUBMIT;
		syms = js_syms;
		nsyms = NFIELDS(js_syms);
	} else if (!strncmp(type, "jobcomp/", 8)) {
		fam = FAM_JOBCOMP;
		syms = jc_syms;
		nsyms = NFIELDS(jc_syms);
	}

	if ((init = dlsym(h, "init"))) {
		tl_in_plugin = 1;
		t0 = now_ns();
		init_rc = init();
		init_ns = now_ns() - t0;
		tl_in_plugin = 0;
		if (init_rc) {
			rc = HOST_EPLUGIN_INIT_FAILED;
			out_begin();
			out_printf("ok %s rc=%d", verb, rc);
			out_str("err", plugin_err_str(rc));
			out_str("name", name);
			out_str("type", type);
			out_printf(" version=%u init_rc=%d init_us=%" PRIu64,
				   *version, init_rc, init_ns / 1000);
			out_end();
			dlclose(h);
			return;
		}
	}

	plug_reset();
	plug.handle = h;
	plug.family = fam;
	plug.type = type;
	plug.fini = (void (*)(void)) dlsym(h, "fini");
	for (size_t i = 0; i < nsyms; i++) {
		void *p = dlsym(h, syms[i].name);

		memcpy((char *) &plug + syms[i].off, &p, sizeof(p));
		if (!p) {
			missing++;
			if (strlen(missing_list) + strlen(syms[i].name) + 2 <
			    sizeof(missing_list)) {
				if (missing_list[0])
					strcat(missing_list, ",");
				strcat(missing_list, syms[i].name);
			}
		}
	}
	if (missing)	/* slurm: fatal("...missing symbols...") */
		error("%s: Plugin loading failed due to missing symbols (%s). "
		      "Plugin is corrupted.", HOST_NAME, missing_list);
	/* jobcomp_g_init(): init(), then set_location() */
	if (fam == FAM_JOBCOMP && plug.jc_set_location) {
		tl_in_plugin = 1;
		init_rc = HOST_JC_SET_LOCATION(plug.jc_set_location);
		tl_in_plugin = 0;
	}

	out_begin();
	out_printf("ok %s rc=0", verb);
	out_str("err", plugin_err_str(0));
	out_str("name", name);
	out_str("type", type);
	out_printf(" version=%u family=%s init_rc=%d init_us=%" PRIu64
		   " has_init=%d has_fini=%d missing=%zu", *version,
		   fam == FAM_PREP ? "prep" :
		   fam == FAM_SITE_FACTOR ? "site_factor" :
		   fam == FAM_JOB_SUBMIT ? "job_submit" :
		   fam == FAM_JOBCOMP ? "jobcomp" : "unknown",
		   init_rc, init_ns / 1000, init ? 1 : 0, plug.fini ? 1 : 0,
		   missing);
	out_str("missing_syms", missing ? missing_list : NULL);
	out_end();
}

/* ------------------------------------------------------------------------ */
/* Option parsing for non-field commands                                     */
/* ------------------------------------------------------------------------ */

/* kopt_t: spm_host.h */
int parse_opts(const char *verb, int argc, char **argv, kopt_t *o, size_t n)
{
	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		kopt_t *k = NULL;

		if (!eq) {
			out_error(verb, "expected key=value, got %s", argv[i]);
			return -1;
		}
		for (size_t j = 0; j < n; j++)
			if (!strncmp(o[j].key, argv[i], eq - argv[i]) &&
			    !o[j].key[eq - argv[i]])
				k = &o[j];
		if (!k) {
			*eq = '\0';
			out_error(verb, "unknown option %s", argv[i]);
			*eq = '=';
			return -1;
		}
		if (k->present) {
			out_error(verb, "duplicate option %s", k->key);
			return -1;
		}
		k->present = true;
		if (k->kind == 'u') {
			if (parse_u64(eq + 1, &k->u)) {
				out_error(verb, "bad number for %s", k->key);
				return -1;
			}
		} else {
			k->w = eq + 1;
		}
	}
	for (size_t j = 0; j < n; j++)
		if (o[j].required && !o[j].present) {
			out_error(verb, "missing option %s", o[j].key);
			return -1;
		}
	return 0;
}

static int no_args(const char *verb, int argc)
{
	if (argc) {
		out_error(verb, "takes no arguments");
		return -1;
	}
	return 0;
}

int need_family(const char *verb, enum family fam)
{
	if (!plug.handle) {
		out_error(verb, "not_loaded");
		return -1;
	}
	if (plug.family != fam) {
		out_error(verb, "wrong_family plugin is not %s",
			  fam == FAM_PREP ? "prep" :
			  fam == FAM_SITE_FACTOR ? "site_factor" :
			  fam == FAM_JOB_SUBMIT ? "job_submit" : "jobcomp");
		return -1;
	}
	return 0;
}

int need_sym(const char *verb, const void *p, const char *sym)
{
	if (!p) {
		out_error(verb, "missing_symbol %s", sym);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                  */
/* ------------------------------------------------------------------------ */

static void cmd_conf(const char *verb, int argc, char **argv)
{
	target_t t = { 0 };

	if (apply_fields(verb, conf_fields, NFIELDS(conf_fields), &t, argc,
			 argv))
		return;
	out_begin();
	out_printf("ok %s n=%d", verb, argc);
	out_end();
}

static void cmd_dconf(const char *verb, int argc, char **argv)
{
	target_t t = { 0 };

	if (apply_fields(verb, dconf_fields, NFIELDS(dconf_fields), &t, argc,
			 argv))
		return;
	out_begin();
	out_printf("ok %s n=%d", verb, argc);
	out_end();
}

static void cmd_load(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "now", 'u' } };

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)))
		return;
	if (plug.handle) {
		out_error(verb, "already_loaded");
		return;
	}
	cmd_load_common(verb, o[0].present && o[0].u);
}

static void cmd_unload(const char *verb, int argc, char **argv)
{
	bool fini_ran;
	int fini_rc, resident;
	enum family fam = plug.family;

	if (no_args(verb, argc))
		return;
	if (!plug.handle) {
		out_error(verb, "not_loaded");
		return;
	}
	resident = plug_unload(&fini_ran, &fini_rc);
	out_begin();
	out_printf("ok %s fini=%d", verb, fini_ran ? 1 : 0);
	if (fini_ran && fam == FAM_SITE_FACTOR)
		out_printf(" fini_rc=%d", fini_rc);
	else
		out_printf(" fini_rc=-");
	out_printf(" resident=%d", resident);
	out_end();
}

/* like prep_g_reconfig() on a PrEpPlugins change: destroy + init(NULL) */
static void cmd_reload(const char *verb, int argc, char **argv)
{
	bool fini_ran = false;
	int fini_rc = 0, resident = 0;

	if (no_args(verb, argc))
		return;
	if (plug.handle)
		resident = plug_unload(&fini_ran, &fini_rc);
	out_begin();
	out_printf("row unloaded fini=%d resident=%d", fini_ran ? 1 : 0,
		   resident);
	out_end();
	cmd_load_common(verb, false);
}

static void cmd_fini(const char *verb, int argc, char **argv)
{
	int rc = 0;
	int (*fini)(void);

	if (no_args(verb, argc))
		return;
	if (!plug.handle) {
		out_error(verb, "not_loaded");
		return;
	}
	fini = (int (*)(void)) plug.fini;
	if (fini) {
		tl_in_plugin = 1;
		rc = fini();
		tl_in_plugin = 0;
	}
	plug.fini_called = true;
	out_begin();
	out_printf("ok %s called=%d", verb, fini ? 1 : 0);
	if (fini && plug.family == FAM_SITE_FACTOR)
		out_printf(" rc=%d", rc);
	else
		out_printf(" rc=-");
	out_end();
}

static void cmd_callbacks(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "prolog", 'u' }, { "epilog", 'u' } };

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)) ||
	    need_family(verb, FAM_PREP) ||
	    need_sym(verb, plug.register_callbacks,
		     "prep_p_register_callbacks"))
		return;
	host_callbacks.prolog_slurmctld =
		(!o[0].present || o[0].u) ? host_prolog_slurmctld_cb : NULL;
	host_callbacks.epilog_slurmctld =
		(!o[1].present || o[1].u) ? host_epilog_slurmctld_cb : NULL;
	tl_in_plugin = 1;
	plug.register_callbacks(&host_callbacks);
	tl_in_plugin = 0;
	out_begin();
	out_printf("ok %s prolog=%d epilog=%d", verb,
		   host_callbacks.prolog_slurmctld ? 1 : 0,
		   host_callbacks.epilog_slurmctld ? 1 : 0);
	out_end();
}

static void cmd_required(const char *verb, int argc, char **argv)
{
	static const char *names[PREP_CALL_CNT] = {
		"register_callbacks", "prolog", "epilog", "prolog_slurmctld",
		"epilog_slurmctld"
	};
	bool val[PREP_CALL_CNT];
	unsigned unset_mask = 0;

	if (no_args(verb, argc) || need_family(verb, FAM_PREP) ||
	    need_sym(verb, plug.required, "prep_p_required"))
		return;
	tl_in_plugin = 1;
	for (int j = 0; j < PREP_CALL_CNT; j++) {
		bool a = false, b = true;

		plug.required(j, &a);	/* as prep_g_init() does */
		plug.required(j, &b);	/* detect "never written" */
		val[j] = a;
		if (a != b)
			unset_mask |= 1U << j;
	}
	tl_in_plugin = 0;
	out_begin();
	out_printf("ok %s", verb);
	for (int j = 0; j < PREP_CALL_CNT; j++)
		out_printf(" %s=%d", names[j], val[j] ? 1 : 0);
	out_printf(" unset_mask=%u", unset_mask);
	out_end();
}

/* prolog_slurmctld / epilog_slurmctld */
static void cmd_ctld_hook(const char *verb, int argc, char **argv)
{
	int hook = strcmp(verb, "prolog_slurmctld") ?
		HOOK_EPILOG_SLURMCTLD : HOOK_PROLOG_SLURMCTLD;
	int (*fn)(job_record_t *, bool *);
	job_record_t *job;
	bool async = false;
	int rc, bypass;
	uint32_t job_id;
	uint64_t t0, dt;

	if (need_family(verb, FAM_PREP))
		return;
	fn = (hook == HOOK_PROLOG_SLURMCTLD) ? plug.prolog_slurmctld :
					       plug.epilog_slurmctld;
	if (need_sym(verb, fn, hook == HOOK_PROLOG_SLURMCTLD ?
		     "prep_p_prolog_slurmctld" : "prep_p_epilog_slurmctld"))
		return;
	if (!(job = job_from_args(verb, argc, argv)))
		return;
	job_id = job->job_id;

	bypass = job_lock_take("lock_deadlock", verb, job_id);
	job_list_add(job);	/* findable during the call, as in slurmctld */
	tl_in_plugin = 1;
	t0 = now_ns();
	rc = fn(job, &async);
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	if (async) {	/* prep_g_*: job_ptr->prep_*_cnt++ */
		pthread_mutex_lock(&cb_mutex);
		pending_add(hook, job_id);
		pthread_mutex_unlock(&cb_mutex);
	}
	/* The record may be purged right away: catch plugins keeping it. */
	job_purge(job);
	job_lock_drop();

	out_begin();
	out_printf("ok %s job_id=%u rc=%d async=%d us=%" PRIu64 " ns=%"
		   PRIu64 " lock_bypassed=%d", verb, job_id, rc, async ? 1 : 0,
		   dt / 1000, dt, bypass);
	out_end();
}

/* jc_end / jc_start <job fields>: a job finished (started), as
 * job_completion_logger() calls jobcomp: under the job write lock; the
 * record is purged right after (catches a plugin that keeps it). */
static void cmd_jc(const char *verb, int argc, char **argv)
{
	bool start = !strcmp(verb, "jc_start");
	void *fn;
	job_record_t *job;
	int rc, bypass;
	uint32_t job_id;
	uint64_t t0, dt;

	if (need_family(verb, FAM_JOBCOMP))
		return;
	fn = start ? plug.jc_start : plug.jc_end;
	if (need_sym(verb, fn, start ? "jobcomp_p_record_job_start" :
		     HOST_JC_END_SYM))
		return;
	if (!(job = job_from_args(verb, argc, argv)))
		return;
	job_id = job->job_id;
	bypass = job_lock_take("lock_deadlock", verb, job_id);
	job_list_add(job);
	tl_in_plugin = 1;
	t0 = now_ns();
	rc = HOST_JC_CALL(fn, job, start ? 2 : 1);   /* JOBCOMP_EVENT_JOB_* */
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	job_purge(job);
	job_lock_drop();
	out_begin();
	out_printf("ok %s job_id=%u rc=%d us=%" PRIu64 " lock_bypassed=%d",
		   verb, job_id, rc, dt / 1000, bypass);
	out_end();
}

/* jc_reconfig: slurmctld's reconfigure (set_location() again). */
static void cmd_jc_reconfig(const char *verb, int argc, char **argv)
{
	int rc;

	if (no_args(verb, argc) || need_family(verb, FAM_JOBCOMP) ||
	    need_sym(verb, plug.jc_set_location, "jobcomp_p_set_location"))
		return;
	tl_in_plugin = 1;
	rc = HOST_JC_SET_LOCATION(plug.jc_set_location);
	tl_in_plugin = 0;
	out_begin();
	out_printf("ok %s rc=%d", verb, rc);
	out_end();
}

static void env_free_owned(host_env_t *owned)
{
	free_str(&owned->user_name);
	free_str(&owned->env.partition);
	free_str(&owned->env.node_list);
	free_str(&owned->env.node_aliases);
	free_str(&owned->env.work_dir);
	free_strv(owned->env.spank_job_env);
	free_strv(owned->env.gres_job_env);
}

/* prolog / epilog (slurmd side) */
static void cmd_d_hook(const char *verb, int argc, char **argv)
{
	bool is_epilog = !strcmp(verb, "epilog");
	int (*fn)(job_env_t *, slurm_cred_t *);
	host_env_t env = { 0 }, owned;
	target_t t = { .env = &env };
	uint64_t t0, dt;
	int rc;

	if (need_family(verb, FAM_PREP))
		return;
	fn = is_epilog ? plug.epilog : plug.prolog;
	if (need_sym(verb, fn, is_epilog ? "prep_p_epilog" : "prep_p_prolog"))
		return;
	if (apply_fields(verb, env_fields, NFIELDS(env_fields), &t, argc,
			 argv)) {
		env_free_owned(&env);
		return;
	}
	/* slurmd owns these buffers, not job_env: keep our own copy */
	owned = env;
	host_env_attach_user(&env);
	tl_in_plugin = 1;
	t0 = now_ns();
	rc = fn(&env.env, env.cred);
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	host_env_detach_user(&env);
	env_free_owned(&owned);

	out_begin();
	out_printf("ok %s job_id=%u rc=%d us=%" PRIu64 " ns=%" PRIu64, verb,
		   HOST_ENV_JOBID(&owned.env), rc, dt / 1000, dt);
	out_end();
}

static void cmd_wait_callbacks(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "n", 'u', true }, { "timeout_ms", 'u' } };
	struct timespec ts;
	uint64_t got, tmo;
	int waited = 1;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)))
		return;
	tmo = o[1].present ? o[1].u : 10000;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += tmo / 1000;
	ts.tv_nsec += (long) (tmo % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cb_mutex);
	while (cb_total < o[0].u) {
		if (pthread_cond_timedwait(&cb_cond, &cb_mutex, &ts) ==
		    ETIMEDOUT && cb_total < o[0].u) {
			waited = 0;
			break;
		}
	}
	got = cb_total;
	out_begin();	/* still under cb_mutex: ordered after events */
	out_printf("ok %s waited=%d got=%" PRIu64 " want=%" PRIu64, verb,
		   waited, got, o[0].u);
	out_end();
	pthread_mutex_unlock(&cb_mutex);
}

static void cmd_site_set(const char *verb, int argc, char **argv)
{
	job_record_t *job;
	uint64_t t0, dt;
	uint32_t before, job_id;
	int bypass;

	if (need_family(verb, FAM_SITE_FACTOR) ||
	    need_sym(verb, plug.sf_set, "site_factor_p_set"))
		return;
	if (!(job = job_from_args(verb, argc, argv)))
		return;
	before = job->site_factor;
	job_id = job->job_id;
	bypass = job_lock_take("lock_deadlock", verb, job_id);
	job_list_add(job);
	tl_in_plugin = 1;
	t0 = now_ns();
	plug.sf_set(job);
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	out_begin();
	out_printf("ok %s job_id=%u site_factor=%u before=%u us=%" PRIu64
		   " ns=%" PRIu64 " slurm_warn=%d lock_bypassed=%d", verb,
		   job_id, job->site_factor, before, dt / 1000, dt,
		   dt > 50000000ULL, bypass);
	out_end();
	job_purge(job);
	job_lock_drop();
}

static void cmd_site_update(const char *verb, int argc, char **argv)
{
	uint64_t t0, dt;
	host_itr_t it;
	job_record_t *job;
	int bypass, n = 0;

	if (no_args(verb, argc) || need_family(verb, FAM_SITE_FACTOR) ||
	    need_sym(verb, plug.sf_update, "site_factor_p_update"))
		return;
	bypass = job_lock_take("lock_deadlock", verb, 0);
	tl_in_plugin = 1;
	t0 = now_ns();
	plug.sf_update();
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	it = list_iterator_create(job_list);
	while ((job = list_next(it))) {
		out_begin();
		out_printf("row site_factor job_id=%u value=%u", job->job_id,
			   job->site_factor);
		out_end();
		n++;
	}
	list_iterator_destroy(it);
	job_lock_drop();
	out_begin();
	out_printf("ok %s n=%d us=%" PRIu64 " ns=%" PRIu64 " slurm_warn=%d "
		   "lock_bypassed=%d", verb, n, dt / 1000, dt,
		   dt > 50000000ULL, bypass);
	out_end();
}

static void cmd_site_reconfig(const char *verb, int argc, char **argv)
{
	uint64_t t0, dt;

	if (no_args(verb, argc) || need_family(verb, FAM_SITE_FACTOR) ||
	    need_sym(verb, plug.sf_reconfig, "site_factor_p_reconfig"))
		return;
	tl_in_plugin = 1;
	t0 = now_ns();
	plug.sf_reconfig();
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	out_begin();
	out_printf("ok %s us=%" PRIu64 " ns=%" PRIu64 " slurm_warn=%d", verb,
		   dt / 1000, dt, dt > 500000000ULL);
	out_end();
}

static void cmd_jobs_add(const char *verb, int argc, char **argv)
{
	job_record_t *job;
	uint32_t job_id;
	int n;

	if (!(job = job_from_args(verb, argc, argv)))
		return;
	job_id = job->job_id;
	job_lock_take("lock_deadlock", verb, job_id);
	job_list_add(job);
	n = list_count(job_list);
	last_job_update = time(NULL);
	job_lock_drop();
	out_begin();
	out_printf("ok %s job_id=%u n=%d", verb, job_id, n);
	out_end();
}

static void cmd_jobs_clear(const char *verb, int argc, char **argv)
{
	int n;

	if (no_args(verb, argc))
		return;
	job_lock_take("lock_deadlock", verb, 0);
	n = list_flush(job_list);
	job_lock_drop();
	out_begin();
	out_printf("ok %s removed=%d", verb, n);
	out_end();
}

/* A C "plugin" doing the least a useful site_factor plugin does. */
static int _baseline_update_one(void *x, void *arg)
{
	job_record_t *job = x;

	if (IS_JOB_PENDING(job))
		job->site_factor = NICE_OFFSET + 1 + (job->job_id % 1000);
	return 0;
}

static void __attribute__((noinline)) baseline_update(void)
{
	list_for_each(job_list, _baseline_update_one, NULL);
}

static void __attribute__((noinline)) baseline_set(job_record_t *job)
{
	_baseline_update_one(job, NULL);
}

static int __attribute__((noinline)) baseline_ctld(job_record_t *job,
						   bool *async)
{
	*async = false;
	return job->job_id ? SLURM_SUCCESS : SLURM_ERROR;
}

static int __attribute__((noinline)) baseline_d(job_env_t *env,
						slurm_cred_t *cred)
{
	return HOST_ENV_JOBID(env) ? SLURM_SUCCESS : SLURM_ERROR;
}

static int get_mode(const char *verb, kopt_t *o, bool *baseline)
{
	*baseline = false;
	if (!o->present || !strcmp(o->w, "plugin"))
		return 0;
	if (!strcmp(o->w, "baseline")) {
		*baseline = true;
		return 0;
	}
	out_error(verb, "mode must be plugin or baseline");
	return -1;
}

static void cmd_update_many(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "n", 'u', true }, { "mode", 'w' }, { "keep", 'u' } };
	void (*volatile fn)(void);
	bool baseline;
	uint32_t *before;
	host_itr_t it;
	job_record_t *job;
	uint64_t t0, dt, changed = 0, i = 0;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)) ||
	    get_mode(verb, &o[1], &baseline))
		return;
	if (!baseline && (need_family(verb, FAM_SITE_FACTOR) ||
			  need_sym(verb, plug.sf_update,
				   "site_factor_p_update")))
		return;
	if (o[0].u > 10000000) {
		out_error(verb, "n too large");
		return;
	}
	fn = baseline ? baseline_update : plug.sf_update;
	job_lock_take("lock_deadlock", verb, 0);
	list_flush(job_list);
	for (i = 0; i < o[0].u; i++)
		job_list_add(job_synth(i));
	before = xmalloc_checked((o[0].u + 1) * sizeof(uint32_t));
	it = list_iterator_create(job_list);
	for (i = 0; (job = list_next(it)); i++)
		before[i] = job->site_factor;
	tl_in_plugin = 1;
	t0 = now_ns();
	fn();
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	list_iterator_reset(it);
	for (i = 0; (job = list_next(it)); i++)
		if (job->site_factor != before[i])
			changed++;
	list_iterator_destroy(it);
	free(before);
	if (!(o[2].present && o[2].u))
		list_flush(job_list);
	job_lock_drop();
	out_begin();
	out_printf("ok %s n=%" PRIu64 " mode=%s us=%" PRIu64 " ns=%" PRIu64
		   " ns_per_job=%" PRIu64 " changed=%" PRIu64 " slurm_warn=%d",
		   verb, o[0].u, baseline ? "baseline" : "plugin", dt / 1000,
		   dt, o[0].u ? dt / o[0].u : 0, changed, dt > 50000000ULL);
	out_end();
}

static void cmd_call_many(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "hook", 'w', true }, { "n", 'u', true },
		       { "mode", 'w' }, { "timeout_ms", 'u' } };
	enum { BC_PCTLD, BC_ECTLD, BC_SET, BC_PROLOG, BC_EPILOG } kind;
	bool baseline;
	uint64_t n, async_cnt = 0, start_total, got, t0, dt, dt_total, tmo;
	job_record_t **jobs = NULL;
	job_env_t *envs = NULL;
	int (*volatile ctld)(job_record_t *, bool *) = NULL;
	int (*volatile dfn)(job_env_t *, slurm_cred_t *) = NULL;
	void (*volatile setfn)(job_record_t *) = NULL;
	int waited = 1;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)) ||
	    get_mode(verb, &o[2], &baseline))
		return;
	n = o[1].u;
	tmo = o[3].present ? o[3].u : 30000;
	if (n > 10000000) {
		out_error(verb, "n too large");
		return;
	}
	if (!strcmp(o[0].w, "prolog_slurmctld"))
		kind = BC_PCTLD;
	else if (!strcmp(o[0].w, "epilog_slurmctld"))
		kind = BC_ECTLD;
	else if (!strcmp(o[0].w, "site_set"))
		kind = BC_SET;
	else if (!strcmp(o[0].w, "prolog"))
		kind = BC_PROLOG;
	else if (!strcmp(o[0].w, "epilog"))
		kind = BC_EPILOG;
	else {
		out_error(verb, "unknown hook");
		return;
	}
	if (!baseline) {
		if (need_family(verb, kind == BC_SET ? FAM_SITE_FACTOR :
				FAM_PREP))
			return;
		switch (kind) {
		case BC_PCTLD: ctld = plug.prolog_slurmctld; break;
		case BC_ECTLD: ctld = plug.epilog_slurmctld; break;
		case BC_SET: setfn = plug.sf_set; break;
		case BC_PROLOG: dfn = plug.prolog; break;
		case BC_EPILOG: dfn = plug.epilog; break;
		}
		if (need_sym(verb, ctld ? (void *) ctld : setfn ?
			     (void *) setfn : (void *) dfn, o[0].w))
			return;
	} else {
		ctld = baseline_ctld;
		setfn = baseline_set;
		dfn = baseline_d;
	}

	if (kind == BC_PROLOG || kind == BC_EPILOG) {
		envs = xmalloc_checked((n + 1) * sizeof(*envs));
		for (uint64_t i = 0; i < n; i++) {
			HOST_ENV_JOBID(&envs[i]) = 1000000 + i;
			envs[i].uid = getuid();
			envs[i].gid = getgid();
			envs[i].exit_code = 0;
		}
	} else {
		jobs = xmalloc_checked((n + 1) * sizeof(*jobs));
		job_lock_take("lock_deadlock", verb, 0);
		for (uint64_t i = 0; i < n; i++)
			job_list_add(jobs[i] = job_synth(i));
		job_lock_drop();
	}

	pthread_mutex_lock(&cb_mutex);
	cb_quiet = true;
	start_total = cb_total;
	pthread_mutex_unlock(&cb_mutex);

	t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		bool async = false;

		if (envs) {
			tl_in_plugin = 1;
			dfn(&envs[i], NULL);
			tl_in_plugin = 0;
			continue;
		}
		job_lock_take("lock_deadlock", verb, jobs[i]->job_id);
		tl_in_plugin = 1;
		if (kind == BC_SET)
			setfn(jobs[i]);
		else
			ctld(jobs[i], &async);
		tl_in_plugin = 0;
		job_lock_drop();
		if (async)
			async_cnt++;
	}
	dt = now_ns() - t0;

	/* wait for the asynchronous completions */
	pthread_mutex_lock(&cb_mutex);
	if (async_cnt) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += tmo / 1000;
		ts.tv_nsec += (long) (tmo % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (cb_total - start_total < async_cnt)
			if (pthread_cond_timedwait(&cb_cond, &cb_mutex, &ts) ==
			    ETIMEDOUT && cb_total - start_total < async_cnt) {
				waited = 0;
				break;
			}
	}
	dt_total = now_ns() - t0;
	got = cb_total - start_total;
	cb_quiet = false;
	pthread_mutex_unlock(&cb_mutex);

	if (jobs) {
		job_lock_take("lock_deadlock", verb, 0);
		for (uint64_t i = 0; i < n; i++)
			job_purge(jobs[i]);
		job_lock_drop();
		free(jobs);
	}
	free(envs);

	out_begin();
	out_printf("ok %s hook=%s mode=%s n=%" PRIu64 " async=%" PRIu64
		   " us_calls=%" PRIu64 " ns_per_call=%" PRIu64
		   " us_total=%" PRIu64 " callbacks=%" PRIu64 " waited=%d",
		   verb, o[0].w, baseline ? "baseline" : "plugin", n,
		   async_cnt, dt / 1000, n ? dt / n : 0, dt_total / 1000, got,
		   waited);
	out_end();
}


/* ---- job_submit ---- */

static void part_free(void *x)
{
	part_record_t *p = x;

	if (p == default_part_loc)
		default_part_loc = NULL;
	for (size_t i = 0; i < NFIELDS(part_fields); i++)
		field_release(&part_fields[i], p);
	memset(p, 0x5a, sizeof(*p));
	xfree(p);
}

/* parts_add <part fields> [default=1]: append one partition to part_list */
static void cmd_parts_add(const char *verb, int argc, char **argv)
{
	part_record_t *p = xmalloc(sizeof(*p));
	target_t t = { .part = p };
	bool is_default = false;
	int n = 0;
	char *rest[MAX_FIELDS];

	p->magic = PART_MAGIC;
	p->max_time = INFINITE;
	p->default_time = NO_VAL;
	p->max_nodes = INFINITE;
	p->state_up = PARTITION_UP;
	for (int i = 0; i < argc && n < MAX_FIELDS; i++) {
		if (!strcmp(argv[i], "default=1"))
			is_default = true;
		else
			rest[n++] = argv[i];
	}
	if (apply_fields(verb, part_fields, NFIELDS(part_fields), &t, n, rest)) {
		part_free(p);
		return;
	}
	if (!part_list)
		part_list = list_create(part_free);
	list_append(part_list, p);
	if (is_default)
		default_part_loc = p;
	out_begin();
	out_printf("ok %s n=%d", verb, list_count(part_list));
	out_end();
}

static void cmd_parts_clear(const char *verb, int argc, char **argv)
{
	int n = part_list ? list_count(part_list) : 0;

	if (no_args(verb, argc))
		return;
	if (part_list)
		list_flush(part_list);
	out_begin();
	out_printf("ok %s removed=%d", verb, n);
	out_end();
}

/* Free a request built here (slurm_free_job_desc_msg() would start the
 * select plugin, which reads slurm.conf): every member in desc_fields is
 * all the plugin may have set. */
void desc_free(job_desc_msg_t *d)
{
	for (size_t i = 0; i < NFIELDS(desc_fields); i++)
		field_release(&desc_fields[i], d);
	memset(d, 0x5a, sizeof(*d));
	xfree(d);
}

/* One "row desc f=v ..." line: the request after the plugin's call. */
static void out_desc_row(job_desc_msg_t *d)
{
	out_begin();
	out_printf("row desc");
	for (size_t i = 0; i < NFIELDS(desc_fields); i++) {
		const field_t *f = &desc_fields[i];
		char *slot = (char *) d + f->off;

		switch (f->kind) {
		case K_UINT: {
			uint64_t v = 0;

			memcpy(&v, slot, f->size);   /* little endian */
			out_printf(" %s=%" PRIu64, f->name, v);
			break;
		}
		case K_SINT: {
			int64_t v;

			memcpy(&v, slot, 8);
			out_printf(" %s=%" PRId64, f->name, v);
			break;
		}
		case K_STR:
			out_str(f->name, *(char **) slot);
			break;
		case K_STRV: {
			/* name.size=N, name.0=.. name.N-1=.., and whether
			 * entry N is NULL (Slurm walks it to the NULL) */
			char **v = *(char ***) slot;
			uint64_t n = 0;
			char key[64];

			if (!v)
				break;
			if (f->cnt_off >= 0)
				memcpy(&n, (char *) d + f->cnt_off,
				       f->cnt_size);   /* little endian */
			else
				while (v[n])
					n++;
			out_printf(" %s.size=%" PRIu64 " %s.nullterm=%d",
				   f->name, n, f->name, v[n] == NULL);
			for (uint64_t j = 0; j < n; j++) {
				snprintf(key, sizeof(key), "%s.%" PRIu64,
					 f->name, j);
				out_str(key, v[j]);
			}
			break;
		}
		default:
			break;
		}
	}
	out_end();
}

/* Split off submit_uid=N and job.<field>=... tokens. */
static int js_split(const char *verb, int argc, char **argv, uint32_t *uid,
		    char **desc_argv, int *ndesc, char **job_argv, int *njob,
		    char **err_msg)
{
	*ndesc = *njob = 0;
	for (int i = 0; i < argc; i++) {
		uint64_t v;
		const char *why;

		if (!strncmp(argv[i], "err_msg=", 8)) {
			/* what an earlier plugin of JobSubmitPlugins left */
			xfree(*err_msg);
			if (decode_str(argv[i] + 8, err_msg, &why)) {
				out_error(verb, "bad err_msg: %s", why);
				return -1;
			}
		} else if (!strncmp(argv[i], "submit_uid=", 11)) {
			if (parse_u64(argv[i] + 11, &v) || v > UINT32_MAX) {
				out_error(verb, "bad submit_uid");
				return -1;
			}
			*uid = v;
		} else if (!strncmp(argv[i], "job.", 4)) {
			if (*njob < MAX_FIELDS)
				job_argv[(*njob)++] = argv[i] + 4;
		} else if (*ndesc < MAX_FIELDS) {
			desc_argv[(*ndesc)++] = argv[i];
		}
	}
	return 0;
}

/* js_submit <desc fields> [submit_uid=N] [err_msg=x..]  /  js_modify
 * <desc fields> job.<job field>=... [submit_uid=N] [err_msg=x..] (err_msg:
 * what an earlier plugin of JobSubmitPlugins left, e.g. job_submit/lua's
 * slurm.log_user lines): like validate_job_create_req() /
 * update_job(), with the job lock (read locks in slurmctld) held. */
static void cmd_js(const char *verb, int argc, char **argv)
{
	bool modify = !strcmp(verb, "js_modify");
	job_desc_msg_t *desc;
	job_record_t *job = NULL;
	target_t t = { 0 };
	char *dargv[MAX_FIELDS], *jargv[MAX_FIELDS], *err_msg = NULL;
	int nd, nj, rc, bypass;
	uint32_t uid = 0;
	uint64_t t0, dt;

	if (need_family(verb, FAM_JOB_SUBMIT) ||
	    need_sym(verb, modify ? (void *) plug.js_modify :
		     (void *) plug.js_submit, modify ? "job_modify" : "job_submit"))
		return;
	if (js_split(verb, argc, argv, &uid, dargv, &nd, jargv, &nj,
		     &err_msg)) {
		xfree(err_msg);
		return;
	}
	if (nj && !modify) {
		out_error(verb, "job.* fields only for js_modify");
		xfree(err_msg);
		return;
	}
	desc = xmalloc(sizeof(*desc));
	slurm_init_job_desc_msg(desc);
	t.desc = desc;
	if (apply_fields(verb, desc_fields, NFIELDS(desc_fields), &t, nd,
			 dargv)) {
		desc_free(desc);
		xfree(err_msg);
		return;
	}
	if (modify && !(job = job_from_args(verb, nj, jargv))) {
		desc_free(desc);
		xfree(err_msg);
		return;
	}
	desc->site_factor = NO_VAL;   /* as job_submit_plugin_submit() */
	bypass = job_lock_take("lock_deadlock", verb, job ? job->job_id : 0);
	if (job)
		job_list_add(job);
	tl_in_plugin = 1;
	t0 = now_ns();
	if (modify)
		rc = HOST_JS_MODIFY(plug.js_modify, desc, job, uid, &err_msg);
	else
		rc = plug.js_submit(desc, uid, &err_msg);
	dt = now_ns() - t0;
	tl_in_plugin = 0;
	out_desc_row(desc);
	out_begin();
	out_printf("ok %s rc=%d us=%" PRIu64 " lock_bypassed=%d", verb, rc,
		   dt / 1000, bypass);
	out_str("err_msg", err_msg);
	out_end();
	if (job)
		job_purge(job);
	job_lock_drop();
	xfree(err_msg);
	desc_free(desc);
}

static void cmd_stats(const char *verb, int argc, char **argv)
{
	int jobs;

	if (no_args(verb, argc))
		return;
	jobs = list_count(job_list);
	pthread_mutex_lock(&cb_mutex);
	out_begin();
	out_printf("ok %s callbacks=%" PRIu64 " pending=%zu deadlocks=%"
		   PRIu64 " lock_deadlocks=%" PRIu64 " unexpected=%" PRIu64
		   " jobs=%d scripts=%" PRIu64 " loaded=%d", verb, cb_total,
		   pending_cnt, cb_deadlocks, lock_deadlocks, cb_unexpected,
		   jobs, scripts_started, plug.handle ? 1 : 0);
	out_end();
	pthread_mutex_unlock(&cb_mutex);
}

/* The host's memory: VmRSS, and the bytes malloc has handed out and not
 * had back (mallinfo2 sums every glibc arena; what glibc keeps after a
 * free() counts in RSS but not here). */
static void cmd_mem(const char *verb, int argc, char **argv)
{
	struct mallinfo2 mi;
	char line[256];
	unsigned long rss_kib = 0;
	FILE *f;

	if (no_args(verb, argc))
		return;
	if ((f = fopen("/proc/self/status", "r"))) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmRSS: %lu kB", &rss_kib) == 1)
				break;
		fclose(f);
	}
	if (!rss_kib) {
		out_error(verb, "no VmRSS in /proc/self/status");
		return;
	}
	mi = mallinfo2();
	out_begin();
	out_printf("ok %s rss_kib=%lu malloc_inuse=%zu", verb, rss_kib,
		   mi.uordblks + mi.hblkhd);
	out_end();
}

static void cmd_mark(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "text", 'w', true } };
	char *s = NULL;
	const char *why = NULL;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)))
		return;
	if (decode_str(o[0].w, &s, &why) || !s) {
		out_error(verb, "text: %s", why ? why : "must not be -");
		return;
	}
	info("%s mark: %s", HOST_NAME, s);
	xfree(s);
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

/* node_draining v=0|1: what slurm_load_node_single() answers for this
 * node (see the update_node event) */
static void cmd_node_draining(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "v", 'u', true } };

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)))
		return;
	host_node_draining = o[0].u != 0;
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

static void cmd_sleep_ms(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "ms", 'u', true } };
	struct timespec ts;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)))
		return;
	ts.tv_sec = o[0].u / 1000;
	ts.tv_nsec = (long) (o[0].u % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

/*
 * lock_hold / lock_release: a thread of the host takes the job write lock and
 * keeps it until lock_release, as a long slurmctld scheduling pass would.
 * Callbacks (which take the lock) then block meanwhile.  lock_hold answers
 * once the lock is taken.
 */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold_state;		/* 0 none, 1 taking/held, 2 release asked */
static bool hold_taken;
static pthread_t hold_tid;

static void *hold_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&job_lock);
	pthread_mutex_lock(&hold_mu);
	hold_taken = true;
	pthread_cond_broadcast(&hold_cv);
	while (hold_state != 2)
		pthread_cond_wait(&hold_cv, &hold_mu);
	pthread_mutex_unlock(&hold_mu);
	pthread_mutex_unlock(&job_lock);
	return NULL;
}

static void cmd_lock_hold(const char *verb, int argc, char **argv)
{
	if (no_args(verb, argc))
		return;
	pthread_mutex_lock(&hold_mu);
	if (hold_state) {
		pthread_mutex_unlock(&hold_mu);
		out_error(verb, "the job lock is held already (lock_release first)");
		return;
	}
	hold_state = 1;
	hold_taken = false;
	if (pthread_create(&hold_tid, NULL, hold_main, NULL)) {
		hold_state = 0;
		pthread_mutex_unlock(&hold_mu);
		out_error(verb, "pthread_create failed");
		return;
	}
	while (!hold_taken)
		pthread_cond_wait(&hold_cv, &hold_mu);
	pthread_mutex_unlock(&hold_mu);
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

static void cmd_lock_release(const char *verb, int argc, char **argv)
{
	if (no_args(verb, argc))
		return;
	pthread_mutex_lock(&hold_mu);
	if (hold_state != 1) {
		pthread_mutex_unlock(&hold_mu);
		out_error(verb, "the job lock is not held by lock_hold");
		return;
	}
	hold_state = 2;
	pthread_cond_broadcast(&hold_cv);
	pthread_mutex_unlock(&hold_mu);
	pthread_join(hold_tid, NULL);
	hold_state = 0;
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

static void cmd_ping(const char *verb, int argc, char **argv)
{
	if (no_args(verb, argc))
		return;
	out_begin();
	out_printf("ok %s", verb);
	out_end();
}

static void cmd_quit(const char *verb, int argc, char **argv)
{
	if (no_args(verb, argc))
		return;
	quit_requested = true;	/* "ok quit" is printed after cleanup */
}

static void dispatch(int argc, char **argv);

typedef struct {
	int argc;
	char **argv;
} thread_cmd_t;

static void *in_thread_main(void *arg)
{
	thread_cmd_t *tc = arg;

	dispatch(tc->argc, tc->argv);
	return NULL;
}

/* in_thread VERB ... : run one command on a fresh pthread (joined) */
static void cmd_in_thread(const char *verb, int argc, char **argv)
{
	thread_cmd_t tc = { argc, argv };
	pthread_t tid;

	if (!argc || !strcmp(argv[0], "in_thread") ||
	    !strcmp(argv[0], "quit")) {
		out_error(verb, "needs a command (not quit/in_thread)");
		return;
	}
	if (pthread_create(&tid, NULL, in_thread_main, &tc)) {
		out_error(verb, "pthread_create failed");
		return;
	}
	pthread_join(tid, NULL);
}

/* command_t: spm_host.h (a program built on this host adds verbs in
 * spm_host_extra_commands: bench/bench_host.c) */
static const command_t commands[] = {
	{ "conf", cmd_conf },
	{ "dconf", cmd_dconf },
	{ "load", cmd_load },
	{ "unload", cmd_unload },
	{ "reload", cmd_reload },
	{ "fini", cmd_fini },
	{ "callbacks", cmd_callbacks },
	{ "required", cmd_required },
	{ "prolog_slurmctld", cmd_ctld_hook },
	{ "epilog_slurmctld", cmd_ctld_hook },
	{ "prolog", cmd_d_hook },
	{ "epilog", cmd_d_hook },
	{ "wait_callbacks", cmd_wait_callbacks },
	{ "site_set", cmd_site_set },
	{ "site_update", cmd_site_update },
	{ "site_reconfig", cmd_site_reconfig },
	{ "jobs_add", cmd_jobs_add },
	{ "parts_add", cmd_parts_add },
	{ "parts_clear", cmd_parts_clear },
	{ "js_submit", cmd_js },
	{ "jc_end", cmd_jc },
	{ "jc_start", cmd_jc },
	{ "jc_reconfig", cmd_jc_reconfig },
	{ "js_modify", cmd_js },
	{ "jobs_clear", cmd_jobs_clear },
	{ "update_many", cmd_update_many },
	{ "call_many", cmd_call_many },
	{ "stats", cmd_stats },
	{ "mem", cmd_mem },
	{ "mark", cmd_mark },
	{ "sleep_ms", cmd_sleep_ms },
	{ "node_draining", cmd_node_draining },
	{ "ping", cmd_ping },
	{ "lock_hold", cmd_lock_hold },
	{ "lock_release", cmd_lock_release },
	{ "in_thread", cmd_in_thread },
	{ "quit", cmd_quit },
};

static void dispatch(int argc, char **argv)
{
	for (size_t i = 0; i < NFIELDS(commands); i++)
		if (!strcmp(commands[i].verb, argv[0])) {
			commands[i].fn(commands[i].verb, argc - 1, argv + 1);
			return;
		}
	for (const command_t *c = spm_host_extra_commands; c && c->verb; c++)
		if (!strcmp(c->verb, argv[0])) {
			c->fn(c->verb, argc - 1, argv + 1);
			return;
		}
	out_error("-", "unknown command %.64s", argv[0]);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: " HOST_NAME " --plugin PATH --daemon slurmctld|slurmd|slurmstepd "
		"[--log FILE] [--debug N] [--deadlock-ms MS]\n"
		"  reads commands from stdin; see tests/host/README.md\n");
	exit(2);
}

static int split_line(char *line, char ***argv_out)
{
	int n = 0, cap = 16;
	char **argv = xmalloc_checked(cap * sizeof(char *));
	char *p = line;

	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (n + 1 >= cap) {
			char **tmp = realloc(argv, 2 * cap * sizeof(char *));

			if (!tmp) {
				fprintf(stderr, HOST_NAME ": out of memory\n");
				abort();
			}
			argv = tmp;
			cap *= 2;
		}
		argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
	argv[n] = NULL;
	*argv_out = argv;
	return n;
}

static void cleanup(void)
{
	bool fini_ran;
	int fini_rc;

	join_script_threads();
	if (plug.handle)
		plug_unload(&fini_ran, &fini_rc);
	if (job_list) {
		list_destroy(job_list);
		job_list = NULL;
	}
	if (part_list) {
		list_destroy(part_list);
		part_list = NULL;
	}
	for (size_t i = 0; i < NFIELDS(conf_fields); i++)
		field_release(&conf_fields[i], &slurm_conf);
	for (size_t i = 0; i < NFIELDS(dconf_fields); i++)
		field_release(&dconf_fields[i], conf);
	xfree(conf);
	/* a plugin thread may still call back (a late answer) */
	pthread_mutex_lock(&cb_mutex);
	free(pending);
	pending = NULL;
	pending_cnt = pending_cap = 0;
	pthread_mutex_unlock(&cb_mutex);
}

int main(int argc, char **argv)
{
	log_options_t lopts = LOG_OPTS_INITIALIZER;
	pthread_condattr_t ca;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (i + 1 >= argc)
			usage();
		if (!strcmp(a, "--plugin"))
			opt.plugin = argv[++i];
		else if (!strcmp(a, "--daemon"))
			opt.daemon = argv[++i];
		else if (!strcmp(a, "--log"))
			opt.log_file = argv[++i];
		else if (!strcmp(a, "--debug"))
			opt.debug = atoi(argv[++i]);
		else if (!strcmp(a, "--deadlock-ms"))
			opt.deadlock_ms = atoi(argv[++i]);
		else
			usage();
	}
	if (!opt.plugin || !opt.daemon ||
	    (strcmp(opt.daemon, "slurmctld") && strcmp(opt.daemon, "slurmd") &&
	     strcmp(opt.daemon, "slurmstepd")) ||
	    opt.debug < LOG_LEVEL_QUIET || opt.debug >= LOG_LEVEL_END ||
	    opt.deadlock_ms <= 0)
		usage();

	setvbuf(stdout, NULL, _IOLBF, 0);

	/* log_init() also sets slurm_prog_name -> running_in_slurmctld()
	 * (up to 24.11; slurm_daemon from 25.05) */
	host_set_daemon(opt.daemon);
	lopts.syslog_level = LOG_LEVEL_QUIET;
	lopts.prefix_level = 1;
	if (opt.log_file) {
		lopts.stderr_level = LOG_LEVEL_QUIET;
		lopts.logfile_level = opt.debug;
	} else {
		lopts.stderr_level = opt.debug;
		lopts.logfile_level = LOG_LEVEL_QUIET;
	}
	if (log_init((char *) opt.daemon, lopts, 0, (char *) opt.log_file)) {
		fprintf(stderr, HOST_NAME ": log_init failed\n");
		return 1;
	}

	HOST_DAEMON_INIT();

	/* slurm.conf defaults a plugin may rely on */
	slurm_conf.plugindir = xstrdup("/usr/lib/x86_64-linux-gnu/slurm-wlm");
	HOST_CONF_TIMEOUT_UNSET();
	slurm_conf.max_job_cnt = 10000;
	conf = xmalloc(sizeof(*conf));
	conf->node_name = xstrdup("spmnode1");
	conf->hostname = xstrdup("spmnode1");
	conf->conffile = xstrdup("/etc/slurm/slurm.conf");
	conf->stepd_loc = xstrdup("/usr/sbin/slurmstepd");

	job_list = list_create(job_free);

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cb_cond, &ca);
	pthread_condattr_destroy(&ca);

	out_begin();
	out_printf("ok ready daemon=%s version=%u pid=%d in_slurmctld=%d "
		   "in_slurmd=%d", opt.daemon, SLURM_VERSION_NUMBER,
		   (int) getpid(), running_in_slurmctld() ? 1 : 0,
		   running_in_slurmd() ? 1 : 0);
	out_end();

	while (!quit_requested && (len = getline(&line, &cap, stdin)) >= 0) {
		char **av;
		int ac;

		while (len > 0 && (line[len - 1] == '\n' ||
				   line[len - 1] == '\r'))
			line[--len] = '\0';
		ac = split_line(line, &av);
		if (ac && av[0][0] != '#')
			dispatch(ac, av);
		free(av);
	}
	free(line);

	if (hold_state == 1) {	/* a lock_hold never released */
		pthread_mutex_lock(&hold_mu);
		hold_state = 2;
		pthread_cond_broadcast(&hold_cv);
		pthread_mutex_unlock(&hold_mu);
		pthread_join(hold_tid, NULL);
	}
	cleanup();
	out_begin();
	out_printf("ok quit");
	out_end();
	log_fini();
	return 0;
}

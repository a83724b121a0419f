/*
 * spm_types.h - the flat records and C services shared by the C shim and
 * Python.  This file is read twice: by the C compiler (through spm.h) and by
 * cffi's cdef() in build_ffi.py, so it must stay inside cffi's C subset: no
 * #include, no #if, no function-like macros.
 *
 * Ownership: every record handed to Python lives in an spm_arena_t.  An
 * arena starts with one reference held by the C side; Python takes its own
 * with spm_arena_ref() and drops it with spm_arena_unref() from a cffi gc
 * hook, so a Job kept by a handler never dangles.  No Slurm pointer is ever
 * stored in these records: strings are copies.
 */

typedef struct spm_arena spm_arena_t;

/* The lazy part of an update() batch: string fields are copied from
 * Slurm's records on first access, and only while slurmctld still holds
 * its job write lock for the update() call (see snapshot.c). */
typedef struct spm_lazy spm_lazy_t;

/* A copy of the fields of job_record_t a site handler may read.
 * Strings are NUL-terminated copies (NULL where Slurm has NULL).
 * Signed factors (nice, site_factor) already have NICE_OFFSET removed. */
typedef struct spm_job {
	uint32_t job_id;
	uint32_t array_job_id;
	uint32_t array_task_id;
	uint32_t het_job_id;
	uint32_t het_job_offset;
	uint32_t user_id;
	uint32_t group_id;
	uint32_t job_state;
	uint32_t state_reason;
	uint32_t exit_code;
	uint32_t derived_ec;
	uint32_t priority;
	uint32_t time_limit;
	uint32_t time_min;
	uint32_t num_nodes;
	uint32_t num_cpus;
	uint32_t min_nodes;
	uint32_t max_nodes;
	uint32_t min_cpus;
	uint32_t restart_cnt;
	uint32_t qos_id;
	uint32_t assoc_id;
	uint32_t resv_id;
	uint32_t batch_flag;
	uint32_t requeue;
	uint32_t spank_job_env_size;
	uint32_t strings_loaded; /* 0: strings not copied yet (lazy != NULL) */
	int64_t nice;
	int64_t site_factor;
	uint64_t pn_min_memory;
	uint64_t bit_flags;
	int64_t submit_time;
	int64_t eligible_time;
	int64_t start_time;
	int64_t end_time;
	int64_t deadline;
	char *account;
	char *admin_comment;
	char *alloc_node;
	char *batch_host;
	char *burst_buffer;
	char *comment;
	char *features;
	char *licenses;
	char *mcs_label;
	char *name;
	char *nodes;
	char *partition;
	char *qos;
	char *resv_name;
	char *state_desc;
	char *std_err;
	char *std_in;
	char *std_out;
	char *system_comment;
	char *tres_alloc_str;
	char *tres_req_str;
	char *tres_per_job;
	char *tres_per_node;
	char *tres_per_task;
	char *user_name;
	char *wckey;
	char *work_dir;
	char **spank_job_env;
	spm_lazy_t *lazy;        /* NULL: a full copy */
} spm_job_t;

/* A copy of slurmd's job_env_t (prolog/epilog). */
typedef struct spm_env {
	uint32_t job_id;
	uint32_t step_id;
	uint32_t uid;
	uint32_t gid;
	uint32_t het_job_id;
	uint32_t exit_code;
	uint32_t derived_ec;
	uint32_t spank_job_env_size;
	uint32_t gres_job_env_size;
	char *user_name;
	char *partition;
	char *node_list;
	char *node_aliases;
	char *work_dir;
	char *node_name;         /* this node's NodeName (slurmd's conf) */
	char **spank_job_env;
	char **gres_job_env;
} spm_env_t;

/* A batch of pending jobs for site_factor update().  jobs is NULL until
 * spm_batch_rows() copied the rows (see snapshot.c). */
typedef struct spm_batch {
	uint32_t count;
	spm_job_t *jobs;
	spm_lazy_t *lazy;
} spm_batch_t;

/* A copy of the job_desc_msg_t fields a job_submit handler may see
 * (snapshot.c fills it; jobdesc.c writes changes back).  Numbers keep
 * Slurm's "unset" values (SPM_NO_VAL16, SPM_NO_VAL, SPM_NO_VAL64; 0 for
 * the times): Python reads them as None.  pn_min_memory is split into
 * min_mem_per_node / min_mem_per_cpu (at most one of them set).  The C
 * side makes two copies: `in` (as Slurm had it) and `out` (Python stores
 * the handler's changes there); jobdesc.c writes back every field where
 * the two differ, and only if the handler returned normally.
 * user_name, default_account and default_qos are not job_desc_msg_t
 * members: snapshot.c looks them up in slurmctld as job_submit/lua does
 * (read only).  environment is written back when Python replaced the
 * array (a new pointer); argv and spank_job_env are read only. */
typedef struct spm_jobdesc {
	uint16_t contiguous;
	uint16_t core_spec;
	uint16_t cores_per_socket;
	uint16_t cpus_per_task;
	uint16_t immediate;
	uint16_t kill_on_node_fail;
	uint16_t mail_type;
	uint16_t ntasks_per_core;
	uint16_t ntasks_per_node;
	uint16_t ntasks_per_socket;
	uint16_t ntasks_per_tres;
	uint16_t pn_min_cpus;
	uint16_t reboot;
	uint16_t requeue;
	uint16_t shared;
	uint16_t sockets_per_node;
	uint16_t threads_per_core;
	uint16_t wait_all_nodes;
	uint32_t job_id;
	uint32_t user_id;
	uint32_t group_id;
	uint32_t delay_boot;
	uint32_t max_cpus;
	uint32_t max_nodes;
	uint32_t min_cpus;
	uint32_t min_nodes;
	uint32_t num_tasks;
	uint32_t pn_min_tmp_disk;
	uint32_t priority;
	uint32_t time_limit;
	uint32_t time_min;
	uint32_t environment_size;
	uint32_t spank_job_env_size;
	uint32_t argv_size;
	uint64_t min_mem_per_node;
	uint64_t min_mem_per_cpu;
	int64_t begin_time;
	int64_t deadline;
	char *account;
	char *acctg_freq;
	char *admin_comment;
	char *alloc_node;
	char *array_inx;
	char *batch_features;
	char *burst_buffer;
	char *clusters;
	char *comment;
	char *container;
	char *cpus_per_tres;
	char *dependency;
	char *exc_nodes;
	char *features;
	char *licenses;
	char *mail_user;
	char *mcs_label;
	char *mem_per_tres;
	char *name;
	char *network;
	char *partition;
	char *prefer;
	char *qos;
	char *req_nodes;
	char *reservation;
	char *script;
	char *std_err;
	char *std_in;
	char *std_out;
	char *submit_line;
	char *tres_per_job;
	char *tres_per_node;
	char *tres_per_socket;
	char *tres_per_task;
	char *wckey;
	char *work_dir;
	char *user_name;
	char *default_account;
	char *default_qos;
	char **environment;
	char **spank_job_env;
	char **argv;
} spm_jobdesc_t;

/* A copy of one slurmctld partition (part_record_t), for job_submit
 * handlers.  Limits keep Slurm's values: SPM_INFINITE for "UNLIMITED",
 * SPM_NO_VAL for "not set". */
typedef struct spm_part {
	uint32_t max_time;
	uint32_t default_time;
	uint32_t max_nodes;
	uint32_t min_nodes;
	uint32_t total_nodes;
	uint32_t total_cpus;
	uint32_t max_cpus_per_node;
	uint32_t priority_tier;
	uint32_t is_default;
	uint32_t flags;
	char *name;
	char *state;
	char *nodes;
	char *allow_accounts;
	char *deny_accounts;
	char *allow_qos;
	char *deny_qos;
	char *allow_groups;
	char *qos;
	char *alternate;
	/* the uids AllowGroups= resolves to (Slurm's allow_uids): NULL when
	 * no uid filter applies, else allow_uids_size entries (maybe 0) */
	uint32_t allow_uids_size;
	uint32_t *allow_uids;
} spm_part_t;

typedef struct spm_partlist {
	uint32_t count;
	spm_part_t *parts;
} spm_partlist_t;

/* Boot request for one plugin context (in), and what Python decided (out). */
typedef struct spm_boot {
	int ctx;                 /* in: SPM_CTX_* */
	int daemon;              /* in: SPM_DAEMON_* */
	const char *params;      /* in: the slurm.conf key's value (conf_key) */
	const char *conf_path;   /* in: slurm.conf path (default handler path) */
	const char *params_file; /* in: the conf file's path (conf_file), or NULL */
	uint32_t default_timeout_ms; /* in: the context's limit without timeout= (0: none) */
	uint32_t slurm_user_id;  /* in: SlurmUser uid (trusted file owner) */
	int epilog_set;          /* in: slurm.conf has Epilog= */
	uint32_t load_limit_ms;  /* in: the longest a handler load may take
				  * (SPM_BOOT_TIMEOUT_MS): a reload running
				  * longer is interrupted (0: no limit) */
	uint32_t hooks;          /* out: bit (1 << SPM_HOOK_*) per override */
	uint32_t timeout_ms;     /* out: per-call limit in ms (0: unlimited) */
	uint32_t workers;        /* out: worker threads wanted */
	uint32_t on_failure_accept; /* out: job_submit: on_failure=accept */
} spm_boot_t;

/* job_submit: one submit() or modify() call (spm_py_js_call()).  C fills
 * the in fields and owns the struct; everything Python writes (out, msg,
 * why) is allocated in `arena`, freed with it by C after the call. */
typedef struct spm_js_call {
	int hook;                /* in: SPM_HOOK_JS_SUBMIT or SPM_HOOK_JS_MODIFY */
	uint32_t submit_uid;     /* in: the uid making the request */
	spm_arena_t *arena;      /* in: owns desc_in, desc_out, parts and
				  * every out string */
	spm_jobdesc_t *desc_in;  /* in: the request as it came (read only) */
	spm_jobdesc_t *desc_out; /* in/out: a copy of *desc_in on entry; the
				  * handler's changes (read by C on
				  * SPM_PY_OK only) */
	spm_arena_t *current_arena; /* in: owns current (NULL for submit()) */
	spm_job_t *current;      /* in: modify(): the job's record; NULL for
				  * submit() */
	spm_partlist_t *parts;   /* in: slurmctld's partitions */
	char *msg;               /* out: the handler's lines for the user
				  * (log_user(), one a line; on
				  * SPM_PY_REFUSED Reject's message last), or
				  * NULL: none */
	char *why;               /* out: on SPM_PY_FAILED / SPM_PY_UNLOADED,
				  * the reason in one line, for the log
				  * ("ValueError: boom"; the load error);
				  * else NULL */
	int code;                /* out: on SPM_PY_REFUSED, Reject's code (0:
				  * none given, SLURM_ERROR) */
} spm_js_call_t;

/* spank/python: one hook call.  spank_python.c fills it on the thread
 * SPANK called; Python reads it and reaches SPANK only through these
 * functions (they wrap spank_get_item/getenv/setenv/unsetenv and the
 * option values SPANK handed to the plugin's option callback). */
typedef struct spm_spank_call {
	int hook;                /* in: SPM_HOOK_SP_* */
	const char *context;     /* in: "local", "remote", "allocator", "slurmd", "job_script" */
	const char *args;        /* in: the plugstack.conf line's arguments, '\n'-joined */
	uint32_t slurm_user_id;  /* in: SlurmUser (a trusted owner of handler files) */
	void *sp;                /* in: spank_t */
	/* SPM_SP_*: 0 and *out set, or -1 (not available in this context) */
	int (*get_item)(void *sp, int item, int64_t *out);
	/* 0: *value (malloc'd, the caller frees it with free_str) set;
	 * 1: not set; -1: not available in this context */
	int (*getenv)(void *sp, const char *name, char **value);
	int (*setenv)(void *sp, const char *name, const char *value, int overwrite); /* 0 or -1 */
	int (*unsetenv)(void *sp, const char *name);                                 /* 0 or -1 */
	/* 1: given (*value: its argument, NULL for a flag; owned by C), 0: not
	 * given, -1: not an option the plugin registered */
	int (*option)(void *sp, const char *name, const char **value);
	void (*free_str)(char *s);
	/* S_JOB_ARGV: 0 and *argc, *argv set (SPANK's, read only), or -1 */
	int (*get_argv)(void *sp, int *argc, const char ***argv);
	/* spank_prepend_task_argv (Slurm 23.11+, task_init): 0, -1 (refused
	 * in this context), -2 (this Slurm release has none) */
	int (*prepend_argv)(void *sp, int argc, const char **argv);
	char msg[1024];          /* out: why the hook failed (for the log) */
	char where[256];         /* out: "file:line" of its exception in the
				  * handler, or "" (stats' last error) */
} spm_spank_call_t;

/* The one list of every constant the C side and Python share: Python
 * reads them as lib.SPM_*. */

#define SPM_CTX_PREP 0
#define SPM_CTX_SITE_FACTOR 1
#define SPM_CTX_JOB_SUBMIT 2
#define SPM_CTX_JOBCOMP 3
#define SPM_CTX_SPANK 4
#define SPM_CTX_COUNT 5

/* Bytes (NUL included) of a prep hook's failure in one line, the node's
 * drain reason in slurmd: slurmdbd keeps a node event's reason in a
 * TINYTEXT (255 bytes). */
#define SPM_WHY_SIZE 256

#define SPM_DAEMON_OTHER 0
#define SPM_DAEMON_SLURMCTLD 1
#define SPM_DAEMON_SLURMD 2
#define SPM_DAEMON_SLURMSTEPD 3

#define SPM_HOOK_PROLOG 0
#define SPM_HOOK_EPILOG 1
#define SPM_HOOK_PROLOG_SLURMCTLD 2
#define SPM_HOOK_EPILOG_SLURMCTLD 3
#define SPM_HOOK_SF_SET 4
#define SPM_HOOK_SF_UPDATE 5
#define SPM_HOOK_SF_RECONFIG 6
#define SPM_HOOK_JS_SUBMIT 7
#define SPM_HOOK_JS_MODIFY 8
#define SPM_HOOK_JC_END 9
#define SPM_HOOK_JC_START 10
#define SPM_HOOK_SP_INIT 11
#define SPM_HOOK_SP_INIT_POST_OPT 12
#define SPM_HOOK_SP_LOCAL_USER_INIT 13
#define SPM_HOOK_SP_USER_INIT 14
#define SPM_HOOK_SP_TASK_INIT_PRIVILEGED 15
#define SPM_HOOK_SP_TASK_INIT 16
#define SPM_HOOK_SP_TASK_POST_FORK 17
#define SPM_HOOK_SP_TASK_EXIT 18
#define SPM_HOOK_SP_EXIT 19
#define SPM_HOOK_SP_JOB_PROLOG 20
#define SPM_HOOK_SP_JOB_EPILOG 21
#define SPM_HOOK_SP_SLURMD_EXIT 22
#define SPM_HOOK_COUNT 23

/* Where a plugin's init() boots its handler: 1 << SPM_DAEMON_*. */
#define SPM_IN_SLURMCTLD 0x2
#define SPM_IN_SLURMD 0x4
#define SPM_IN_SLURMSTEPD 0x8
/* spank/python: no init() boots anything; a hook starts Python in its
 * own process, only when the handler defines it. */
#define SPM_IN_NONE 0x0

/* spank/python: the items a hook's spank object reads (spank_python.c
 * maps them to spank_item_t; unavailable in the context: not 0). */
#define SPM_SP_JOB_ID 0
#define SPM_SP_STEP_ID 1
#define SPM_SP_UID 2
#define SPM_SP_GID 3
#define SPM_SP_NNODES 4
#define SPM_SP_NODEID 5
#define SPM_SP_LOCAL_TASK_COUNT 6
#define SPM_SP_TOTAL_TASK_COUNT 7
#define SPM_SP_TASK_ID 8
#define SPM_SP_TASK_GLOBAL_ID 9
#define SPM_SP_TASK_PID 10
#define SPM_SP_ARRAY_ID 11
#define SPM_SP_ARRAY_TASK_ID 12
#define SPM_SP_ITEM_COUNT 13

/* A default per-call limit: slurm.conf PrologEpilogTimeout (0: none). */
#define SPM_TIMEOUT_PROLOG_EPILOG 0xffffffff

/* The plugin table (csrc/spm_plugins.h), one row per context, indexed by
 * SPM_CTX_*: plugin_type (also the log prefix); where its parameters come
 * from: a slurm.conf key (conf_key) or a file beside slurm.conf
 * (conf_file), the other one NULL; its per-call limit without timeout=
 * (ms, 0: none, or SPM_TIMEOUT_PROLOG_EPILOG); the daemons where init()
 * boots it (SPM_IN_*); worker threads without workers=. */
typedef struct spm_plugin {
	int ctx;
	const char *name;
	const char *conf_key;
	const char *conf_file;
	uint32_t default_timeout_ms;
	uint32_t daemons;
	uint32_t default_workers;
} spm_plugin_t;

/* One row per hook, indexed by SPM_HOOK_*: its method name and the
 * context it belongs to. */
typedef struct spm_hook {
	int hook;
	int ctx;
	const char *name;
} spm_hook_t;

extern const spm_plugin_t spm_plugins[];
extern const spm_hook_t spm_hooks[];

/* A site factor as sprio shows it: job_record_t.site_factor (uint32)
 * minus NICE_OFFSET.  Python clamps to this range (once, with one log
 * line per call); factors.c stores without clamping again. */
#define SPM_FACTOR_MIN -2147483648
#define SPM_FACTOR_MAX 2147483647
/* In update()'s factors by batch index: "leave this job's factor as it
 * is" (outside [SPM_FACTOR_MIN, SPM_FACTOR_MAX]). */
#define SPM_FACTOR_KEEP -9223372036854775807

/* Slurm's "unset" and "unlimited" values (slurm.h; jobdesc.c checks
 * they match).  Python reads a field holding its unset value as None. */
#define SPM_NO_VAL16 0xfffe
#define SPM_NO_VAL 0xfffffffe
#define SPM_NO_VAL64 0xfffffffffffffffe
#define SPM_INFINITE16 0xffff
#define SPM_INFINITE 0xffffffff
#define SPM_INFINITE64 0xffffffffffffffff
/* pn_min_memory's flag bit: the value is per CPU (slurm.h MEM_PER_CPU).
 * A handler's memory values stay below what Slurm reads as something
 * else: per node below the flag, per CPU below NO_VAL64 once flagged. */
#define SPM_MEM_PER_CPU 0x8000000000000000
/* part_record_t.flags bits job_submit/lua's part_list rule reads
 * (snapshot.c checks they match slurm.h). */
#define SPM_PART_FLAG_NO_ROOT 0x0004
#define SPM_PART_FLAG_ROOT_ONLY 0x0008

/* Results of the Python entry points (and of spm_pool_call()).  0 is
 * never success: cffi returns 0 from an extern "Python" function that has
 * no code attached (for instance when the embedding init code failed), and
 * that must fail closed.  A dispatcher decides on these codes alone, never
 * on whether a message or reason was filled in:
 *   OK          the hook ran and succeeded.
 *   FAILED      the handler ran and failed: it raised (other than a
 *               refusal), returned what the hook does not take, or its
 *               answer could not be stored.
 *   REFUSED     the handler ran and said no (job_submit's Reject): its
 *               answer, never a failure (job_submit's on_failure= does not
 *               apply).
 *   UNLOADED    Python ran the call but there is no usable handler (it
 *               failed to load; the reason was logged).
 *   UNAVAILABLE nothing ran the call: the pool could not (closed, Python
 *               not started, every worker stuck); only spm_pool_call()
 *               returns it, with the task's why.
 *   EXCEPTION   the bridge itself raised (cffi's error= value), or the
 *               call's deadline passed (spm_pool_call() sets *timed_out). */
#define SPM_PY_UNATTACHED 0
#define SPM_PY_OK 1
#define SPM_PY_FAILED 2
#define SPM_PY_REFUSED 3
#define SPM_PY_UNLOADED 4
#define SPM_PY_UNAVAILABLE 5
#define SPM_PY_EXCEPTION -1

/* Slurm log levels used by spm_log() (log_level_t values, the same from
 * 22.05 to 26.05). */
#define SPM_LOG_ERROR 2
#define SPM_LOG_INFO 3
#define SPM_LOG_VERBOSE 4
#define SPM_LOG_DEBUG 5
#define SPM_LOG_DEBUG2 6

/* The per-call limit without timeout= of site_factor/python and
 * job_submit/python (their rows in spm_plugins.h; prep/python's is
 * PrologEpilogTimeout).  The test kit takes the same defaults. */
#define SPM_SF_DEFAULT_TIMEOUT_MS 5000
#define SPM_JS_DEFAULT_TIMEOUT_MS 5000
#define SPM_JC_DEFAULT_TIMEOUT_MS 5000

/* jobcomp/python's spool (dispatch_jobcomp.c): its size bound without
 * spool_max= (MiB), and the deliverer's retry backoff (doubling from the
 * first to the last, reset by a delivery). */
#define SPM_JC_SPOOL_MAX_MB 1024
#define SPM_JC_RETRY_FIRST_MS 250
#define SPM_JC_RETRY_LAST_MS 30000

/* slurmpy-plugins stats (stats.c): each slurmctld and slurmd running
 * these plugins keeps its counters in a file it maps MAP_SHARED,
 * <dir>/slurmpy-stats/<daemon>.<host>.<pid>, <dir> being StateSaveLocation
 * (slurmctld) or SlurmdSpoolDir (slurmd), mode 0600, owned by the daemon's
 * user.  A hook's outcome adds to relaxed atomic counters and to a
 * log-scale latency histogram; nothing else happens on the hot path.  The
 * CLI (slurmpy_plugins/_stats.py) reads the file with this same layout
 * (cffi), never talking to the daemon.  Change the layout: bump
 * SPM_STATS_VERSION.
 *
 * spank/python runs in short-lived processes, many at once: those of a
 * node that run as root (slurmstepd, its `spank prolog|epilog`, slurmd)
 * add into one file shared by all of them,
 * <SlurmdSpoolDir>/slurmpy-stats/spank.<host>.shared (pid 0, daemon
 * SPM_DAEMON_SLURMSTEPD; the same layout), by atomic adds on the mapping,
 * with no lock: its size is fixed, whatever the number of processes.
 * srun, sbatch and salloc, and task_init in a task that has become a
 * non-root user, write nothing (spank_python.c). */
#define SPM_STATS_MAGIC 0x5354415453504d53
#define SPM_STATS_VERSION 2
/* Latency histogram: SPM_STATS_SUB buckets per power of two of
 * (microseconds + 1): bucket e * SPM_STATS_SUB + s holds
 * [(SPM_STATS_SUB + s) << e, (SPM_STATS_SUB + s + 1) << e) / SPM_STATS_SUB
 * (minus the 1), so a percentile read off it is at most 25% above the
 * true value; the last bucket also takes everything above 2^32 us. */
#define SPM_STATS_SUB 4
#define SPM_STATS_BUCKETS 128
#define SPM_STATS_TEXT 256

typedef struct spm_stats_hook {
	uint64_t calls;          /* answered: the sum of the next four */
	uint64_t ok;             /* the handler succeeded */
	uint64_t refused;        /* it refused on purpose (job_submit Reject) */
	uint64_t failed;         /* it raised, returned a wrong value, was
				  * not loaded, or no worker could run it */
	uint64_t timeouts;       /* its time limit passed first */
	uint64_t written_off;    /* worker threads written off (stuck past
				  * the limit) */
	uint64_t max_us;         /* longest call, submission to answer */
	uint64_t buckets[SPM_STATS_BUCKETS];
} spm_stats_hook_t;

/* The last error of a hook.  seq is odd while it is being written (a
 * reader copies it again); time is Unix seconds (0: none yet).  A writer
 * claims the record by moving seq from even to odd (CAS), claimed being
 * when (Unix seconds): one that finds it claimed for long (a writer killed
 * in the middle, in the shared spank file) takes it over. */
typedef struct spm_stats_error {
	uint32_t seq;
	uint32_t claimed;
	int64_t time;
	char where[SPM_STATS_TEXT];   /* "file:line" in the handler, or "" */
	char text[SPM_STATS_TEXT];    /* "ValueError: ...", one line */
} spm_stats_error_t;

/* jobcomp/python's spool and deliverer (dispatch_jobcomp.c, slurmctld).
 * Its hooks' rows (job_end, job_start) count delivery attempts. */
typedef struct spm_stats_jobcomp {
	uint64_t spooled;        /* records appended to the spool */
	uint64_t dropped;        /* records dropped (spool full, unwritable,
				  * out of memory): lost */
	uint64_t delivered;      /* records the handler took */
	uint64_t retried;        /* failed attempts (each is retried) */
	uint64_t backlog_bytes;  /* now: bytes of records not yet delivered */
	uint64_t head_failures;  /* now: failed attempts of the record the
				  * deliverer is on (0: none) */
	int64_t head_failing_since; /* now: Unix time of its first failed
				     * attempt (0: not failing) */
} spm_stats_jobcomp_t;

typedef struct spm_stats_file {
	uint64_t magic;          /* SPM_STATS_MAGIC, written last */
	uint32_t version;        /* SPM_STATS_VERSION */
	uint32_t size;           /* sizeof(spm_stats_file_t) */
	uint32_t pid;
	uint32_t daemon;         /* SPM_DAEMON_* */
	uint64_t proc_start;     /* /proc/<pid>/stat starttime (ticks): a
				  * reused pid is not this daemon */
	int64_t started;         /* Unix seconds */
	uint32_t ctx_count;      /* SPM_CTX_COUNT */
	uint32_t hook_count;     /* SPM_HOOK_COUNT */
	char host[64];
	char release[32];        /* the Slurm release built against */
	uint64_t loads[SPM_CTX_COUNT];   /* handler loads (boot, reconfigure) */
	uint64_t reloads[SPM_CTX_COUNT]; /* changed handlers taken (reload=) */
	spm_stats_hook_t hooks[SPM_HOOK_COUNT];
	spm_stats_error_t errors[SPM_HOOK_COUNT];
	spm_stats_jobcomp_t jobcomp;
} spm_stats_file_t;

/* C services Python may call. */

/* Log one message through the daemon's own log at a SPM_LOG_* level.  The
 * message is copied; prefix is a plugin's name ("prep/python", ...). */
void spm_log(int level, const char *prefix, const char *msg);

/* The daemon's current highest log level (SPM_LOG_*-compatible). */
int spm_log_level(void);

/* Arena references (see top of file). */
void spm_arena_ref(spm_arena_t *arena);
void spm_arena_unref(spm_arena_t *arena);

/* Python-side boot failed before its entry points could be attached:
 * report the formatted traceback through the daemon log. */
void spm_boot_failure(const char *text);

/* Copy the string fields of one job of an update() batch (if not done
 * yet).  Returns 0, -1 if update() has returned (Slurm's records may be
 * gone: nothing is read), or -2 on OOM. */
int spm_lazy_load(spm_lazy_t *lazy, spm_job_t *job);

/* update() batches, during the call (the same return codes as
 * spm_lazy_load, and -3 for an offset that is not a field of that kind).
 * Each copies into the batch's arena:
 * spm_batch_rows: every job's numbers into batch->jobs (once);
 * spm_batch_column: one numeric field of every job, by its offset in
 *   spm_job_t, into an array of the field's C type (*out); after the
 *   call, from the rows if spm_batch_rows() ran;
 * spm_batch_strings: one char * field of every job, dictionary-encoded:
 *   (*codes)[i] indexes (*values)[0 .. *nvalues - 1]; code 0 is NULL. */
int spm_batch_rows(spm_lazy_t *lazy);
int spm_batch_column(spm_lazy_t *lazy, uint32_t offset, void **out);
int spm_batch_strings(spm_lazy_t *lazy, uint32_t offset, uint32_t **codes,
		      char ***values, uint32_t *nvalues);

/* A copy of s in the arena (NULL for NULL or out of memory): how Python
 * hands strings to C (job_submit changes and messages). */
char *spm_arena_strdup(spm_arena_t *arena, const char *s);

/* An array of n + 1 NULL pointers in the arena (NULL on out of memory):
 * how Python hands a string array to C (job.environment). */
char **spm_arena_strv(spm_arena_t *arena, uint32_t n);

/* Slurm's error codes (slurm_err_t of the release built against, in
 * slurm_errno.h order; errno.c): entry i's value, its name in *name; past
 * the last one *name is NULL. */
int spm_errno_entry(uint32_t i, const char **name);

/* The Slurm release built against ("22.05.8"). */
const char *spm_slurm_release(void);

/* stats: Python failed a hook call on this worker (an exception at
 * `where` "file:line", or "" when there is no handler line, with `text`):
 * the call counts as failed and this is its hook's last error.  Outside a
 * hook call it does nothing. */
void spm_stats_error(int ctx, const char *where, const char *text);

/* stats: Python took a changed handler (reload=) of a context. */
void spm_stats_reload(int ctx);

/* stats: the path of this daemon's stats file ("" when it has none).
 * Python publishes a handlers= directory's per-file figures beside it
 * (<path>.files-<plugin kind>, slurmpy_plugins/_stats.py). */
const char *spm_stats_path(void);

/* Python reloaded a context's handler: publish the hooks it overrides. */
void spm_set_hooks(int ctx, uint32_t hooks);

/* A context's settings took effect (at boot, or when Python reloaded a
 * changed conf file beside slurm.conf): its per-call limit in ms (also for the
 * calls queued or running, counted from their submission), on_failure=accept
 * (non-zero) and its number of worker threads (extra ones leave when
 * idle). */
void spm_ctx_apply_settings(int ctx, uint32_t timeout_ms,
			    uint32_t on_failure_accept, uint32_t workers);

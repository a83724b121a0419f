/*
 * spm_plugins.h - THE table of the shim's plugins and their hooks: one row
 * per plugin (SPM_CTX_*), one row per hook (SPM_HOOK_*).  Everything else
 * is derived from it:
 *   log.c   defines spm_plugins[] / spm_hooks[] (spm_types.h) from it,
 *           which the daemon's Python reads as lib.spm_plugins / lib.spm_hooks;
 *   conf.c  reads each plugin's conf source (the slurm_conf member of a
 *           slurm.conf key, or a file beside slurm.conf);
 *   ctx.c   takes the default time limit, the daemons it boots in;
 *   _abi.py (the test kit, check, preview: no compiler there) parses this
 *           text with the grammar below (shipped in the package as
 *           slurmpy_plugins/spm_plugins.h);
 *   _plugins.py holds the Python side (base class, conf keys, kit entry
 *           points) and checks it against this table at bind();
 * tests/host/test_plugin_table.py compiles log.c and checks that what the
 * C compiler makes of this table is what _abi.py parses and what
 * _plugins.py expects.
 *
 * C only (X-macros; not for cffi's cdef).  Grammar (one row per line, as
 * _abi.py parses it; the line continuations are part of it):
 *
 *   SPM_PLUGIN_KEY(CTX, "type", "SlurmConfKey", slurm_conf_member, TIMEOUT, DAEMONS, WORKERS)
 *   SPM_PLUGIN_FILE(CTX, "type", "file_beside_slurm.conf", TIMEOUT, DAEMONS, WORKERS)
 *   SPM_HOOK_ROW(HOOK, CTX, "method")
 *
 * CTX: the tail of an SPM_CTX_* constant; HOOK: of an SPM_HOOK_* constant.
 * type: plugin_type, also the log prefix.  TIMEOUT: the per-call limit in
 * ms without timeout= (0: none), or SPM_TIMEOUT_PROLOG_EPILOG (slurm.conf
 * PrologEpilogTimeout).  DAEMONS: where init() boots the handler, SPM_IN_*
 * joined by " | " (anywhere else init() starts nothing: no Python in sacct
 * or scontrol).  WORKERS: worker threads without workers=.
 */
#define SPM_PLUGIN_TABLE \
	SPM_PLUGIN_KEY(PREP, "prep/python", "PrEpParameters", prep_params, SPM_TIMEOUT_PROLOG_EPILOG, SPM_IN_SLURMCTLD | SPM_IN_SLURMD, 4) \
	SPM_PLUGIN_KEY(SITE_FACTOR, "site_factor/python", "PrioritySiteFactorParameters", site_factor_params, SPM_SF_DEFAULT_TIMEOUT_MS, SPM_IN_SLURMCTLD, 1) \
	SPM_PLUGIN_FILE(JOB_SUBMIT, "job_submit/python", "job_submit_python.conf", SPM_JS_DEFAULT_TIMEOUT_MS, SPM_IN_SLURMCTLD, 1) \
	SPM_PLUGIN_FILE(JOBCOMP, "jobcomp/python", "jobcomp_python.conf", SPM_JC_DEFAULT_TIMEOUT_MS, SPM_IN_SLURMCTLD, 1) \
	SPM_PLUGIN_FILE(SPANK, "spank/python", "plugstack.conf", 0, SPM_IN_NONE, 1) \

/* job_submit: Slurm makes one call at a time (its own mutex): 1 worker.
 * jobcomp: one deliverer hands the spool's records over in order, one at
 * a time: 1 worker (no workers= key).
 * spank: its arguments are its plugstack.conf line (the conf file named
 * here is only what messages name); no daemon's init() boots it and no
 * pool runs it: each hook runs synchronously on the thread SPANK calls it
 * on, in srun/sbatch/slurmstepd, and starts Python there only when the
 * handler defines that hook (spank_python.c). */

#define SPM_HOOK_TABLE \
	SPM_HOOK_ROW(PROLOG, PREP, "prolog") \
	SPM_HOOK_ROW(EPILOG, PREP, "epilog") \
	SPM_HOOK_ROW(PROLOG_SLURMCTLD, PREP, "prolog_slurmctld") \
	SPM_HOOK_ROW(EPILOG_SLURMCTLD, PREP, "epilog_slurmctld") \
	SPM_HOOK_ROW(SF_SET, SITE_FACTOR, "set") \
	SPM_HOOK_ROW(SF_UPDATE, SITE_FACTOR, "update") \
	SPM_HOOK_ROW(SF_RECONFIG, SITE_FACTOR, "reconfig") \
	SPM_HOOK_ROW(JS_SUBMIT, JOB_SUBMIT, "submit") \
	SPM_HOOK_ROW(JS_MODIFY, JOB_SUBMIT, "modify") \
	SPM_HOOK_ROW(JC_END, JOBCOMP, "job_end") \
	SPM_HOOK_ROW(JC_START, JOBCOMP, "job_start") \
	SPM_HOOK_ROW(SP_INIT, SPANK, "init") \
	SPM_HOOK_ROW(SP_INIT_POST_OPT, SPANK, "init_post_opt") \
	SPM_HOOK_ROW(SP_LOCAL_USER_INIT, SPANK, "local_user_init") \
	SPM_HOOK_ROW(SP_USER_INIT, SPANK, "user_init") \
	SPM_HOOK_ROW(SP_TASK_INIT_PRIVILEGED, SPANK, "task_init_privileged") \
	SPM_HOOK_ROW(SP_TASK_INIT, SPANK, "task_init") \
	SPM_HOOK_ROW(SP_TASK_POST_FORK, SPANK, "task_post_fork") \
	SPM_HOOK_ROW(SP_TASK_EXIT, SPANK, "task_exit") \
	SPM_HOOK_ROW(SP_EXIT, SPANK, "exit") \
	SPM_HOOK_ROW(SP_JOB_PROLOG, SPANK, "job_prolog") \
	SPM_HOOK_ROW(SP_JOB_EPILOG, SPANK, "job_epilog") \
	SPM_HOOK_ROW(SP_SLURMD_EXIT, SPANK, "slurmd_exit") \


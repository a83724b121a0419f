/*
 * spm_bridge.h - the Python entry points ("extern Python" in cffi terms),
 * implemented in slurmpy_plugins/_bridge.py with @ffi.def_extern(error=-1).
 * Read by cffi's embedding_api() and by the C compiler; same C subset rules
 * as spm_types.h.  All return SPM_PY_* codes (spm_types.h says what each
 * means); SPM_PY_UNATTACHED (0) means Python never attached the function
 * and is treated as failure.  A handler's failure is SPM_PY_FAILED, a
 * refusal SPM_PY_REFUSED, a missing handler SPM_PY_UNLOADED; the pool's
 * own failures (SPM_PY_UNAVAILABLE, a timeout) never come from here.
 * Calls with many arguments take one struct (spm_boot_t, spm_js_call_t,
 * spm_spank_call_t) whose fields say in/out and who owns them.
 *
 * Every call must come from a thread that does NOT hold any slurmctld lock
 * the handler could wait on: in practice only the shim's worker threads
 * call these (see pool.c).
 */

/* Parse the context's parameters and load its handler.  Fills the out
 * fields of *boot.  SPM_PY_FAILED: handler unusable (already logged). */
int spm_py_boot(spm_boot_t *boot);

/* Run a prep hook.  Exactly one of job/env is non-NULL.  The arena holds
 * the record; Python takes its own reference if it keeps anything.  On
 * SPM_PY_FAILED or SPM_PY_UNLOADED, why[SPM_WHY_SIZE] (the caller's) holds
 * the failure in one line, NUL-terminated ("ValueError: /scratch is
 * full"); untouched on SPM_PY_OK. */
int spm_py_prep(int hook, spm_arena_t *arena, spm_job_t *job, spm_env_t *env,
		char *why);

/* site_factor set(): on SPM_PY_OK *factor holds the signed factor (before
 * NICE_OFFSET) and *have is 1, or *have is 0 when the handler returned
 * None.  SPM_PY_FAILED: it raised or returned a bad value; SPM_PY_UNLOADED:
 * no usable handler (both logged). */
int spm_py_sf_set(spm_arena_t *arena, spm_job_t *job, int64_t *factor,
		  int *have);

/* site_factor update(): writes up to cap (job id, signed factor) pairs
 * into the two arrays and sets *n; or, with *by_index set to 1, factors[i]
 * for job i of the batch (SPM_FACTOR_KEEP: unchanged), *n = batch->count,
 * job_ids unused. */
int spm_py_sf_update(spm_arena_t *arena, spm_batch_t *batch,
		     uint32_t *job_ids, int64_t *factors, uint32_t cap,
		     uint32_t *n, int *by_index);

/* site_factor reconfig(), and a check for a changed handler file. */
int spm_py_sf_reconfig(void);

/* job_submit: submit() or modify(), as *call says (see spm_js_call_t for
 * who owns what).  Python only reports what the handler did; the answer to
 * slurmctld (on_failure=, the refusal's text, its log line) is
 * dispatch_job_submit.c's.
 * SPM_PY_OK: accepted (apply call->desc_out); SPM_PY_REFUSED: Reject (call->msg
 * ends with its message, call->code its code); SPM_PY_FAILED: the handler
 * raised (traceback logged) or its changes could not be stored, call->why
 * says what; SPM_PY_UNLOADED: no usable handler, call->why the load
 * error. */
int spm_py_js_call(spm_js_call_t *call);

/* jobcomp: hand one spool record (a JSON line without its "\n", rec[len]
 * is '\0') to the handler's job_end() or job_start().  SPM_PY_OK: taken
 * (acknowledged); anything else (SPM_PY_FAILED: the handler raised, or the
 * record is unreadable; SPM_PY_UNLOADED: no usable handler): kept and
 * retried. */
int spm_py_jc_call(const char *rec, uint32_t len);

/* spank/python: run one SPANK hook of the plugstack.conf line's handler,
 * on the calling thread (SPANK's).  SPM_PY_OK: the hook returned (or the
 * handler has no such method); SPM_PY_FAILED: it raised, SPM_PY_UNLOADED:
 * the handler cannot load (call->msg says why; already logged). */
int spm_py_spank(spm_spank_call_t *call);

/*
 * prep_python.c - prep/python: routes Slurm's PrEp API to the shared
 * dispatch path (ctx.c, dispatch_prep.c).  Nothing else happens here.
 */
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "spm.h"
#include "compat.h"
#include SPM_PREP_H

const char plugin_name[] = "PrEp plugin for Python handlers (slurmpy_plugins)";
const char plugin_type[] = "prep/python";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

static const int hook_of[PREP_CALL_CNT] = {
	[PREP_REGISTER_CALLBACKS] = -1,
	[PREP_PROLOG] = SPM_HOOK_PROLOG,
	[PREP_EPILOG] = SPM_HOOK_EPILOG,
	[PREP_PROLOG_SLURMCTLD] = SPM_HOOK_PROLOG_SLURMCTLD,
	[PREP_EPILOG_SLURMCTLD] = SPM_HOOK_EPILOG_SLURMCTLD,
};

static bool _overridden(int hook)
{
	return spm_ctx_hooks(SPM_CTX_PREP) & (1u << hook);
}

/* Cheap: reads PrEpParameters; in slurmctld and slurmd the handler loads
 * on a thread of its own (in slurmstepd only when a hook is called). */
extern int init(void)
{
	return spm_ctx_init(SPM_CTX_PREP);
}

extern void fini(void)
{
	spm_ctx_fini(SPM_CTX_PREP);
}

extern void prep_p_register_callbacks(prep_callbacks_t *callbacks)
{
	spm_prep_set_callbacks(callbacks->prolog_slurmctld,
			       callbacks->epilog_slurmctld);
}

static int _slurmd_hook(int hook, job_env_t *job_env, slurm_cred_t *cred)
{
	if (!_overridden(hook))
		return SLURM_SUCCESS;
	spm_ctx_boot_on_call(SPM_CTX_PREP);   /* slurmstepd: RunInJob */
	return spm_prep_slurmd(hook, job_env, cred);
}

extern int prep_p_prolog(job_env_t *job_env, slurm_cred_t *cred)
{
	return _slurmd_hook(SPM_HOOK_PROLOG, job_env, cred);
}

extern int prep_p_epilog(job_env_t *job_env, slurm_cred_t *cred)
{
	return _slurmd_hook(SPM_HOOK_EPILOG, job_env, cred);
}

static int _ctld_hook(int hook, job_record_t *job_ptr, bool *async)
{
	*async = false;
	if (!_overridden(hook))
		return SLURM_SUCCESS;
	if (!spm_prep_ctld_async(hook, job_ptr)) {
		/* Only outside slurmctld: it always exports the callbacks. */
		spm_logf(SPM_CTX_PREP, SPM_LOG_ERROR,
			 "no slurmctld callback to answer through: cannot run the handler for JobId=%u",
			 job_ptr->job_id);
		return SLURM_ERROR;
	}
	*async = true;
	return SLURM_SUCCESS;
}

extern int prep_p_prolog_slurmctld(job_record_t *job_ptr, bool *async)
{
	return _ctld_hook(SPM_HOOK_PROLOG_SLURMCTLD, job_ptr, async);
}

extern int prep_p_epilog_slurmctld(job_record_t *job_ptr, bool *async)
{
	return _ctld_hook(SPM_HOOK_EPILOG_SLURMCTLD, job_ptr, async);
}

/* Slurm asks this once, when the plugin loads, perhaps under slurmctld's
 * locks: never wait for the handler.  While it loads every hook of this
 * daemon is reported required; a call to a hook the handler turns out not
 * to override then succeeds at once. */
extern void prep_p_required(prep_call_type_t type, bool *required)
{
	int want = (type == PREP_PROLOG || type == PREP_EPILOG) ?
		SPM_DAEMON_SLURMD : SPM_DAEMON_SLURMCTLD;

	*required = false;
	if (type <= PREP_REGISTER_CALLBACKS || type >= PREP_CALL_CNT ||
	    spm_daemon() != want)
		return;
	*required = _overridden(hook_of[type]);
}

/*
 * site_factor_python.c - site_factor/python: routes Slurm's site_factor API
 * to the shared dispatch path (ctx.c, dispatch_site_factor.c).  Nothing else happens here.
 */
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "spm.h"
#include "compat.h"
#include SPM_SITE_FACTOR_H

const char plugin_name[] = "Site factor plugin for Python handlers (slurmpy_plugins)";
const char plugin_type[] = "site_factor/python";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

/* slurmctld loads this at start-up, with no locks held: wait (bounded)
 * for the handler, so that the first set() has it. */
extern int init(void)
{
	spm_ctx_init(SPM_CTX_SITE_FACTOR);
	(void)spm_ctx_wait_ready(SPM_CTX_SITE_FACTOR, spm_boot_timeout_ms());
	return SLURM_SUCCESS;
}

extern void fini(void)
{
	spm_ctx_fini(SPM_CTX_SITE_FACTOR);
}

/* Called on scontrol reconfigure up to 23.11; 24.05 and later no longer
 * call it (a reconfigure there starts a new slurmctld, whose init() loads
 * the handler afresh). */
extern void site_factor_p_reconfig(void)
{
	/* Re-read PrioritySiteFactorParameters: changed ones load on the boot
	 * thread (never under the locks held here). */
	spm_ctx_init(SPM_CTX_SITE_FACTOR);
	spm_sf_reconfig();
}

extern void site_factor_p_set(job_record_t *job_ptr)
{
	spm_sf_set(job_ptr);
}

extern void site_factor_p_update(void)
{
	spm_sf_update();
}

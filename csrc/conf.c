/*
 * conf.c - what the shim reads of the daemon itself: slurm_conf values,
 * which daemon this is, and slurmctld's exported PrEp callbacks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "slurm/slurm.h"
#include "src/common/read_config.h"
#include "src/slurmd/slurmd/slurmd.h"

#include "spm.h"
#include "spm_plugins.h"
#define SPM_COMPAT_CONF
#include "compat.h"

SPM_EXPORT void spm_read_conf(int ctx, spm_conf_t *out)
{
	const char *file = spm_plugins[spm_ctx_index(ctx)].conf_file;

	/* The slurm_conf member of each plugin's slurm.conf key
	 * (spm_plugins.h). */
	switch (ctx) {
#define SPM_PLUGIN_KEY(c, type, key, member, ...) \
	case SPM_CTX_##c: out->params = slurm_conf.member; break;
#define SPM_PLUGIN_FILE(...)
	SPM_PLUGIN_TABLE
#undef SPM_PLUGIN_KEY
#undef SPM_PLUGIN_FILE
	default: out->params = NULL;
	}
	out->params_file[0] = '\0';
	if (file && slurm_conf.slurm_conf) {
		/* Slurm has no parameters key for job_submit plugins: like
		 * job_submit.lua, the file sits beside slurm.conf. */
		const char *slash = strrchr(slurm_conf.slurm_conf, '/');
		int dir = slash ? (int)(slash - slurm_conf.slurm_conf) : 1;

		snprintf(out->params_file, sizeof(out->params_file),
			 "%.*s/%s", dir, slash ? slurm_conf.slurm_conf : ".",
			 file);
	}
	out->conf_path = slurm_conf.slurm_conf;
	out->prep_timeout = spm_compat_prep_timeout();
	out->slurm_user_id = slurm_conf.slurm_user_id;
	out->epilog_set = spm_compat_epilog_set();
	out->state_save_location = slurm_conf.state_save_location;
	out->cluster_name = slurm_conf.cluster_name;
	out->jobcomp_params = slurm_conf.job_comp_params;
}

SPM_EXPORT int spm_daemon(void)
{
	if (running_in_slurmctld())
		return SPM_DAEMON_SLURMCTLD;
	if (running_in_slurmd())
		return SPM_DAEMON_SLURMD;
	if (running_in_slurmstepd())
		return SPM_DAEMON_SLURMSTEPD;
	return SPM_DAEMON_OTHER;
}

const char *spm_node_name(void)
{
	/* slurmd and slurmstepd both define `slurmd_conf_t *conf` (its
	 * node_name is what `slurmd -N` or the launch message set); looked
	 * up by name, as nothing else defines it for us. */
	slurmd_conf_t **c;
	int d = spm_daemon();

	if (d != SPM_DAEMON_SLURMD && d != SPM_DAEMON_SLURMSTEPD)
		return NULL;
	c = (slurmd_conf_t **)dlsym(RTLD_DEFAULT, "conf");
	return (c && *c) ? (*c)->node_name : NULL;
}

const char *spm_slurmd_spooldir(void)
{
	slurmd_conf_t **c;

	if (spm_daemon() != SPM_DAEMON_SLURMD)
		return NULL;
	c = (slurmd_conf_t **)dlsym(RTLD_DEFAULT, "conf");
	return (c && *c) ? (*c)->spooldir : NULL;
}

spm_slurm_cb_t spm_slurmctld_callback(int hook)
{
	const char *name = hook == SPM_HOOK_PROLOG_SLURMCTLD ?
		"prep_prolog_slurmctld_callback" :
		"prep_epilog_slurmctld_callback";

	return (spm_slurm_cb_t)dlsym(RTLD_DEFAULT, name);
}

/*
 * drain.c - a node drained with the handler's reason.
 *
 * Slurm drains a node whose prolog or epilog failed with a bare "Prolog
 * error" or "Epilog error" (slurmctld's validate_node_specs() and
 * job_epilog_complete()), and its drain_nodes() leaves a node that is
 * already draining as it is, reason included.  So slurmd drains the node
 * itself first, with the handler's message, the way a site's script does
 * with `scontrol update nodename=... state=drain reason=...`; Slurm's own
 * drain that follows is then a no-op and `sinfo -R` shows our reason.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "spm.h"
#include "compat.h"

/* Whether slurmctld already has `node` draining or drained (its reason is
 * then kept); false when it cannot tell (we drain: Slurm would). */
static bool _draining(const char *node, char **reason_out)
{
	node_info_msg_t *info = NULL;
	bool draining = false;

	*reason_out = NULL;
	if (slurm_load_node_single(&info, (char *)node, SHOW_ALL) ||
	    !info || info->record_count < 1)
		goto out;
	draining = (info->node_array[0].node_state & NODE_STATE_DRAIN) != 0;
	if (draining && info->node_array[0].reason)
		*reason_out = strdup(info->node_array[0].reason);
out:
	if (info)
		slurm_free_node_info_msg(info);
	return draining;
}

void spm_drain_node(int ctx, uint32_t job_id, const char *why)
{
	update_node_msg_t msg;
	char reason[SPM_WHY_SIZE + 64], *kept = NULL;   /* why is cut to fit */
	const char *node = spm_node_name();
	int d = spm_daemon();

	if (!node || (d != SPM_DAEMON_SLURMD && d != SPM_DAEMON_SLURMSTEPD))
		return;
	snprintf(reason, sizeof(reason), "%s: %s", spm_ctx_name(ctx), why);
	if (_draining(node, &kept)) {
		spm_logf(ctx, SPM_LOG_INFO,
			 "JobId=%u: node %s is already draining (reason: %s): its reason is kept, not \"%s\"",
			 job_id, node, kept ? kept : "none", reason);
		free(kept);
		return;
	}
	slurm_init_update_node_msg(&msg);
	msg.node_names = (char *)node;
	msg.node_state = NODE_STATE_DRAIN;
	msg.reason = reason;
#if SPM_UPDATE_NODE_REASON_UID
	msg.reason_uid = getuid();
#endif
	if (slurm_update_node(&msg))
		spm_logf(ctx, SPM_LOG_ERROR,
			 "JobId=%u: draining node %s with reason \"%s\" failed: %s; Slurm drains it with its own",
			 job_id, node, reason, slurm_strerror(errno));
	else
		spm_logf(ctx, SPM_LOG_INFO, "JobId=%u: node %s drained: \"%s\"",
			 job_id, node, reason);
}

/*
 * errno.c - Slurm's error codes by name, for Reject(code=...): the
 * members of slurm_err_t in slurm/slurm_errno.h of the release being
 * built.  build_ffi.py lists their names (gen/spm_errno_table.h); the
 * compiler gives their values, so the table cannot drift from Slurm.
 */
#include "config.h"
#include "slurm/slurm_errno.h"

#include "spm.h"
#include "spm_errno_table.h"

static const struct {
	const char *name;
	int value;
} _codes[] = {
#define SPM_ERRNO(n) { #n, n },
	SPM_ERRNO_TABLE
#undef SPM_ERRNO
};

int spm_errno_entry(uint32_t i, const char **name)
{
	if (i >= sizeof(_codes) / sizeof(_codes[0])) {
		*name = NULL;
		return 0;
	}
	*name = _codes[i].name;
	return _codes[i].value;
}

const char *spm_slurm_release(void)
{
	return SLURM_VERSION_STRING;
}

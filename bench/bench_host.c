/*
 * bench_host: the C test host (tests/host/spm_host.c) with the verbs only
 * the benchmark uses.  Built by bench/parts/common.py (bench_host()) into
 * build/bench/bench_host with the host's own build, tests/host/build.sh,
 * EXTRA_SRC=bench/bench_host.c; what it uses of the host is declared in
 * tests/host/spm_host.h.  Part 7 (bench/parts/jsubmit.py) drives it.
 *
 *   bench_js n=N [gap_us=G]
 *     N job_submit() calls on a fresh request each (name only, as sbatch
 *     --wrap leaves the rest unset), G us of sleep between calls (the
 *     caller's CPU idles, as between sbatch RPCs), with the job lock held
 *     as for js_submit; prints the median, p10 and p90 wall time of one
 *     call in ns:
 *     ok bench_js n= failed= med_ns= p10_ns= p90_ns=
 *
 * update_many and call_many stay in the test host: the host suite uses
 * them too (test_memory, test_host_smoke, test_prep_host,
 * test_site_factor_host).
 */
#define _GNU_SOURCE

#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "slurm/slurm.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmctld/slurmctld.h"

#include "../tests/host/spm_host.h"

static int _cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void cmd_bench_js(const char *verb, int argc, char **argv)
{
	kopt_t o[] = { { "n", 'u', true }, { "gap_us", 'u' } };
	host_js_submit_fn js_submit = host_js_submit();
	uint64_t n, *dt;
	char *err_msg = NULL;
	int failed = 0;

	if (parse_opts(verb, argc, argv, o, NFIELDS(o)) ||
	    need_family(verb, FAM_JOB_SUBMIT) ||
	    need_sym(verb, (void *) js_submit, "job_submit"))
		return;
	n = o[0].u;
	if (!n || n > 1000000) {
		out_error(verb, "n must be 1..1000000");
		return;
	}
	dt = xcalloc(n, sizeof(*dt));
	for (uint64_t i = 0; i < n; i++) {
		job_desc_msg_t *desc = xmalloc(sizeof(*desc));
		uint64_t t0;

		slurm_init_job_desc_msg(desc);
		desc->name = xstrdup("bench");
		desc->site_factor = NO_VAL;
		if (o[1].present && o[1].u)
			usleep(o[1].u);
		job_lock_take("lock_deadlock", verb, 0);
		t0 = now_ns();
		if (js_submit(desc, 0, &err_msg))
			failed++;
		dt[i] = now_ns() - t0;
		job_lock_drop();
		xfree(err_msg);
		desc_free(desc);
	}
	qsort(dt, n, sizeof(*dt), _cmp_u64);
	out_begin();
	out_printf("ok %s n=%" PRIu64 " failed=%d med_ns=%" PRIu64 " p10_ns=%"
		   PRIu64 " p90_ns=%" PRIu64, verb, n, failed, dt[n / 2],
		   dt[n / 10], dt[n * 9 / 10]);
	out_end();
	xfree(dt);
}

const command_t spm_host_extra_commands[] = {
	{ "bench_js", cmd_bench_js },
	{ NULL, NULL },
};

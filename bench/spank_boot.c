/*
 * spank_boot.c - times what a slurmstepd pays for a remote spank/python
 * hook, without Slurm's daemons: spank_python.c's slurm_spank_init and a
 * first and second slurm_spank_user_init in the remote context, with
 * SPANK's functions stubbed (setenv succeeds).  The first user_init loads
 * libslurmpy.so, starts Python, imports the bridge and the handler and
 * runs the hook: the per-step cost of bench/spank.py's "spank/python,
 * setenv in user_init" row, less the step itself.
 *
 * Built by tests/host/test_spank_host.py (test_boot_imports_only_spank) and by
 * hand:
 *
 *   gcc -O2 -Wall -I csrc -I $SLURM_SRC -o build/plugins/spank_boot \
 *       bench/spank_boot.c -L/usr/lib/x86_64-linux-gnu/slurm-wlm -lslurmfull \
 *       -Wl,-rpath,/usr/lib/x86_64-linux-gnu/slurm-wlm -ldl -lpthread
 *   build/plugins/spank_boot [--modules FILE] handler=m:C path=DIR ...
 *
 * The executable must sit beside slurmpy/ (build/plugins/), as
 * spank_python.so does: it finds slurmpy/libslurmpy.so from its own path.
 * Prints "init_ms start_ms first_ms second_ms cpu_ms": slurm_spank_init (the
 * module file's reading), loading libslurmpy.so and starting the
 * interpreter (what the first hook does first), the rest of the first
 * user_init (cffi's init code: the bridge's imports; the handler's load;
 * the hook) and a second user_init (the hook alone), and the CPU time
 * (user + system, all threads) of the start and the first user_init; with
 * --modules FILE, writes the names in sys.modules after the hooks to FILE,
 * one per line.
 */
#include "../csrc/spank_python.c"   /* defines _GNU_SOURCE first */


/* slurm_conf, slurm_error, log_var: libslurmfull's (libslurmpy.so needs
 * them from the process, as from a slurmstepd). */

/* the remote context; setenv succeeds (the benchmarked hook sets one) */
#define SPANK_STUB_CONTEXT S_CTX_REMOTE
#define SPANK_STUB_GETENV_RC ESPANK_ENV_NOEXIST
#define SPANK_STUB_SETENV_RC ESPANK_SUCCESS
#include "../tests/host/spank_stubs.h"

#include <sys/resource.h>

static double _cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double _ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* sys.modules' names into path, through the interpreter the hook started
 * (libpython is global once libslurmpy.so started it). */
static int _write_modules(const char *path)
{
	int (*ensure)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
	void (*release)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "PyGILState_Release");
	int (*run)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT,
								  "PyRun_SimpleString");
	char code[4096];
	int g, rc;

	if (!ensure || !release || !run) {
		fprintf(stderr, "spank_boot: libpython is not loaded\n");
		return -1;
	}
	snprintf(code, sizeof(code),
		 "import sys\n"
		 "with open(%s%s%s, 'w') as f:\n"
		 "    f.write(''.join(m + '\\n' for m in sorted(sys.modules)))\n",
		 "'''", path, "'''");
	g = ensure();
	rc = run(code);
	release(g);
	return rc;
}

int main(int argc, char **argv)
{
	const char *modules = NULL;
	struct timespec t0;
	double cpu0, cpu_ms, init_ms, start_ms, first_ms, second_ms;

	if (argc > 2 && !strcmp(argv[1], "--modules")) {
		modules = argv[2];
		argc -= 2;
		argv += 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (slurm_spank_init(NULL, argc - 1, argv + 1))
		return 1;
	init_ms = _ms_since(&t0);
	cpu0 = _cpu_ms();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (_core() || core_start())     /* what the first hook does first */
		return 1;
	start_ms = _ms_since(&t0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (slurm_spank_user_init(NULL, argc - 1, argv + 1))
		return 1;
	first_ms = _ms_since(&t0);
	cpu_ms = _cpu_ms() - cpu0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (slurm_spank_user_init(NULL, argc - 1, argv + 1))
		return 1;
	second_ms = _ms_since(&t0);
	if (modules && _write_modules(modules))
		return 1;
	printf("%.2f %.2f %.2f %.2f %.2f\n", init_ms, start_ms, first_ms, second_ms, cpu_ms);
	return 0;
}

/*
 * spm_host.h: what a program built on the C test host shares with it.
 *
 * spm_host.c is the whole test host.  A program that adds verbs to it is
 * compiled with it (tests/host/build.sh with EXTRA_SRC=its sources) and
 * defines spm_host_extra_commands; bench/bench_host.c adds the verbs only
 * the benchmark uses (bench_js).  Its verbs parse their options, write
 * their lines, take the job lock and reach the loaded plugin through what
 * is declared here.  These stay inside the executable (hidden): -rdynamic
 * exports the daemon's symbols to the plugin, never these.
 *
 * Include after Slurm's headers (config.h, slurm/slurm.h,
 * src/slurmctld/slurmctld.h), as spm_host.c does.
 */
#ifndef SPM_HOST_H
#define SPM_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPM_HOST_API __attribute__((visibility("hidden")))

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* A verb: VERB key=value ... on stdin, exactly one final line out. */
typedef struct {
	const char *verb;
	void (*fn)(const char *verb, int argc, char **argv);
} command_t;

/* The verbs a program built on spm_host.c adds, ended by { NULL, NULL };
 * spm_host itself has none (weak). */
extern const command_t spm_host_extra_commands[]
	__attribute__((weak)) SPM_HOST_API;

/* A verb's key=value options. */
typedef struct {
	const char *key;
	char kind;		/* 'u' unsigned, 'w' bare word */
	bool required;
	uint64_t u;
	const char *w;
	bool present;
} kopt_t;
SPM_HOST_API int parse_opts(const char *verb, int argc, char **argv,
			    kopt_t *o, size_t n);

/* Output: a line is out_begin(), out_printf()..., out_end(), written
 * atomically; out_error() is a verb's final error line. */
SPM_HOST_API void out_begin(void);
SPM_HOST_API void out_printf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
SPM_HOST_API void out_end(void);
SPM_HOST_API void out_error(const char *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The loaded plugin: an error line (and nonzero) unless it is of that
 * family / has that symbol. */
enum family { FAM_NONE = 0, FAM_PREP, FAM_SITE_FACTOR, FAM_JOB_SUBMIT,
	      FAM_JOBCOMP };
SPM_HOST_API int need_family(const char *verb, enum family fam);
SPM_HOST_API int need_sym(const char *verb, const void *p, const char *sym);
/* its job_submit() (NULL unless a job_submit plugin is loaded) */
typedef int (*host_js_submit_fn)(job_desc_msg_t *desc, uint32_t uid,
				 char **err_msg);
SPM_HOST_API host_js_submit_fn host_js_submit(void);

/* slurmctld's job write lock, as the hooks take it */
SPM_HOST_API int job_lock_take(const char *kind, const char *what,
			       uint32_t job_id);
SPM_HOST_API void job_lock_drop(void);

SPM_HOST_API uint64_t now_ns(void);
/* frees a job_desc_msg_t the host's way (every field it knows) */
SPM_HOST_API void desc_free(job_desc_msg_t *d);

#endif

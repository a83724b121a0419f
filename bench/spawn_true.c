/*
 * spawn_true.c - the floor of prep/script: start /bin/true and reap it,
 * N times, in C.  Prints one line per method:
 *
 *   posix_spawn total_ns=... n=... ns_per_call=...
 *   fork_exec   total_ns=... n=... ns_per_call=...
 *
 * posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) is the cheapest way to
 * run a program; fork()+execve() is what slurmscriptd's run_command() does.
 *
 * usage: spawn_true N [RSS_MB]
 *   RSS_MB: touch that many MB first, so fork() copies page tables of a
 *   process about the size of a busy slurmscriptd (0 by default).
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	long mb = argc > 2 ? atol(argv[2]) : 0;
	char *args[] = { "/bin/true", NULL };
	uint64_t t0, dt;
	int status;

	if (mb > 0) {
		char *p = malloc((size_t) mb << 20);

		if (p)
			memset(p, 1, (size_t) mb << 20);
	}

	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		pid_t pid;

		if (posix_spawn(&pid, args[0], NULL, NULL, args, environ)) {
			perror("posix_spawn");
			return 1;
		}
		if (waitpid(pid, &status, 0) != pid || status) {
			fprintf(stderr, "bad child status %d\n", status);
			return 1;
		}
	}
	dt = now_ns() - t0;
	printf("posix_spawn total_ns=%llu n=%ld ns_per_call=%llu\n",
	       (unsigned long long) dt, n, (unsigned long long) (dt / n));

	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (!pid) {
			execve(args[0], args, environ);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid || status) {
			fprintf(stderr, "bad child status %d\n", status);
			return 1;
		}
	}
	dt = now_ns() - t0;
	printf("fork_exec total_ns=%llu n=%ld ns_per_call=%llu\n",
	       (unsigned long long) dt, n, (unsigned long long) (dt / n));
	return 0;
}

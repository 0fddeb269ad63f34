/*
 * corpus-run DIR LIMIT_S PROG... — runs each corpus program DIR/PROG in
 * turn, natively or inside the guest, as one batch (tests/corpus_test.go).
 *
 * For each program it prints "=== begin PROG", the program's stdout and
 * stderr (through a pipe, so natively and in the guest the program writes
 * to the same kind of file), then "=== end PROG status N" (exit status N),
 * "=== end PROG signal N" or "=== end PROG timeout" when the program ran
 * longer than LIMIT_S seconds of CLOCK_MONOTONIC (its process group is
 * killed and the batch goes on), each followed by the guest time it took
 * as "(S.SS s)", for information only. After the last program: "=== done".
 *
 * The guest's init mounts /proc, /sys, devtmpfs on /dev and a tmpfs on
 * /tmp, but no /dev/shm (issue 17): when /dev/shm is missing the runner
 * mounts a tmpfs there itself, so that shm_open works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void out(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= w;
	}
}

static void outs(const char *s) { out(s, strlen(s)); }

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ensure_shm(void)
{
	struct stat st;

	if (stat("/dev/shm", &st) == 0)
		return;
	if (mkdir("/dev/shm", 01777) < 0 && errno != EEXIST) {
		perror("corpus-run: mkdir /dev/shm");
		return;
	}
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		perror("corpus-run: mount tmpfs on /dev/shm");
}

static void run_one(const char *dir, const char *name, double limit)
{
	char path[4096], line[4096 + 512], buf[4096];
	int p[2], st = 0, exited = 0, timed_out = 0;
	double deadline = now() + limit, took;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(line, sizeof(line), "=== begin %s\n", name);
	outs(line);
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("corpus-run: pipe");
		exit(2);
	}
	pid = fork();
	if (pid < 0) {
		perror("corpus-run: fork");
		exit(2);
	}
	if (pid == 0) {
		char *argv[] = { path, NULL };
		int null = open("/dev/null", O_RDONLY);
		sigset_t none;

		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(path, argv);
		snprintf(line, sizeof(line), "corpus-run: exec %s: %s\n", path, strerror(errno));
		(void)!write(2, line, strlen(line));
		_exit(127);
	}
	setpgid(pid, pid); /* also here, so that killpg works from the start */
	close(p[1]);
	for (int eof = 0;;) {
		if (!eof) {
			struct pollfd pf = { p[0], POLLIN, 0 };

			if (poll(&pf, 1, exited ? 0 : 100) > 0) {
				ssize_t n = read(p[0], buf, sizeof(buf));
				if (n > 0) {
					out(buf, n);
					continue;
				}
				if (n == 0)
					eof = 1; /* every writer closed the pipe */
			}
		} else if (!exited) {
			struct timespec ts = { 0, 10000000L };
			nanosleep(&ts, NULL);
		}
		if (exited) /* drained what was there; leftovers are killed below */
			break;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			exited = 1;
			continue;
		}
		if (now() > deadline) {
			timed_out = 1;
			kill(-pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
	}
	kill(-pid, SIGKILL); /* any process the program left behind */
	close(p[0]);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	took = now() - (deadline - limit);
	if (timed_out)
		snprintf(line, sizeof(line), "=== end %s timeout (%.2f s)\n", name, took);
	else if (WIFEXITED(st))
		snprintf(line, sizeof(line), "=== end %s status %d (%.2f s)\n", name, WEXITSTATUS(st), took);
	else
		snprintf(line, sizeof(line), "=== end %s signal %d (%.2f s)\n", name, WTERMSIG(st), took);
	outs(line);
}

int main(int argc, char **argv)
{
	double limit;

	if (argc < 3) {
		fprintf(stderr, "usage: corpus-run DIR LIMIT_SECONDS PROG...\n");
		return 2;
	}
	limit = atof(argv[2]);
	signal(SIGPIPE, SIG_IGN);
	ensure_shm();
	for (int i = 3; i < argc; i++)
		run_one(argv[1], argv[i], limit);
	outs("=== done\n");
	return 0;
}

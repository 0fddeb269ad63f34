/*
 * shmenv: the guest environment of issue 17, as a user's program on a
 * disk image sees it. Prints its working directory, $SHMENV_GREETING and
 * the first line of its standard input; then two threads share memory
 * through /dev/shm twice: a file made with mkstemp("/dev/shm/...") and an
 * shm_open object, each mapped MAP_SHARED twice (once per thread), and
 * each thread adds to both through its own mapping. Ends "shmenv: ok".
 * Built by tests/env_test.go with musl-gcc -static.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ADDS 20000 /* per thread: enough for the threads to overlap */

static int fds[2];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* Each thread maps both objects itself, so the sharing is through the
 * page cache of /dev/shm's tmpfs, not one mapping. */
static void *adder(void *arg)
{
	long *p[2];

	(void)arg;
	for (int i = 0; i < 2; i++) {
		p[i] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (p[i] == MAP_FAILED)
			die("mmap");
	}
	for (int n = 0; n < ADDS; n++)
		for (int i = 0; i < 2; i++)
			__atomic_add_fetch(p[i], 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int main(void)
{
	char cwd[256], line[256] = "", tmpl[] = "/dev/shm/shmenv-XXXXXX";
	const char *g = getenv("SHMENV_GREETING");
	pthread_t t;
	long *check[2];

	if (!getcwd(cwd, sizeof(cwd)))
		die("getcwd");
	if (!fgets(line, sizeof(line), stdin))
		strcpy(line, "(no stdin)\n");
	printf("cwd %s\ngreeting %s\nstdin %s", cwd, g ? g : "(unset)", line);
	if ((fds[0] = mkstemp(tmpl)) < 0)
		die("mkstemp /dev/shm");
	if ((fds[1] = shm_open("/shmenv", O_RDWR | O_CREAT | O_EXCL, 0600)) < 0)
		die("shm_open");
	for (int i = 0; i < 2; i++)
		if (ftruncate(fds[i], 4096) < 0)
			die("ftruncate");
	pthread_create(&t, NULL, adder, NULL);
	adder(NULL);
	pthread_join(t, NULL);
	for (int i = 0; i < 2; i++) {
		check[i] = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fds[i], 0);
		if (check[i] == MAP_FAILED)
			die("mmap");
	}
	printf("mkstemp %ld shm_open %ld\n", *check[0], *check[1]);
	unlink(tmpl);
	shm_unlink("/shmenv");
	if (*check[0] != 2 * ADDS || *check[1] != 2 * ADDS) {
		printf("shmenv: FAILED: want %d in each\n", 2 * ADDS);
		return 1;
	}
	printf("shmenv: ok\n");
	return 0;
}

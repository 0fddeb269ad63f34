/* POSIX shared memory (shm_open, /dev/shm): two threads and a forked child
 * share one object; shm_unlink removes the name. */
#include "corpus.h"
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

static long *shared;

static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++)
		__atomic_add_fetch(shared, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

int main(void)
{
	char name[64];
	pthread_t t;
	pid_t pid;
	int fd, st;
	long *second;

	snprintf(name, sizeof(name), "/samsara-corpus-%d", getpid());
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0, "shm_open %s", name);
	CHECK(ftruncate(fd, 4096) == 0, "ftruncate");
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(shared != MAP_FAILED, "mmap");
	pthread_create(&t, NULL, adder, NULL);
	adder(NULL);
	pthread_join(t, NULL);
	pid = fork();
	if (pid == 0) {
		int fd2 = shm_open(name, O_RDWR, 0);
		long *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
		if (fd2 < 0 || p == MAP_FAILED)
			_exit(1);
		for (int i = 0; i < 10000; i++)
			__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && st == 0, "child %#x", st);
	CHECK(*shared == 30000, "count %ld", *shared);
	second = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(second != MAP_FAILED && *second == 30000, "second mapping");
	say("shm object: 2 threads and a child process added 30000\n");
	CHECK(shm_unlink(name) == 0, "shm_unlink");
	CHECK(shm_open(name, O_RDWR, 0) == -1 && errno == ENOENT, "name still there");
	say("shm_unlink removed the name\n");
	ok();
}

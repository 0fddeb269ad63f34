/* Robust mutexes: a thread that dies holding one leaves EOWNERDEAD for the
 * next locker, who makes it consistent; a forked process that dies
 * holding a process-shared robust mutex does the same. */
#include "corpus.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

static pthread_mutex_t *m;

static void *die_holding(void *arg)
{
	(void)arg;
	pthread_mutex_lock(m);
	return NULL; /* exits with the mutex held */
}

static void init_robust(int pshared)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutexattr_setpshared(&a, pshared);
	pthread_mutex_init(m, &a);
}

int main(void)
{
	pthread_t t;
	pid_t pid;
	int st, r;

	m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap");
	init_robust(PTHREAD_PROCESS_PRIVATE);
	pthread_create(&t, NULL, die_holding, NULL);
	pthread_join(t, NULL);
	r = pthread_mutex_lock(m);
	CHECK(r == EOWNERDEAD, "lock after the owner thread died: %d", r);
	CHECK(pthread_mutex_consistent(m) == 0, "consistent");
	CHECK(pthread_mutex_unlock(m) == 0 && pthread_mutex_lock(m) == 0 && pthread_mutex_unlock(m) == 0, "relock");
	say("thread died holding a robust mutex: EOWNERDEAD, consistent, usable again\n");

	pthread_mutex_destroy(m);
	init_robust(PTHREAD_PROCESS_SHARED);
	pid = fork();
	if (pid == 0) {
		pthread_mutex_lock(m);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	r = pthread_mutex_lock(m);
	CHECK(r == EOWNERDEAD, "lock after the owner process died: %d", r);
	pthread_mutex_consistent(m);
	pthread_mutex_unlock(m);
	say("process died holding a shared robust mutex: EOWNERDEAD\n");
	ok();
}

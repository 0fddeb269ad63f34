/* POSIX semaphores between threads: a counting handoff of 300 posts and
 * a sem_timedwait that times out. */
#include "corpus.h"
#include <pthread.h>
#include <semaphore.h>

static sem_t items, spaces;
static long got;

static void *consumer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 300; i++) {
		sem_wait(&items);
		got++;
		sem_post(&spaces);
	}
	return NULL;
}

int main(void)
{
	pthread_t t;
	struct timespec dl;
	int v;

	sem_init(&items, 0, 0);
	sem_init(&spaces, 0, 8);
	pthread_create(&t, NULL, consumer, NULL);
	for (int i = 0; i < 300; i++) {
		sem_wait(&spaces);
		sem_post(&items);
	}
	pthread_join(t, NULL);
	sem_getvalue(&spaces, &v);
	CHECK(got == 300 && v == 8, "got %ld spaces %d", got, v);
	say("300 items through an 8-slot semaphore pair\n");
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += 20000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	CHECK(sem_timedwait(&items, &dl) == -1 && errno == ETIMEDOUT, "timedwait");
	CHECK(sem_trywait(&items) == -1 && errno == EAGAIN, "trywait");
	say("empty semaphore: sem_timedwait ETIMEDOUT, sem_trywait EAGAIN\n");
	ok();
}

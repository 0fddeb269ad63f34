/* Threads exit (return, pthread_exit, detached) while others keep running
 * and allocating; the survivors' work is intact. */
#include "corpus.h"
#include <pthread.h>

static volatile int stop;
static volatile long work[2];
static volatile int short_done;

static void *busy(void *arg)
{
	long i = (long)arg;

	while (!stop) {
		void *p = malloc(64 + (work[i] & 255));
		free(p);
		work[i]++;
	}
	return (void *)work[i];
}

static void *short_lived(void *arg)
{
	__atomic_add_fetch(&short_done, 1, __ATOMIC_SEQ_CST);
	if ((long)arg & 1)
		pthread_exit((void *)arg);
	return arg;
}

int main(void)
{
	pthread_t b[2], s;
	pthread_attr_t det;
	void *r;

	for (long i = 0; i < 2; i++)
		pthread_create(&b[i], NULL, busy, (void *)i);
	for (long i = 0; i < 40; i++) {
		pthread_create(&s, NULL, short_lived, (void *)i);
		CHECK(pthread_join(s, &r) == 0 && r == (void *)i, "join %ld", i);
	}
	pthread_attr_init(&det);
	pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
	for (long i = 0; i < 20; i++)
		pthread_create(&s, &det, short_lived, (void *)i);
	for (int tries = 0; short_done < 60; tries++) {
		CHECK(tries < 10000, "detached threads did not all run");
		sleep_ms(1);
	}
	stop = 1;
	for (int i = 0; i < 2; i++) {
		CHECK(pthread_join(b[i], &r) == 0 && (long)r == work[i] && work[i] > 0, "busy %d", i);
	}
	say("60 threads exited (return, pthread_exit, detached) while 2 busy threads ran\n");
	ok();
}

/* 4 threads increment a counter under a mutex 2000 times each, and a
 * trylock sees EBUSY while another holds the lock. */
#include "corpus.h"
#include <pthread.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *run(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&mu);
		counter++;
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

static void *try(void *arg)
{
	(void)arg;
	return (void *)(long)pthread_mutex_trylock(&mu);
}

int main(void)
{
	pthread_t t[4];
	void *r;

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, run, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(counter == 8000, "counter %ld", counter);
	say("4 x 2000 locked increments: 8000\n");
	pthread_mutex_lock(&mu);
	pthread_create(&t[0], NULL, try, NULL);
	pthread_join(t[0], &r);
	pthread_mutex_unlock(&mu);
	CHECK((long)r == EBUSY, "trylock returned %ld", (long)r);
	say("trylock on a held mutex: EBUSY\n");
	ok();
}

/* Two threads do 200000 atomic increments each on one cache line, and a
 * compare-and-swap counter; no update is lost. */
#include "corpus.h"
#include <pthread.h>

static long counter, cas_counter;

static void *run(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200000; i++) {
		__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
		long old = __atomic_load_n(&cas_counter, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&cas_counter, &old, old + 1, 1, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
			;
	}
	return NULL;
}

int main(void)
{
	pthread_t t;

	pthread_create(&t, NULL, run, NULL);
	run(NULL);
	pthread_join(t, NULL);
	CHECK(counter == 400000 && cas_counter == 400000, "%ld %ld", counter, cas_counter);
	say("2 x 200000 atomic adds and CAS increments: 400000 each\n");
	ok();
}

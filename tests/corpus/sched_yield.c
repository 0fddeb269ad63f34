/* Two threads alternate through sched_yield and an atomic turn variable,
 * 200 turns each, with no futex or sleep. */
#include "corpus.h"
#include <pthread.h>
#include <sched.h>

static volatile int turn;

static void *run(void *arg)
{
	int me = (int)(long)arg;

	for (int i = 0; i < 200; i++) {
		while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != me)
			sched_yield();
		__atomic_store_n(&turn, 1 - me, __ATOMIC_RELEASE);
	}
	return NULL;
}

int main(void)
{
	pthread_t t;

	pthread_create(&t, NULL, run, (void *)1L);
	run((void *)0L);
	pthread_join(t, NULL);
	CHECK(sched_yield() == 0, "sched_yield");
	say("2 threads alternated 200 times each by sched_yield\n");
	ok();
}

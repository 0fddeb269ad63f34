/* pthread barriers: 4 threads x 20 rounds; in each round every thread
 * sees all 4 arrivals, and exactly one gets PTHREAD_BARRIER_SERIAL_THREAD. */
#include "corpus.h"
#include <pthread.h>

#define N 4
#define ROUNDS 20
static pthread_barrier_t bar;
static volatile int arrived[ROUNDS], serial[ROUNDS], bad;

static void *run(void *arg)
{
	(void)arg;
	for (int r = 0; r < ROUNDS; r++) {
		__atomic_add_fetch(&arrived[r], 1, __ATOMIC_SEQ_CST);
		if (pthread_barrier_wait(&bar) == PTHREAD_BARRIER_SERIAL_THREAD)
			__atomic_add_fetch(&serial[r], 1, __ATOMIC_SEQ_CST);
		if (arrived[r] != N)
			bad = 1;
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[N];

	pthread_barrier_init(&bar, NULL, N);
	for (int i = 1; i < N; i++)
		pthread_create(&t[i], NULL, run, NULL);
	run(NULL);
	for (int i = 1; i < N; i++)
		pthread_join(t[i], NULL);
	CHECK(!bad, "a thread passed the barrier before all arrived");
	for (int r = 0; r < ROUNDS; r++)
		CHECK(serial[r] == 1, "round %d had %d serial threads", r, serial[r]);
	say("4 threads, 20 barrier rounds: all arrived each time, one serial thread per round\n");
	ok();
}

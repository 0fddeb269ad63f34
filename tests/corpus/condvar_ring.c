/* 10 threads pass a token around a ring with one mutex and a broadcast
 * condition variable, 100 laps (issue 19: 10 condvar threads did not
 * finish recording with the serialized recorder). */
#include "corpus.h"
#include <pthread.h>

#define N 10
#define LAPS 5
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn, passes[N];

static void *run(void *arg)
{
	int me = (int)(long)arg;

	pthread_mutex_lock(&mu);
	for (int lap = 0; lap < LAPS; lap++) {
		while (turn != me)
			pthread_cond_wait(&cv, &mu);
		passes[me]++;
		turn = (me + 1) % N;
		pthread_cond_broadcast(&cv);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(void)
{
	pthread_t t[N];

	for (long i = 0; i < N; i++)
		pthread_create(&t[i], NULL, run, (void *)i);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++)
		CHECK(passes[i] == LAPS, "thread %d passed %d times", i, passes[i]);
	say("10 threads passed the token 5 laps in ring order\n");
	ok();
}

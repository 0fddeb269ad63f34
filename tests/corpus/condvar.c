/* Condition variables: a bounded queue with 2 producers and 2 consumers
 * moves 400 items; the sum is exact. Also a timed wait that times out. */
#include "corpus.h"
#include <pthread.h>

#define ITEMS 200
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t notfull = PTHREAD_COND_INITIALIZER, notempty = PTHREAD_COND_INITIALIZER;
static int q[16], head, len, done_producers;
static long long consumed_sum;

static void *producer(void *arg)
{
	long base = (long)arg;

	for (int i = 1; i <= ITEMS; i++) {
		pthread_mutex_lock(&mu);
		while (len == 16)
			pthread_cond_wait(&notfull, &mu);
		q[(head + len++) % 16] = (int)(base + i);
		pthread_cond_signal(&notempty);
		pthread_mutex_unlock(&mu);
	}
	pthread_mutex_lock(&mu);
	done_producers++;
	pthread_cond_broadcast(&notempty);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (len == 0 && done_producers < 2)
			pthread_cond_wait(&notempty, &mu);
		if (len == 0)
			break;
		consumed_sum += q[head];
		head = (head + 1) % 16;
		len--;
		pthread_cond_signal(&notfull);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(void)
{
	pthread_t p[2], c[2];
	struct timespec dl;
	long long want = 0;

	for (long i = 0; i < 2; i++) {
		pthread_create(&c[i], NULL, consumer, NULL);
		pthread_create(&p[i], NULL, producer, (void *)(i * 100000));
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(p[i], NULL);
		pthread_join(c[i], NULL);
	}
	for (long b = 0; b < 2; b++)
		for (int i = 1; i <= ITEMS; i++)
			want += b * 100000 + i;
	CHECK(consumed_sum == want, "sum %lld want %lld", consumed_sum, want);
	say("2 producers, 2 consumers, 400 items through a 16-slot queue: sum %lld\n", want);

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += 30000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mu);
	int r = pthread_cond_timedwait(&notempty, &mu, &dl);
	pthread_mutex_unlock(&mu);
	CHECK(r == ETIMEDOUT, "timedwait returned %d", r);
	say("pthread_cond_timedwait with nobody signalling: ETIMEDOUT\n");
	ok();
}

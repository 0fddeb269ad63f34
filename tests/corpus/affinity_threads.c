/* Threads pinned to different CPUs each count in their own slot; the
 * counts are exact and each thread ran on its CPU. */
#include "corpus.h"
#include <pthread.h>
#include <sched.h>

static int cpus[2];
static volatile int wrong;
static long counts[2];

static void *run(void *arg)
{
	long i = (long)arg;
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpus[i], &s);
	if (pthread_setaffinity_np(pthread_self(), sizeof(s), &s) != 0)
		wrong = 1;
	for (int k = 0; k < 100000; k++) {
		counts[i]++;
		if ((k & 1023) == 0 && sched_getcpu() != cpus[i])
			wrong = 1;
	}
	return NULL;
}

int main(void)
{
	cpu_set_t all;
	pthread_t t[2];
	int n = 0;

	sched_getaffinity(0, sizeof(all), &all);
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &all))
			cpus[n++] = c;
	if (n == 1)
		cpus[1] = cpus[0];
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, run, (void *)i);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(!wrong, "a pinned thread ran elsewhere");
	CHECK(counts[0] == 100000 && counts[1] == 100000, "counts");
	say("2 threads pinned to separate CPUs: 100000 each, never elsewhere\n");
	ok();
}

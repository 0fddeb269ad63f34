/*
 * mutexc: mutex contention (issue 18's sync-heavy set).  THREADS threads
 * share OPS critical sections of one pthread mutex (split evenly), with
 * a little private work between them, so the lock is mostly contended:
 * musl's mutex spins briefly, then waits on a futex.
 *
 * Inside the lock a counter advances and a hash takes in each value, so
 * the hash is that of 1..OPS in order whatever thread made each step:
 * the same for every thread count, checked against a serial run.
 *
 *   tiny: 100000 ops    small: 1000000 ops
 */
#include "wl.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counter, hash = WL_FNV_INIT;

struct worker {
	long ops;
	uint64_t seed, work;
};

static void *run(void *arg)
{
	struct worker *w = arg;
	struct wl_rng g;

	wl_rng_seed(&g, w->seed);
	for (long i = 0; i < w->ops; i++) {
		/* Private work between critical sections: a few dozen cycles. */
		for (int k = 0; k < 8; k++)
			w->work += wl_rng_next(&g) >> 60;
		pthread_mutex_lock(&mu);
		counter++;
		hash = wl_fnv_u64(hash, counter);
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	long ops = a.size == WL_TINY ? 100000 : 1000000;
	struct worker w[WL_MAX_THREADS];
	uint64_t want = WL_FNV_INIT;

	for (int i = 0; i < a.threads; i++)
		w[i] = (struct worker){ ops / a.threads + (i == 0 ? ops % a.threads : 0), 1000 + (uint64_t)i, 0 };
	wl_run_threads(a.threads, run, w, sizeof w[0]);

	for (long i = 1; i <= ops; i++)
		want = wl_fnv_u64(want, (uint64_t)i);
	int ok = counter == (uint64_t)ops && hash == want;
	if (!ok)
		fprintf(stderr, "mutexc: counter %llu of %ld, hash %016llx want %016llx\n",
			(unsigned long long)counter, ops, (unsigned long long)hash, (unsigned long long)want);
	return WL_FINISH(ok, "mutexc", a, "ops=%ld hash=%016llx", ops, (unsigned long long)hash);
}

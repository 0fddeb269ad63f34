/*
 * cvping: condition-variable ping-pong (issue 18's sync-heavy set; no
 * PARSEC program is like it).  THREADS threads pass a token round a ring
 * under one mutex, each waiting on its own condition variable, so every
 * pass wakes another thread: the recorder sees a futex wake and a futex
 * wait per pass and almost no computation.
 *
 * The token carries a value that each pass advances with splitmix64, so
 * the result is the same for any thread count: the value after PASSES
 * passes, checked against a serial computation.
 *
 *   tiny: 4000 passes    small: 40000 passes
 */
#include "wl.h"

struct ring {
	pthread_mutex_t mu;
	pthread_cond_t cv[WL_MAX_THREADS];
	int n, holder;
	long pass, passes;
	uint64_t v;
};

struct worker {
	struct ring *r;
	int id;
	long mine; /* passes this thread made */
};

static void *run(void *arg)
{
	struct worker *w = arg;
	struct ring *r = w->r;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (r->holder != w->id && r->pass < r->passes)
			pthread_cond_wait(&r->cv[w->id], &r->mu);
		if (r->pass >= r->passes)
			break;
		wl_splitmix64(&r->v);
		r->pass++;
		w->mine++;
		r->holder = (w->id + 1) % r->n;
		if (r->pass >= r->passes) {
			for (int i = 0; i < r->n; i++)
				pthread_cond_broadcast(&r->cv[i]);
			break;
		}
		pthread_cond_signal(&r->cv[r->holder]);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	static struct ring r;
	struct worker w[WL_MAX_THREADS];
	uint64_t want = 0x5a5a;

	r.n = a.threads;
	r.passes = a.size == WL_TINY ? 4000 : 40000;
	r.v = 0x5a5a;
	pthread_mutex_init(&r.mu, NULL);
	for (int i = 0; i < r.n; i++) {
		pthread_cond_init(&r.cv[i], NULL);
		w[i] = (struct worker){ &r, i, 0 };
	}
	wl_run_threads(r.n, run, w, sizeof w[0]);

	for (long i = 0; i < r.passes; i++)
		wl_splitmix64(&want);
	long total = 0;
	int fair = 1;
	for (int i = 0; i < r.n; i++) {
		total += w[i].mine;
		/* A ring: every thread holds the token in turn. */
		if (w[i].mine < r.passes / r.n || w[i].mine > r.passes / r.n + 1)
			fair = 0;
	}
	int ok = r.v == want && total == r.passes && fair;
	if (!ok)
		fprintf(stderr, "cvping: value %016llx want %016llx, passes %ld of %ld, ring order %s\n",
			(unsigned long long)r.v, (unsigned long long)want, total, r.passes, fair ? "kept" : "broken");
	return WL_FINISH(ok, "cvping", a, "passes=%ld value=%016llx", r.passes, (unsigned long long)r.v);
}

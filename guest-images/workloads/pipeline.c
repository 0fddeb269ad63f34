/*
 * pipeline: a producer/consumer pipeline (issue 18's sync-heavy set, in
 * the manner of PARSEC's dedup and ferret).  One producer makes ITEMS
 * items into a bounded queue; THREADS workers take them, transform each
 * (a few hundred cycles of hashing) and put the result into a second
 * bounded queue; one consumer adds the results up.  The queues are a
 * mutex and two condition variables each, 16 slots: the stages wait for
 * each other all the time.
 *
 * The sum is order-independent, so it is the same for every thread
 * count; it is checked against a serial computation.
 *
 *   tiny: 20000 items    small: 200000 items
 */
#include "wl.h"

#define SLOTS 16
#define DONE UINT64_MAX

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t not_empty, not_full;
	uint64_t slot[SLOTS];
	int head, len;
};

static void q_init(struct queue *q)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
}

static void q_put(struct queue *q, uint64_t v)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == SLOTS)
		pthread_cond_wait(&q->not_full, &q->mu);
	q->slot[(q->head + q->len++) % SLOTS] = v;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->mu);
}

static uint64_t q_get(struct queue *q)
{
	pthread_mutex_lock(&q->mu);
	while (q->len == 0)
		pthread_cond_wait(&q->not_empty, &q->mu);
	uint64_t v = q->slot[q->head];
	q->head = (q->head + 1) % SLOTS;
	q->len--;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->mu);
	return v;
}

static struct queue in, out;
static long items;

/* transform is a worker's work on one item: 32 rounds of splitmix64. */
static uint64_t transform(uint64_t v)
{
	uint64_t s = v;
	for (int i = 0; i < 32; i++)
		wl_splitmix64(&s);
	return s & ~(1ULL << 63); /* never DONE */
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		uint64_t v = q_get(&in);
		if (v == DONE) {
			q_put(&out, DONE);
			return NULL;
		}
		q_put(&out, transform(v));
	}
}

struct end {
	int workers;
	uint64_t sum;
	long got;
};

static void *producer(void *arg)
{
	struct end *e = arg;
	for (long i = 0; i < items; i++)
		q_put(&in, (uint64_t)i * 0x9e3779b97f4a7c15ULL >> 1);
	for (int i = 0; i < e->workers; i++)
		q_put(&in, DONE);
	return NULL;
}

static void *consumer(void *arg)
{
	struct end *e = arg;
	for (int done = 0; done < e->workers;) {
		uint64_t v = q_get(&out);
		if (v == DONE) {
			done++;
			continue;
		}
		e->sum += v;
		e->got++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	struct end e = { a.threads, 0, 0 };
	pthread_t p, c;
	uint64_t want = 0;

	items = a.size == WL_TINY ? 20000 : 200000;
	q_init(&in);
	q_init(&out);
	if (pthread_create(&p, NULL, producer, &e) != 0 || pthread_create(&c, NULL, consumer, &e) != 0) {
		fprintf(stderr, "pipeline: pthread_create failed\n");
		return 1;
	}
	char none[WL_MAX_THREADS];
	wl_run_threads(a.threads, worker, none, 1);
	pthread_join(p, NULL);
	pthread_join(c, NULL);

	for (long i = 0; i < items; i++)
		want += transform((uint64_t)i * 0x9e3779b97f4a7c15ULL >> 1);
	int ok = e.got == items && e.sum == want;
	if (!ok)
		fprintf(stderr, "pipeline: %ld of %ld items, sum %016llx want %016llx\n", e.got, items,
			(unsigned long long)e.sum, (unsigned long long)want);
	return WL_FINISH(ok, "pipeline", a, "items=%ld sum=%016llx", items, (unsigned long long)e.sum);
}

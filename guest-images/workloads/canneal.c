/*
 * canneal - models PARSEC canneal.
 *
 * Simulated annealing of a chip netlist placement.  Elements sit on a
 * G x G grid (loc[elem] <-> elem_at[loc], a permutation); the cost is the
 * total Manhattan wire length of the netlist.  All threads work on the one
 * shared netlist at the same time: each repeatedly picks two random
 * elements, claims them and their neighbours with per-element
 * compare-and-exchange spin-try-locks (backing off if any is taken), computes
 * the exact cost change of swapping their locations, and if the move is
 * accepted at the current temperature swaps the two locations with atomic
 * exchanges.  Temperature steps are separated by a barrier.
 *
 * Which moves win the races depends on thread interleaving, so the final
 * placement and cost legitimately vary from run to run with threads > 1.
 * The summary line therefore shows only interleaving-independent numbers.
 *
 * Check: after the run loc/elem_at is still a permutation and mutually
 * inverse, no element is left claimed, the cost recomputed from scratch
 * equals initial cost + sum of all applied deltas, and annealing reduced
 * the cost.
 */
#include <math.h>

#include "wl.h"

#define FANOUT 3
#define MAXDEG 12

struct net {
	int G, n;
	int *deg;         /* n */
	int *adj;         /* n x MAXDEG */
	int *loc;         /* n: element -> location */
	int *elem_at;     /* n: location -> element */
	int *lock;        /* n: claim word, 0 = free */
	int steps, moves_per_step;
	double temp0, cool;
	pthread_barrier_t bar;
	int T;
};

struct worker {
	struct net *nt;
	int tid;
	int64_t delta_sum;
	long accepted, contended;
	char pad[64];
};

static inline int mdist(int G, int l1, int l2)
{
	int dx = l1 % G - l2 % G, dy = l1 / G - l2 / G;
	return (dx < 0 ? -dx : dx) + (dy < 0 ? -dy : dy);
}

static int64_t total_cost(const struct net *nt)
{
	int64_t c = 0;
	for (int e = 0; e < nt->n; e++)
		for (int k = 0; k < nt->deg[e]; k++)
			c += mdist(nt->G, nt->loc[e], nt->loc[nt->adj[e * MAXDEG + k]]);
	return c;
}

static inline int try_claim(int *w)
{
	int expect = 0;
	return __atomic_compare_exchange_n(w, &expect, 1, 0, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

static inline void release(int *w)
{
	__atomic_store_n(w, 0, __ATOMIC_RELEASE);
}

/* Cost change (counted for both directions of each net) of giving element
 * e location nl instead of ol, ignoring its connections to 'other'. */
static int64_t move_delta(const struct net *nt, int e, int ol, int nl,
			  int other)
{
	int64_t d = 0;
	const int *a = nt->adj + (size_t)e * MAXDEG;
	for (int k = 0; k < nt->deg[e]; k++) {
		int q = a[k];
		if (q == other)
			continue;
		int lq = nt->loc[q];
		d += mdist(nt->G, nl, lq) - mdist(nt->G, ol, lq);
	}
	return 2 * d;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct net *nt = w->nt;
	struct wl_rng rng;
	wl_rng_seed(&rng, 0xca77ea1ULL + 0x1000ULL * (uint64_t)w->tid);
	int held[2 + 2 * MAXDEG];
	int my_moves = nt->moves_per_step / nt->T +
		       (w->tid < nt->moves_per_step % nt->T);
	double temp = nt->temp0;

	for (int s = 0; s < nt->steps; s++) {
		for (int m = 0; m < my_moves; m++) {
			int a = (int)wl_rng_below(&rng, (uint32_t)nt->n);
			int b = (int)wl_rng_below(&rng, (uint32_t)nt->n);
			double u = wl_rng_double(&rng);
			if (a == b)
				continue;
			/* Claim a, b and all their neighbours (deduplicated). */
			int nh = 0, fail = 0;
			int cand[2 + 2 * MAXDEG], nc = 0;
			cand[nc++] = a;
			cand[nc++] = b;
			for (int k = 0; k < nt->deg[a]; k++)
				cand[nc++] = nt->adj[a * MAXDEG + k];
			for (int k = 0; k < nt->deg[b]; k++)
				cand[nc++] = nt->adj[b * MAXDEG + k];
			for (int i = 0; i < nc && !fail; i++) {
				int dup = 0;
				for (int j = 0; j < nh; j++)
					if (held[j] == cand[i])
						dup = 1;
				if (dup)
					continue;
				if (try_claim(&nt->lock[cand[i]]))
					held[nh++] = cand[i];
				else
					fail = 1;
			}
			if (!fail) {
				int la = nt->loc[a], lb = nt->loc[b];
				int64_t d = move_delta(nt, a, la, lb, b) +
					    move_delta(nt, b, lb, la, a);
				if (d <= 0 || u < exp(-(double)d / temp)) {
					int oa = __atomic_exchange_n(&nt->loc[a], lb,
								     __ATOMIC_RELAXED);
					int ob = __atomic_exchange_n(&nt->loc[b], oa,
								     __ATOMIC_RELAXED);
					__atomic_store_n(&nt->elem_at[ob], a,
							 __ATOMIC_RELAXED);
					__atomic_store_n(&nt->elem_at[oa], b,
							 __ATOMIC_RELAXED);
					w->delta_sum += d;
					w->accepted++;
				}
			} else {
				w->contended++;
			}
			for (int j = 0; j < nh; j++)
				release(&nt->lock[held[j]]);
		}
		temp *= nt->cool;
		pthread_barrier_wait(&nt->bar);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int tiny = a.size == WL_TINY;
	struct net nt;
	memset(&nt, 0, sizeof nt);
	nt.G = tiny ? 64 : 256;
	nt.n = nt.G * nt.G;
	nt.steps = tiny ? 32 : 64;
	nt.moves_per_step = tiny ? 2048 : 100000;
	nt.temp0 = 16.0;
	nt.cool = 0.88;
	nt.T = a.threads;
	int n = nt.n;
	nt.deg = wl_xcalloc((size_t)n, sizeof(int));
	nt.adj = wl_xmalloc(sizeof(int) * (size_t)n * MAXDEG);
	nt.loc = wl_xmalloc(sizeof(int) * (size_t)n);
	nt.elem_at = wl_xmalloc(sizeof(int) * (size_t)n);
	nt.lock = wl_xcalloc((size_t)n, sizeof(int));

	/* Netlist: each element drives FANOUT nets to mostly nearby (in
	 * element numbering) sinks, some far; connections are symmetric. */
	struct wl_rng rng;
	wl_rng_seed(&rng, 0x4e7115ULL);
	for (int e = 0; e < n; e++) {
		for (int f = 0; f < FANOUT; f++) {
			int q;
			if (wl_rng_below(&rng, 4) == 0)
				q = (int)wl_rng_below(&rng, (uint32_t)n);
			else
				q = (e + 1 + (int)wl_rng_below(&rng, 64)) % n;
			if (q == e || nt.deg[e] >= MAXDEG || nt.deg[q] >= MAXDEG)
				continue;
			nt.adj[e * MAXDEG + nt.deg[e]++] = q;
			nt.adj[q * MAXDEG + nt.deg[q]++] = e;
		}
	}
	/* Random initial placement (Fisher-Yates). */
	for (int i = 0; i < n; i++)
		nt.elem_at[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)wl_rng_below(&rng, (uint32_t)i + 1);
		int t = nt.elem_at[i];
		nt.elem_at[i] = nt.elem_at[j];
		nt.elem_at[j] = t;
	}
	for (int l = 0; l < n; l++)
		nt.loc[nt.elem_at[l]] = l;
	int64_t initial = total_cost(&nt);

	pthread_barrier_init(&nt.bar, NULL, (unsigned)a.threads);
	static struct worker w[WL_MAX_THREADS];
	for (int t = 0; t < a.threads; t++) {
		w[t].nt = &nt;
		w[t].tid = t;
	}
	wl_run_threads(a.threads, worker_main, w, sizeof w[0]);

	int64_t tracked = initial;
	long accepted = 0, contended = 0;
	for (int t = 0; t < a.threads; t++) {
		tracked += w[t].delta_sum;
		accepted += w[t].accepted;
		contended += w[t].contended;
	}
	int64_t final = total_cost(&nt);

	int perm_ok = 1, locks_ok = 1;
	unsigned char *seen = wl_xcalloc((size_t)n, 1);
	for (int e = 0; e < n; e++) {
		int l = nt.loc[e];
		if (l < 0 || l >= n || seen[l] || nt.elem_at[l] != e)
			perm_ok = 0;
		else
			seen[l] = 1;
		if (nt.lock[e] != 0)
			locks_ok = 0;
	}
	int ok = perm_ok && locks_ok && final == tracked && final < initial &&
		 accepted > 0;
	if (!ok)
		fprintf(stderr,
			"canneal: perm=%d locks=%d initial=%lld tracked=%lld "
			"recomputed=%lld accepted=%ld contended=%ld\n",
			perm_ok, locks_ok, (long long)initial, (long long)tracked,
			(long long)final, accepted, contended);
	return WL_FINISH(ok, "canneal", a,
			 "elements=%d steps=%d moves=%d initial_cost=%lld", n,
			 nt.steps, nt.steps * nt.moves_per_step,
			 (long long)initial);
}

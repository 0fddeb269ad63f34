/*
 * streamcluster - models PARSEC streamcluster.
 *
 * Online k-median clustering of a stream of points.  The stream is consumed
 * in chunks; for each chunk a team of threads runs a facility-location
 * local search ("pgain"): a candidate point x is drawn, every thread
 * evaluates over its block of points how much opening x (and closing the
 * centers that become useless) would save, the partial gains are combined,
 * and if the move pays off every thread reassigns its points.  Each
 * candidate costs four pthread_barrier_wait rounds, so the workload is
 * dominated by barrier synchronisation over shared center state (is_center,
 * center table, per-thread "lower" gain rows).  The weighted centers of
 * every chunk form a pool that is clustered again at the end.
 *
 * Coordinates, weights and costs are integers (PARSEC uses float), so
 * partial sums are exact and the result does not depend on how the points
 * are split among threads.
 *
 * Check: the parallel run must produce exactly the same chunk costs, pool,
 * final assignment and final cost as a single-threaded run of the same
 * algorithm, and the final cost recomputed from scratch must equal the
 * tracked cost with every point assigned to an open center.
 */
#include "wl.h"

#define KMAX 256
#define ZDIV 200

struct problem {
	const int32_t *pts; /* n x dim coordinates */
	const int64_t *w;   /* weights */
	int n;
};

struct part {
	int64_t cost, gain, gain2;
	int cnt, close;
	char pad[64 - 4 * sizeof(int64_t)];
};

struct team {
	int T, dim;
	pthread_barrier_t bar;
	/* stream */
	const int32_t *stream;
	const int64_t *ones;
	int nstream, chunk, cands_chunk, cands_final;
	uint64_t seed;
	/* working arrays, sized nmax */
	int *assign, *ctab, *poolidx;
	int64_t *cost;
	unsigned char *is_center, *sw;
	int cpoint[KMAX];
	int64_t gl_lower[KMAX];
	int64_t *lower; /* T x KMAX */
	struct part part[WL_MAX_THREADS];
	/* pool of weighted chunk centers */
	int32_t *pool;
	int64_t *poolw;
	int npool;
	/* results */
	uint64_t hash;
	int64_t final_cost;
	int final_k, accepted;
};

struct tctx {
	struct team *tm;
	int tid;
};

static inline int64_t dist2(const int32_t *a, const int32_t *b, int dim)
{
	int64_t s = 0;
	for (int d = 0; d < dim; d++) {
		int64_t v = (int64_t)a[d] - b[d];
		s += v * v;
	}
	return s;
}

static void barrier(struct team *tm)
{
	pthread_barrier_wait(&tm->bar);
}

/* Evaluate candidate x; open it (closing useless centers) if it pays off.
 * Called by every thread of the team with the same x. */
static int pgain(struct team *tm, int tid, const struct problem *p, int x,
		 int64_t z)
{
	int T = tm->T, dim = tm->dim;
	int lo = (int)((long)p->n * tid / T), hi = (int)((long)p->n * (tid + 1) / T);
	const int32_t *px = p->pts + (size_t)x * dim;

	/* P0: count centers in my block. */
	int c = 0;
	for (int i = lo; i < hi; i++)
		c += tm->is_center[i];
	tm->part[tid].cnt = c;
	barrier(tm);

	/* P2: number my centers, clear my lower row. */
	int off = 0, ncenters = 0;
	for (int t = 0; t < T; t++) {
		if (t < tid)
			off += tm->part[t].cnt;
		ncenters += tm->part[t].cnt;
	}
	for (int i = lo; i < hi; i++) {
		if (tm->is_center[i]) {
			tm->ctab[i] = off;
			tm->cpoint[off] = i;
			off++;
		}
	}
	int64_t *mylower = tm->lower + (size_t)tid * KMAX;
	for (int k = 0; k < ncenters; k++)
		mylower[k] = 0;
	barrier(tm);

	/* P3: per point, would it switch to x?  Otherwise what would it cost
	 * to move it to x if its center closed? */
	int64_t gain = 0;
	for (int i = lo; i < hi; i++) {
		int64_t xc = p->w[i] * dist2(p->pts + (size_t)i * dim, px, dim);
		int64_t cur = tm->cost[i];
		if (xc < cur) {
			tm->sw[i] = 1;
			gain += xc - cur;
		} else {
			tm->sw[i] = 0;
			mylower[tm->ctab[tm->assign[i]]] += cur - xc;
		}
	}
	tm->part[tid].gain = gain;
	barrier(tm);

	/* P4: per center (my slice of center slots): close it? */
	int klo = ncenters * tid / T, khi = ncenters * (tid + 1) / T;
	int64_t gain2 = 0;
	int close = 0;
	for (int k = klo; k < khi; k++) {
		int64_t low = z;
		for (int t = 0; t < T; t++)
			low += tm->lower[(size_t)t * KMAX + k];
		tm->gl_lower[k] = low;
		if (low > 0) {
			close++;
			gain2 -= low;
		}
	}
	tm->part[tid].gain2 = gain2;
	tm->part[tid].close = close;
	barrier(tm);

	/* P5: every thread combines the partials identically. */
	int64_t total = z;
	int nclose = 0;
	for (int t = 0; t < T; t++) {
		total += tm->part[t].gain + tm->part[t].gain2;
		nclose += tm->part[t].close;
	}
	int accept = total < 0 && ncenters - nclose + 1 <= KMAX;

	/* P6: apply. */
	if (accept) {
		for (int i = lo; i < hi; i++) {
			if (tm->sw[i] || tm->gl_lower[tm->ctab[tm->assign[i]]] > 0) {
				tm->assign[i] = x;
				tm->cost[i] = p->w[i] *
					      dist2(p->pts + (size_t)i * dim, px, dim);
			}
		}
		for (int k = klo; k < khi; k++)
			if (tm->gl_lower[k] > 0)
				tm->is_center[tm->cpoint[k]] = 0;
		if (tid == 0)
			tm->is_center[x] = 1;
	}
	barrier(tm);
	return accept;
}

/* Local search on one problem; every team thread calls it. */
static void local_search(struct team *tm, int tid, const struct problem *p,
			 int cands, uint64_t seed)
{
	int T = tm->T, dim = tm->dim;
	int lo = (int)((long)p->n * tid / T), hi = (int)((long)p->n * (tid + 1) / T);

	/* Start with point 0 as the only center. */
	int64_t s = 0;
	for (int i = lo; i < hi; i++) {
		tm->assign[i] = 0;
		tm->cost[i] = p->w[i] * dist2(p->pts + (size_t)i * dim, p->pts, dim);
		tm->is_center[i] = i == 0;
		s += tm->cost[i];
	}
	tm->part[tid].cost = s;
	barrier(tm);
	int64_t total = 0;
	for (int t = 0; t < T; t++)
		total += tm->part[t].cost;
	int64_t z = total / ZDIV + 1;
	barrier(tm); /* part[].cost is reused below */

	/* Every thread draws the same candidate sequence. */
	struct wl_rng rng;
	wl_rng_seed(&rng, seed);
	int acc = 0;
	for (int c = 0; c < cands; c++) {
		int x = (int)wl_rng_below(&rng, (uint32_t)p->n);
		if (tm->is_center[x])
			continue;
		acc += pgain(tm, tid, p, x, z);
	}
	if (tid == 0)
		tm->accepted += acc;
}

static void *team_main(void *arg)
{
	struct tctx *cx = arg;
	struct team *tm = cx->tm;
	int tid = cx->tid, dim = tm->dim;

	int nchunks = (tm->nstream + tm->chunk - 1) / tm->chunk;
	for (int ch = 0; ch < nchunks; ch++) {
		int base = ch * tm->chunk;
		int n = tm->nstream - base < tm->chunk ? tm->nstream - base : tm->chunk;
		struct problem p = { tm->stream + (size_t)base * dim, tm->ones, n };
		local_search(tm, tid, &p, tm->cands_chunk,
			     tm->seed + 0x100 * (uint64_t)ch);
		if (tid == 0) {
			/* Move the weighted chunk centers into the pool. */
			int64_t cc = 0;
			for (int i = 0; i < n; i++) {
				cc += tm->cost[i];
				if (tm->is_center[i]) {
					int q = tm->npool++;
					tm->poolidx[i] = q;
					memcpy(tm->pool + (size_t)q * dim,
					       p.pts + (size_t)i * dim,
					       sizeof(int32_t) * dim);
					tm->poolw[q] = 0;
				}
			}
			for (int i = 0; i < n; i++)
				tm->poolw[tm->poolidx[tm->assign[i]]] += p.w[i];
			tm->hash = wl_fnv_u64(tm->hash, (uint64_t)cc);
		}
		barrier(tm);
	}

	struct problem fp = { tm->pool, tm->poolw, tm->npool };
	local_search(tm, tid, &fp, tm->cands_final, tm->seed ^ 0xf17a1ULL);
	if (tid == 0) {
		int64_t fc = 0;
		int k = 0;
		for (int i = 0; i < fp.n; i++) {
			fc += tm->cost[i];
			k += tm->is_center[i];
			tm->hash = wl_fnv_u64(tm->hash, (uint64_t)tm->assign[i]);
		}
		tm->final_cost = fc;
		tm->final_k = k;
		tm->hash = wl_fnv_u64(tm->hash, (uint64_t)fc);
		tm->hash = wl_fnv_u64(tm->hash, (uint64_t)tm->npool);
	}
	return NULL;
}

static void team_init(struct team *tm, int T, int dim, const int32_t *stream,
		      const int64_t *ones, int nstream, int chunk, int cc,
		      int cf)
{
	memset(tm, 0, sizeof *tm);
	tm->T = T;
	tm->dim = dim;
	tm->stream = stream;
	tm->ones = ones;
	tm->nstream = nstream;
	tm->chunk = chunk;
	tm->cands_chunk = cc;
	tm->cands_final = cf;
	tm->seed = 0x57ea3c1u;
	int nchunks = (nstream + chunk - 1) / chunk;
	int nmax = chunk > nchunks * KMAX ? chunk : nchunks * KMAX;
	tm->assign = wl_xmalloc(sizeof(int) * (size_t)nmax);
	tm->ctab = wl_xmalloc(sizeof(int) * (size_t)nmax);
	tm->poolidx = wl_xmalloc(sizeof(int) * (size_t)nmax);
	tm->cost = wl_xmalloc(sizeof(int64_t) * (size_t)nmax);
	tm->is_center = wl_xmalloc((size_t)nmax);
	tm->sw = wl_xmalloc((size_t)nmax);
	tm->lower = wl_xmalloc(sizeof(int64_t) * (size_t)T * KMAX);
	tm->pool = wl_xmalloc(sizeof(int32_t) * (size_t)nchunks * KMAX * dim);
	tm->poolw = wl_xmalloc(sizeof(int64_t) * (size_t)nchunks * KMAX);
	tm->hash = WL_FNV_INIT;
	pthread_barrier_init(&tm->bar, NULL, (unsigned)T);
}

/* Recompute the final clustering cost from scratch. */
static int verify_final(const struct team *tm)
{
	int64_t fc = 0;
	for (int i = 0; i < tm->npool; i++) {
		int a = tm->assign[i];
		if (a < 0 || a >= tm->npool || !tm->is_center[a])
			return 0;
		int64_t c = tm->poolw[i] * dist2(tm->pool + (size_t)i * tm->dim,
						 tm->pool + (size_t)a * tm->dim,
						 tm->dim);
		if (c != tm->cost[i])
			return 0;
		fc += c;
	}
	return fc == tm->final_cost && tm->final_k >= 1;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int tiny = a.size == WL_TINY;
	int dim = tiny ? 16 : 32;
	int nstream = tiny ? 4096 : 65536;
	int chunk = tiny ? 1024 : 8192;
	int cc = tiny ? 120 : 800;
	int cf = tiny ? 200 : 1600;
	int nclusters = 24;

	int32_t *stream = wl_xmalloc(sizeof(int32_t) * (size_t)nstream * dim);
	int64_t *ones = wl_xmalloc(sizeof(int64_t) * (size_t)chunk);
	int32_t *ctr = wl_xmalloc(sizeof(int32_t) * (size_t)nclusters * dim);
	struct wl_rng rng;
	wl_rng_seed(&rng, 0xc105e7ULL);
	for (int i = 0; i < nclusters * dim; i++)
		ctr[i] = (int32_t)wl_rng_below(&rng, 10000);
	for (int i = 0; i < nstream; i++) {
		int c = (int)wl_rng_below(&rng, (uint32_t)nclusters);
		for (int d = 0; d < dim; d++)
			stream[(size_t)i * dim + d] =
				ctr[c * dim + d] + (int32_t)wl_rng_below(&rng, 1001) - 500;
	}
	for (int i = 0; i < chunk; i++)
		ones[i] = 1;

	static struct team par, ser;
	team_init(&par, a.threads, dim, stream, ones, nstream, chunk, cc, cf);
	team_init(&ser, 1, dim, stream, ones, nstream, chunk, cc, cf);

	struct tctx cx[WL_MAX_THREADS];
	for (int t = 0; t < a.threads; t++) {
		cx[t].tm = &par;
		cx[t].tid = t;
	}
	wl_run_threads(a.threads, team_main, cx, sizeof cx[0]);

	struct tctx scx = { &ser, 0 };
	team_main(&scx);

	int ok = par.hash == ser.hash && par.final_cost == ser.final_cost &&
		 par.npool == ser.npool && par.accepted == ser.accepted &&
		 verify_final(&par) && verify_final(&ser);
	if (!ok)
		fprintf(stderr,
			"streamcluster: par cost=%lld k=%d pool=%d acc=%d hash=%016llx; "
			"ser cost=%lld k=%d pool=%d acc=%d hash=%016llx; verify=%d/%d\n",
			(long long)par.final_cost, par.final_k, par.npool,
			par.accepted, (unsigned long long)par.hash,
			(long long)ser.final_cost, ser.final_k, ser.npool,
			ser.accepted, (unsigned long long)ser.hash,
			verify_final(&par), verify_final(&ser));
	return WL_FINISH(ok, "streamcluster", a,
			 "points=%d dim=%d pool=%d k=%d cost=%lld checksum=%016llx",
			 nstream, dim, par.npool, par.final_k,
			 (long long)par.final_cost, (unsigned long long)par.hash);
}

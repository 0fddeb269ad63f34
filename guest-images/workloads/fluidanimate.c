/*
 * fluidanimate - models PARSEC fluidanimate.
 *
 * A 2-D smoothed-particle-hydrodynamics style "dam break": particles live in
 * the linked lists of a uniform grid of cells, one pthread mutex per cell.
 * Each thread owns a band of cell rows.  Per frame (phases separated by
 * barriers): clear accumulators, accumulate densities, accumulate forces,
 * integrate, and rebuild the grid.  Density and force interactions are
 * evaluated once per particle pair over a half-shell of neighbour cells and
 * added to both particles, so a thread updates particles in cells owned by
 * other threads; every pair of cells is processed holding both cells'
 * mutexes (taken in index order).  In the rebuild phase particles that
 * crossed a cell boundary are unlinked and pushed onto the destination
 * cell's list under that cell's mutex, possibly a cell of another thread.
 *
 * All physics is fixed-point integer arithmetic (PARSEC uses float), so the
 * order in which contributions are added - which depends on thread
 * interleaving and on list order - does not change the result.
 *
 * Check: every particle is in exactly one cell list and in the cell its
 * position maps to (particle conservation), and the particle states are
 * bit-identical to an independent serial implementation (full-shell
 * neighbour search, counting-sort grid, no locks).
 */
#include "wl.h"

#define CS 256 /* cell size = interaction radius, fixed-point units */
#define H2 (CS * CS)
#define SELF_DENS 65536
#define RHO0 300000
#define ADIV 400000000LL
#define VISC 60000LL
#define AMAX 16
#define VMAX 64
#define GRAV 1

struct particle {
	int32_t px, py, vx, vy;
};

struct sim {
	int GX, GY, ncell, N, frames, T;
	struct particle *p;
	int64_t *dens, *fx, *fy;
	int *next, *head;
	pthread_mutex_t *mtx;
	pthread_barrier_t bar;
	long moved; /* particles that changed cell, atomic */
};

static inline int cell_of(const struct sim *s, const struct particle *q)
{
	return (q->py / CS) * s->GX + q->px / CS;
}

static inline int64_t kern(int64_t t)
{
	int64_t u = t >> 8;
	return u * u;
}

/* Pair force on particle a from particle b (antisymmetric exactly). */
static inline void pair_force(const struct particle *a, const struct particle *b,
			      int64_t da, int64_t db, int64_t tt, int64_t *fx,
			      int64_t *fy)
{
	int64_t pr = (da - RHO0) + (db - RHO0);
	int64_t w = tt >> 8;
	*fx = pr * w * (int64_t)(a->px - b->px) + VISC * w * (int64_t)(b->vx - a->vx);
	*fy = pr * w * (int64_t)(a->py - b->py) + VISC * w * (int64_t)(b->vy - a->vy);
}

static inline int32_t clamp32(int64_t v, int32_t lo, int32_t hi)
{
	return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

static void advance(struct particle *q, int64_t fx, int64_t fy, int W, int H)
{
	int64_t ax = clamp32(fx / ADIV, -AMAX, AMAX);
	int64_t ay = clamp32(fy / ADIV, -AMAX, AMAX);
	int32_t vx = clamp32(q->vx + ax, -VMAX, VMAX);
	int32_t vy = clamp32(q->vy + ay + GRAV, -VMAX, VMAX);
	int32_t px = q->px + vx, py = q->py + vy;
	if (px < 0) {
		px = -px;
		vx = -vx / 2;
	}
	if (px > W - 1) {
		px = 2 * (W - 1) - px;
		vx = -vx / 2;
	}
	if (py < 0) {
		py = -py;
		vy = -vy / 2;
	}
	if (py > H - 1) {
		py = 2 * (H - 1) - py;
		vy = -vy / 2;
	}
	q->px = clamp32(px, 0, W - 1);
	q->py = clamp32(py, 0, H - 1);
	q->vx = vx;
	q->vy = vy;
}

/* ---------------- parallel version ---------------- */

struct worker {
	struct sim *s;
	int tid;
};

static void lock2(struct sim *s, int a, int b)
{
	if (a == b) {
		pthread_mutex_lock(&s->mtx[a]);
	} else if (a < b) {
		pthread_mutex_lock(&s->mtx[a]);
		pthread_mutex_lock(&s->mtx[b]);
	} else {
		pthread_mutex_lock(&s->mtx[b]);
		pthread_mutex_lock(&s->mtx[a]);
	}
}

static void unlock2(struct sim *s, int a, int b)
{
	pthread_mutex_unlock(&s->mtx[a]);
	if (a != b)
		pthread_mutex_unlock(&s->mtx[b]);
}

/* Half-shell neighbour offsets: self, E, SW, S, SE. */
static const int HS_DX[5] = { 0, 1, -1, 0, 1 };
static const int HS_DY[5] = { 0, 0, 1, 1, 1 };

static void interact_cells(struct sim *s, int c, int n, int forces)
{
	for (int i = s->head[c]; i >= 0; i = s->next[i]) {
		struct particle *a = &s->p[i];
		int j0 = c == n ? s->next[i] : s->head[n];
		for (int j = j0; j >= 0; j = s->next[j]) {
			struct particle *b = &s->p[j];
			int64_t dx = a->px - b->px, dy = a->py - b->py;
			int64_t d2 = dx * dx + dy * dy;
			if (d2 >= H2)
				continue;
			int64_t tt = H2 - d2;
			if (!forces) {
				int64_t w = kern(tt);
				s->dens[i] += w;
				s->dens[j] += w;
			} else {
				int64_t fx, fy;
				pair_force(a, b, s->dens[i], s->dens[j], tt, &fx, &fy);
				s->fx[i] += fx;
				s->fy[i] += fy;
				s->fx[j] -= fx;
				s->fy[j] -= fy;
			}
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sim *s = w->s;
	int r0 = s->GY * w->tid / s->T, r1 = s->GY * (w->tid + 1) / s->T;
	int c0 = r0 * s->GX, c1 = r1 * s->GX;
	int W = s->GX * CS, H = s->GY * CS;

	for (int f = 0; f < s->frames; f++) {
		/* clear */
		for (int c = c0; c < c1; c++)
			for (int i = s->head[c]; i >= 0; i = s->next[i]) {
				s->dens[i] = SELF_DENS;
				s->fx[i] = s->fy[i] = 0;
			}
		pthread_barrier_wait(&s->bar);

		/* densities, then forces */
		for (int forces = 0; forces < 2; forces++) {
			for (int c = c0; c < c1; c++) {
				int cx = c % s->GX, cy = c / s->GX;
				for (int k = 0; k < 5; k++) {
					int nx = cx + HS_DX[k], ny = cy + HS_DY[k];
					if (nx < 0 || nx >= s->GX || ny >= s->GY)
						continue;
					int n = ny * s->GX + nx;
					lock2(s, c, n);
					interact_cells(s, c, n, forces);
					unlock2(s, c, n);
				}
			}
			pthread_barrier_wait(&s->bar);
		}

		/* integrate */
		for (int c = c0; c < c1; c++)
			for (int i = s->head[c]; i >= 0; i = s->next[i])
				advance(&s->p[i], s->fx[i], s->fy[i], W, H);
		pthread_barrier_wait(&s->bar);

		/* rebuild: move particles that left their cell */
		long moved = 0;
		for (int c = c0; c < c1; c++) {
			pthread_mutex_lock(&s->mtx[c]);
			int i = s->head[c];
			s->head[c] = -1;
			pthread_mutex_unlock(&s->mtx[c]);
			while (i >= 0) {
				int nx = s->next[i];
				int d = cell_of(s, &s->p[i]);
				moved += d != c;
				pthread_mutex_lock(&s->mtx[d]);
				s->next[i] = s->head[d];
				s->head[d] = i;
				pthread_mutex_unlock(&s->mtx[d]);
				i = nx;
			}
		}
		__atomic_fetch_add(&s->moved, moved, __ATOMIC_RELAXED);
		pthread_barrier_wait(&s->bar);
	}
	return NULL;
}

/* ---------------- serial reference ---------------- */

static void serial_run(int GX, int GY, int N, int frames, struct particle *p)
{
	int ncell = GX * GY, W = GX * CS, H = GY * CS;
	int *start = wl_xmalloc(sizeof(int) * (size_t)(ncell + 1));
	int *order = wl_xmalloc(sizeof(int) * (size_t)N);
	int *cell = wl_xmalloc(sizeof(int) * (size_t)N);
	int64_t *dens = wl_xmalloc(sizeof(int64_t) * (size_t)N);
	int64_t *fbuf = wl_xmalloc(sizeof(int64_t) * 2 * (size_t)N);
	struct sim dummy = { .GX = GX };

	for (int f = 0; f < frames; f++) {
		memset(start, 0, sizeof(int) * (size_t)(ncell + 1));
		for (int i = 0; i < N; i++) {
			cell[i] = cell_of(&dummy, &p[i]);
			start[cell[i] + 1]++;
		}
		for (int c = 0; c < ncell; c++)
			start[c + 1] += start[c];
		for (int i = 0; i < N; i++)
			order[start[cell[i]]++] = i;
		for (int c = ncell; c > 0; c--)
			start[c] = start[c - 1];
		start[0] = 0;

		for (int pass = 0; pass < 2; pass++) {
			for (int i = 0; i < N; i++) {
				int cx = cell[i] % GX, cy = cell[i] / GX;
				int64_t dsum = SELF_DENS, fxs = 0, fys = 0;
				for (int ny = cy - 1; ny <= cy + 1; ny++) {
					if (ny < 0 || ny >= GY)
						continue;
					for (int nx = cx - 1; nx <= cx + 1; nx++) {
						if (nx < 0 || nx >= GX)
							continue;
						int n = ny * GX + nx;
						for (int k = start[n]; k < start[n + 1]; k++) {
							int j = order[k];
							if (j == i)
								continue;
							int64_t dx = p[i].px - p[j].px;
							int64_t dy = p[i].py - p[j].py;
							int64_t d2 = dx * dx + dy * dy;
							if (d2 >= H2)
								continue;
							if (pass == 0) {
								dsum += kern(H2 - d2);
							} else {
								int64_t fx, fy;
								pair_force(&p[i], &p[j], dens[i],
									   dens[j], H2 - d2,
									   &fx, &fy);
								fxs += fx;
								fys += fy;
							}
						}
					}
				}
				if (pass == 0) {
					dens[i] = dsum;
				} else {
					fbuf[2 * i] = fxs;
					fbuf[2 * i + 1] = fys;
				}
			}
		}
		for (int i = 0; i < N; i++)
			advance(&p[i], fbuf[2 * i], fbuf[2 * i + 1], W, H);
	}
	free(start);
	free(order);
	free(cell);
	free(dens);
	free(fbuf);
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int tiny = a.size == WL_TINY;
	struct sim s;
	memset(&s, 0, sizeof s);
	s.GX = tiny ? 48 : 192;
	s.GY = tiny ? 32 : 128;
	s.N = tiny ? 4096 : 65536;
	s.frames = tiny ? 16 : 40;
	s.T = a.threads;
	s.ncell = s.GX * s.GY;
	int N = s.N, ncell = s.ncell;
	if (s.T > s.GY)
		s.T = s.GY; /* at most one thread per cell row band */

	s.p = wl_xmalloc(sizeof(struct particle) * (size_t)N);
	s.dens = wl_xmalloc(sizeof(int64_t) * (size_t)N);
	s.fx = wl_xmalloc(sizeof(int64_t) * (size_t)N);
	s.fy = wl_xmalloc(sizeof(int64_t) * (size_t)N);
	s.next = wl_xmalloc(sizeof(int) * (size_t)N);
	s.head = wl_xmalloc(sizeof(int) * (size_t)ncell);
	s.mtx = wl_xmalloc(sizeof(pthread_mutex_t) * (size_t)ncell);
	struct particle *ref = wl_xmalloc(sizeof(struct particle) * (size_t)N);

	/* Dam break: fluid block in the left two thirds, upper part. */
	struct wl_rng rng;
	wl_rng_seed(&rng, 0xf101dULL);
	int bw = s.GX * CS * 2 / 3, bh = s.GY * CS;
	for (int i = 0; i < N; i++) {
		s.p[i].px = (int32_t)wl_rng_below(&rng, (uint32_t)bw);
		s.p[i].py = (int32_t)wl_rng_below(&rng, (uint32_t)bh);
		s.p[i].vx = (int32_t)wl_rng_below(&rng, 9) - 4;
		s.p[i].vy = (int32_t)wl_rng_below(&rng, 9) - 4;
		ref[i] = s.p[i];
	}
	for (int c = 0; c < ncell; c++) {
		s.head[c] = -1;
		pthread_mutex_init(&s.mtx[c], NULL);
	}
	for (int i = N - 1; i >= 0; i--) {
		int c = cell_of(&s, &s.p[i]);
		s.next[i] = s.head[c];
		s.head[c] = i;
	}

	pthread_barrier_init(&s.bar, NULL, (unsigned)s.T);
	struct worker w[WL_MAX_THREADS];
	for (int t = 0; t < s.T; t++) {
		w[t].s = &s;
		w[t].tid = t;
	}
	wl_run_threads(s.T, worker_main, w, sizeof w[0]);

	serial_run(s.GX, s.GY, N, s.frames, ref);

	/* Conservation: each particle in exactly one list, the right one. */
	unsigned char *seen = wl_xcalloc((size_t)N, 1);
	long count = 0;
	int misplaced = 0, dup = 0;
	for (int c = 0; c < ncell; c++) {
		for (int i = s.head[c]; i >= 0 && count <= N; i = s.next[i]) {
			count++;
			if (seen[i])
				dup++;
			seen[i] = 1;
			if (cell_of(&s, &s.p[i]) != c)
				misplaced++;
		}
	}
	int mism = 0;
	uint64_t h = WL_FNV_INIT;
	for (int i = 0; i < N; i++) {
		if (memcmp(&s.p[i], &ref[i], sizeof ref[i]))
			mism++;
		h = wl_fnv1a(h, &s.p[i], sizeof s.p[i]);
	}
	int ok = count == N && !dup && !misplaced && !mism && s.moved > 0;
	if (!ok)
		fprintf(stderr,
			"fluidanimate: count=%ld/%d dup=%d misplaced=%d mismatches=%d "
			"moved=%ld\n",
			count, N, dup, misplaced, mism, s.moved);
	return WL_FINISH(ok, "fluidanimate", a,
			 "particles=%d cells=%dx%d frames=%d moves=%ld checksum=%016llx",
			 N, s.GX, s.GY, s.frames, s.moved, (unsigned long long)h);
}

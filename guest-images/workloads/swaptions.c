/*
 * swaptions - models PARSEC swaptions.
 *
 * Coarse-grained Monte Carlo pricing of a portfolio of independent payer
 * swaptions under a simplified two-factor discrete HJM forward-rate model.
 * Each swaption is a unit of work; workers claim swaptions through a shared
 * atomic counter (so which thread prices which swaption varies from run to
 * run) and write the price into the swaption's own result slot.  Every
 * swaption has its own PRNG stream seeded from its index, so the result of
 * a swaption does not depend on which thread priced it.
 *
 * Check: prices and standard errors must be bit-identical to a serial
 * pricing of the same portfolio, and be finite and non-negative.
 */
#include <math.h>

#include "wl.h"

#define MAX_FWD 64
#define NFACT 2

struct swaption {
	double maturity;   /* option expiry, years */
	double tenor;      /* length of the underlying swap, years */
	double strike;     /* fixed rate */
	double f0, slope;  /* initial forward curve: f0 + slope * t */
	double vol[NFACT]; /* factor volatilities */
	double decay;      /* factor 2 decays with time-to-fixing */
	/* results */
	double price, stderr_;
};

static const double DT = 0.5;

static void gauss2(struct wl_rng *r, double *z0, double *z1)
{
	double u1 = wl_rng_double(r);
	double u2 = wl_rng_double(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	double rad = sqrt(-2.0 * log(u1));
	double th = 6.283185307179586477 * u2;
	*z0 = rad * cos(th);
	*z1 = rad * sin(th);
}

static void price_swaption(struct swaption *sw, uint64_t seed, int idx,
			   int trials)
{
	int nexp = (int)(sw->maturity / DT + 0.5);
	int nswap = (int)(sw->tenor / DT + 0.5);
	int nfwd = nexp + nswap;
	double sig[NFACT][MAX_FWD];
	double f[MAX_FWD];
	double sqdt = sqrt(DT);

	for (int m = 0; m < nfwd; m++) {
		sig[0][m] = sw->vol[0];
		sig[1][m] = sw->vol[1] * exp(-sw->decay * m * DT);
	}

	struct wl_rng rng;
	wl_rng_seed(&rng, seed ^ (0x5a17ULL * (uint64_t)(idx + 1)));

	double sum = 0.0, sumsq = 0.0;
	for (int tr = 0; tr < trials; tr++) {
		for (int j = 0; j < nfwd; j++)
			f[j] = sw->f0 + sw->slope * j * DT;
		double logdisc = 0.0;
		for (int s = 0; s < nexp; s++) {
			logdisc -= f[s] * DT;
			double z0, z1;
			gauss2(&rng, &z0, &z1);
			double cum0 = 0.0, cum1 = 0.0;
			for (int j = s + 1; j < nfwd; j++) {
				int m = j - s;
				double s0 = sig[0][m], s1 = sig[1][m];
				cum0 += s0 * DT;
				cum1 += s1 * DT;
				double drift = s0 * cum0 + s1 * cum1;
				f[j] += drift * DT + (s0 * z0 + s1 * z1) * sqdt;
			}
		}
		/* Value the underlying swap at expiry from the simulated curve. */
		double logp = 0.0, annuity = 0.0;
		for (int i = 0; i < nswap; i++) {
			logp -= f[nexp + i] * DT;
			annuity += DT * exp(logp);
		}
		double pend = exp(logp);
		double swaprate = (1.0 - pend) / annuity;
		double payoff = swaprate > sw->strike ?
					(swaprate - sw->strike) * annuity :
					0.0;
		double v = 100.0 * exp(logdisc) * payoff;
		sum += v;
		sumsq += v * v;
	}
	double mean = sum / trials;
	double var = sumsq / trials - mean * mean;
	if (var < 0.0)
		var = 0.0;
	sw->price = mean;
	sw->stderr_ = sqrt(var / trials);
}

struct shared {
	struct swaption *sw;
	int n, trials;
	uint64_t seed;
	int next; /* work counter, atomic */
};

struct worker {
	struct shared *sh;
	int done;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	for (;;) {
		int i = __atomic_fetch_add(&sh->next, 1, __ATOMIC_RELAXED);
		if (i >= sh->n)
			break;
		price_swaption(&sh->sw[i], sh->seed, i, sh->trials);
		w->done++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int n = a.size == WL_TINY ? 16 : 64;
	int trials = a.size == WL_TINY ? 500 : 24000;
	uint64_t seed = 0x5ea9710e5ULL;

	struct swaption *sw = wl_xcalloc((size_t)n, sizeof *sw);
	struct swaption *ref = wl_xcalloc((size_t)n, sizeof *ref);
	struct wl_rng rng;
	wl_rng_seed(&rng, 0x5a9ULL);
	for (int i = 0; i < n; i++) {
		sw[i].maturity = DT * (2 + wl_rng_below(&rng, 19));  /* 1..10y */
		sw[i].tenor = DT * (2 + wl_rng_below(&rng, 19));     /* 1..10y */
		sw[i].f0 = 0.01 + 0.04 * wl_rng_double(&rng);
		sw[i].slope = 0.002 * wl_rng_double(&rng);
		sw[i].strike = sw[i].f0 + 0.02 * (wl_rng_double(&rng) - 0.5);
		sw[i].vol[0] = 0.002 + 0.008 * wl_rng_double(&rng);
		sw[i].vol[1] = 0.002 + 0.008 * wl_rng_double(&rng);
		sw[i].decay = 0.1 + 0.5 * wl_rng_double(&rng);
		ref[i] = sw[i];
	}

	struct shared sh = { sw, n, trials, seed, 0 };
	struct worker w[WL_MAX_THREADS];
	for (int t = 0; t < a.threads; t++) {
		w[t].sh = &sh;
		w[t].done = 0;
	}
	wl_run_threads(a.threads, worker_main, w, sizeof w[0]);

	int done = 0;
	for (int t = 0; t < a.threads; t++)
		done += w[t].done;

	for (int i = 0; i < n; i++)
		price_swaption(&ref[i], seed, i, trials);

	int ok = done == n;
	int mism = 0, bad = 0;
	uint64_t h = WL_FNV_INIT;
	double total = 0.0;
	for (int i = 0; i < n; i++) {
		if (memcmp(&sw[i].price, &ref[i].price, sizeof(double)) ||
		    memcmp(&sw[i].stderr_, &ref[i].stderr_, sizeof(double)))
			mism++;
		if (!(sw[i].price >= 0.0) || !isfinite(sw[i].price) ||
		    !(sw[i].stderr_ >= 0.0) || !isfinite(sw[i].stderr_))
			bad++;
		h = wl_fnv_double(h, sw[i].price);
		h = wl_fnv_double(h, sw[i].stderr_);
		total += sw[i].price;
	}
	if (mism || bad)
		ok = 0;
	if (!ok)
		fprintf(stderr, "swaptions: done=%d/%d mismatches=%d bad=%d\n",
			done, n, mism, bad);
	return WL_FINISH(ok, "swaptions", a,
			 "swaptions=%d trials=%d total=%.6f checksum=%016llx", n,
			 trials, total, (unsigned long long)h);
}

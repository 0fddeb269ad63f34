/*
 * blackscholes - models PARSEC blackscholes.
 *
 * Data-parallel pricing of a portfolio of European options with the
 * Black-Scholes closed form.  Each thread owns a contiguous block of the
 * option arrays and prices it NUM_RUNS times (as PARSEC does); threads
 * share nothing but read-only inputs and write disjoint output slots.
 *
 * Check: the parallel prices must be bit-identical to a serial pricing
 * pass, every option must satisfy put-call parity, and the CNDF
 * approximation must agree with libm's erfc to 1e-6.
 */
#include <math.h>

#include "wl.h"

struct options {
	int n;
	double *spot, *strike, *rate, *vol, *time;
	int *is_put;
	double *price;
};

static const double inv_sqrt_2pi = 0.39894228040143267794;

/* Cumulative normal distribution, Abramowitz & Stegun 26.2.17. */
static double cndf(double x)
{
	int neg = x < 0.0;
	double ax = neg ? -x : x;
	double density = exp(-0.5 * ax * ax) * inv_sqrt_2pi;
	double k = 1.0 / (1.0 + 0.2316419 * ax);
	double poly =
		k * (0.319381530 +
		     k * (-0.356563782 +
			  k * (1.781477937 + k * (-1.821255978 + k * 1.330274429))));
	double n = 1.0 - density * poly;
	return neg ? 1.0 - n : n;
}

static void bs_both(double s, double k, double r, double v, double t,
		    double *call, double *put)
{
	double sqt = sqrt(t);
	double d1 = (log(s / k) + (r + 0.5 * v * v) * t) / (v * sqt);
	double d2 = d1 - v * sqt;
	double disc = k * exp(-r * t);
	*call = s * cndf(d1) - disc * cndf(d2);
	*put = disc * cndf(-d2) - s * cndf(-d1);
}

static double bs_price(double s, double k, double r, double v, double t,
		       int is_put)
{
	double sqt = sqrt(t);
	double d1 = (log(s / k) + (r + 0.5 * v * v) * t) / (v * sqt);
	double d2 = d1 - v * sqt;
	double disc = k * exp(-r * t);
	if (is_put)
		return disc * cndf(-d2) - s * cndf(-d1);
	return s * cndf(d1) - disc * cndf(d2);
}

static void price_range(const struct options *o, double *out, int lo, int hi)
{
	for (int i = lo; i < hi; i++)
		out[i] = bs_price(o->spot[i], o->strike[i], o->rate[i],
				  o->vol[i], o->time[i], o->is_put[i]);
}

struct worker {
	const struct options *o;
	int lo, hi, runs;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int r = 0; r < w->runs; r++)
		price_range(w->o, w->o->price, w->lo, w->hi);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int n = a.size == WL_TINY ? 4096 : 65536;
	int runs = a.size == WL_TINY ? 40 : 600;

	struct options o;
	o.n = n;
	double *mem = wl_xmalloc(sizeof(double) * (size_t)n * 7);
	o.spot = mem;
	o.strike = mem + n;
	o.rate = mem + 2 * (size_t)n;
	o.vol = mem + 3 * (size_t)n;
	o.time = mem + 4 * (size_t)n;
	o.price = mem + 5 * (size_t)n;
	double *ref = mem + 6 * (size_t)n;
	o.is_put = wl_xmalloc(sizeof(int) * (size_t)n);

	struct wl_rng rng;
	wl_rng_seed(&rng, 0xb1ac5c0135ULL);
	for (int i = 0; i < n; i++) {
		o.spot[i] = 10.0 + 100.0 * wl_rng_double(&rng);
		o.strike[i] = o.spot[i] * (0.7 + 0.6 * wl_rng_double(&rng));
		o.rate[i] = 0.01 + 0.09 * wl_rng_double(&rng);
		o.vol[i] = 0.05 + 0.60 * wl_rng_double(&rng);
		o.time[i] = 0.10 + 2.90 * wl_rng_double(&rng);
		o.is_put[i] = (int)(wl_rng_next(&rng) >> 63);
		o.price[i] = -1.0;
	}

	struct worker w[WL_MAX_THREADS];
	for (int t = 0; t < a.threads; t++) {
		w[t].o = &o;
		w[t].lo = (int)((long)n * t / a.threads);
		w[t].hi = (int)((long)n * (t + 1) / a.threads);
		w[t].runs = runs;
	}
	wl_run_threads(a.threads, worker_main, w, sizeof w[0]);

	/* Serial reference pricing. */
	price_range(&o, ref, 0, n);

	int ok = 1;
	int mismatches = 0, parity_bad = 0;
	uint64_t h = WL_FNV_INIT;
	for (int i = 0; i < n; i++) {
		uint64_t pb, rb;
		memcpy(&pb, &o.price[i], 8);
		memcpy(&rb, &ref[i], 8);
		if (pb != rb)
			mismatches++;
		h = wl_fnv_u64(h, pb);

		double c, p;
		bs_both(o.spot[i], o.strike[i], o.rate[i], o.vol[i], o.time[i],
			&c, &p);
		double fwd = o.spot[i] - o.strike[i] * exp(-o.rate[i] * o.time[i]);
		double tol = 1e-9 * (o.spot[i] + o.strike[i]);
		if (!(fabs(c - p - fwd) <= tol) || !(c >= -tol) || !(p >= -tol))
			parity_bad++;
	}
	double max_err = 0.0;
	for (int i = -4000; i <= 4000; i++) {
		double x = i / 500.0;
		double e = fabs(cndf(x) - 0.5 * erfc(-x / sqrt(2.0)));
		if (e > max_err)
			max_err = e;
	}
	if (mismatches || parity_bad || !(max_err < 1e-6))
		ok = 0;
	if (!ok)
		fprintf(stderr,
			"blackscholes: mismatches=%d parity_bad=%d cndf_err=%g\n",
			mismatches, parity_bad, max_err);

	return WL_FINISH(ok, "blackscholes", a, "options=%d runs=%d checksum=%016llx",
			 n, runs, (unsigned long long)h);
}

/*
 * wl.h - shared helpers for the samsara PARSEC-style guest workloads.
 *
 * Everything here is deterministic: fixed-seed PRNGs, FNV hashing of
 * results, argument parsing.  No clocks, no /dev/urandom, no rdtsc.
 */
#ifndef WL_H
#define WL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WL_MAX_THREADS 64

enum wl_size { WL_TINY = 0, WL_SMALL = 1 };

struct wl_args {
	int threads;
	enum wl_size size;
	const char *size_name;
};

static inline void wl_usage(const char *prog)
{
	fprintf(stderr, "usage: %s [threads 1..%d] [tiny|small]\n", prog,
		WL_MAX_THREADS);
	exit(2);
}

/* PROGRAM [threads] [tiny|small]; defaults 2 and tiny. */
static inline struct wl_args wl_parse_args(int argc, char **argv)
{
	struct wl_args a = { 2, WL_TINY, "tiny" };
	if (argc > 3)
		wl_usage(argv[0]);
	if (argc > 1) {
		char *end;
		long t = strtol(argv[1], &end, 10);
		if (*argv[1] == '\0' || *end != '\0' || t < 1 ||
		    t > WL_MAX_THREADS)
			wl_usage(argv[0]);
		a.threads = (int)t;
	}
	if (argc > 2) {
		if (strcmp(argv[2], "tiny") == 0) {
			a.size = WL_TINY;
			a.size_name = "tiny";
		} else if (strcmp(argv[2], "small") == 0) {
			a.size = WL_SMALL;
			a.size_name = "small";
		} else {
			wl_usage(argv[0]);
		}
	}
	return a;
}

/* splitmix64: used to derive seeds and as a general PRNG. */
static inline uint64_t wl_splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* xorshift64* : fast per-thread / per-object stream. State must be != 0. */
struct wl_rng {
	uint64_t s;
};

static inline void wl_rng_seed(struct wl_rng *r, uint64_t seed)
{
	uint64_t s = seed;
	r->s = wl_splitmix64(&s);
	if (r->s == 0)
		r->s = 0x2545f4914f6cdd1dULL;
}

static inline uint64_t wl_rng_next(struct wl_rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform integer in [0, n), n > 0 (multiply-high, no modulo bias worth
 * caring about here, and fully deterministic). */
static inline uint32_t wl_rng_below(struct wl_rng *r, uint32_t n)
{
	return (uint32_t)(((wl_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double wl_rng_double(struct wl_rng *r)
{
	return (double)(wl_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* FNV-1a 64 over bytes. */
#define WL_FNV_INIT 0xcbf29ce484222325ULL
static inline uint64_t wl_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = (const unsigned char *)p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static inline uint64_t wl_fnv_u64(uint64_t h, uint64_t v)
{
	return wl_fnv1a(h, &v, sizeof v);
}

static inline uint64_t wl_fnv_double(uint64_t h, double d)
{
	uint64_t v;
	memcpy(&v, &d, sizeof v);
	return wl_fnv_u64(h, v);
}

static inline void *wl_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static inline void *wl_xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p) {
		fprintf(stderr, "out of memory (%zu x %zu bytes)\n", n, sz);
		exit(1);
	}
	return p;
}

/* Thread helpers: start n workers running fn(arg_i) and join them all. */
static inline void wl_run_threads(int n, void *(*fn)(void *), void *args,
			   size_t arg_size)
{
	pthread_t tid[WL_MAX_THREADS];
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	/* musl's default stack is small; be explicit and modest. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int i = 0; i < n; i++) {
		void *a = (char *)args + (size_t)i * arg_size;
		if (pthread_create(&tid[i], &attr, fn, a) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			exit(1);
		}
	}
	pthread_attr_destroy(&attr);
	for (int i = 0; i < n; i++)
		pthread_join(tid[i], NULL);
}

/* Print the single summary line and return the exit status. */
#define WL_FINISH(ok, name, args, fmt, ...)                                    \
	(printf("%s: threads=%d size=%s " fmt " %s\n", (name), (args).threads, \
		(args).size_name, __VA_ARGS__, (ok) ? "ok" : "FAIL"),          \
	 fflush(stdout), (ok) ? 0 : 1)

#endif

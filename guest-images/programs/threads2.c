/*
 * threads2 [N]: two threads each add 1 to a shared counter N times
 * (default 1000000) with atomic read-modify-writes. Prints
 * "threads2: counter=<2N> ok" and exits 0 iff the final value is 2N
 * (otherwise "threads2: counter=<value> expected <2N> FAIL", exit 1).
 * A small SMP test: both vCPUs run user code concurrently and the result
 * must be exact under record and replay. No stdio, to stay small.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static long long counter;
static long long iterations = 1000000;

static void *worker(void *arg)
{
	(void)arg;
	for (long long i = 0; i < iterations; i++)
		__atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
	return NULL;
}

static char *append(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

static char *append_num(char *p, long long v)
{
	char tmp[24];
	int k = 0;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	if (v < 0)
		*p++ = '-';
	do
		tmp[k++] = (char)('0' + u % 10);
	while ((u /= 10) > 0);
	while (k > 0)
		*p++ = tmp[--k];
	return p;
}

static int fail(const char *m)
{
	(void)!write(2, m, strlen(m));
	return 2;
}

int main(int argc, char **argv)
{
	pthread_t t[2];
	char line[128], *p = line;

	if (argc > 2)
		return fail("usage: threads2 [N]\n");
	if (argc == 2) {
		const char *s = argv[1];
		iterations = 0;
		if (!*s)
			return fail("usage: threads2 [N]\n");
		for (; *s; s++) {
			if (*s < '0' || *s > '9' || iterations > 1000000000000000LL)
				return fail("usage: threads2 [N]\n");
			iterations = iterations * 10 + (*s - '0');
		}
	}
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, worker, NULL) != 0)
			return fail("threads2: pthread_create failed\n");
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);

	long long want = 2 * iterations;
	long long got = __atomic_load_n(&counter, __ATOMIC_SEQ_CST);
	p = append(p, "threads2: counter=");
	p = append_num(p, got);
	if (got == want) {
		p = append(p, " ok\n");
	} else {
		p = append(p, " expected ");
		p = append_num(p, want);
		p = append(p, " FAIL\n");
	}
	if (write(1, line, (size_t)(p - line)) != p - line)
		return 1;
	return got == want ? 0 : 1;
}

/*
 * conflicts [N [R]]: two threads (pinned to CPUs 0 and 1 when
 * sched_setaffinity allows it) run, in order, one phase per kind of
 * memory conflict the parallel recorder must order (a chunk that read or
 * wrote a page another chunk committed meanwhile is squashed and re-run):
 *
 *   ww      write-write on one page: R rounds in which both threads write
 *           their own words and the same words of one page, then check
 *           each other's words after a barrier;
 *   rw      reading a page the other thread writes: a producer/consumer
 *           ring (head, tail and slots on separate pages, acquire/release)
 *           carrying 16*R items that the consumer verifies;
 *   false   false sharing: each thread increments its own counter in one
 *           shared page N times; each must end at N;
 *   locks   N increments of a plain counter under a pthread mutex and N
 *           under an __atomic spinlock per thread; each total must be 2N;
 *   dekker  4*R rounds of Dekker's mutual exclusion (relaxed flags and
 *           seq_cst fences); an "in critical section" counter must never
 *           exceed 1 and the plain counter inside must end at 8R;
 *   racy    N plain (racy) increments of one counter per thread, plus a
 *           trace of which thread got there, every 256 iterations.
 *
 * Every wait spins a little and then calls sched_yield(): guest user code
 * cannot be preempted without a PMU, so a wait that never enters the
 * kernel would never end its chunk and never see the other thread's
 * committed writes. Defaults (N=20000, R=8) keep the run to about a second
 * of guest time.
 *
 * Prints one line per phase, with values that depend only on how the
 * threads interleaved (the racy total, the trace hash, who won the shared
 * words, how often the consumer found the ring empty), so a recording and
 * its replays must print the same lines; then "conflicts: ok" and exit 0,
 * or "conflicts: FAIL <first broken invariant>" and exit 1. No stdio, to
 * stay small; one write() at the end.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096
#define PAGE_ALIGNED __attribute__((aligned(PAGE)))

static long n_iter = 20000; /* N */
static long rounds = 8;     /* R */

/* Failure report: the first broken invariant wins. */
static char fail_msg[160];
static int failed;

/* The barrier between phases and between ww rounds (its own page). */
static struct {
	long count, gen;
} bar PAGE_ALIGNED;

/* ww: own[t] is written only by thread t, same[] by both. */
#define WW_WORDS 64
static struct {
	long own[2][WW_WORDS];
	long same[WW_WORDS];
} ww PAGE_ALIGNED;
static unsigned long ww_hash = 14695981039346656037UL;

/* rw: a ring of RING slots; head, tail and the slots on separate pages. */
#define RING 16
#define SLOT_WORDS 64
static struct {
	long head;
} rw_head PAGE_ALIGNED;
static struct {
	long tail;
} rw_tail PAGE_ALIGNED;
static long rw_slot[RING][SLOT_WORDS] PAGE_ALIGNED; /* 2 pages */
static long rw_items, rw_empty;
static unsigned long rw_sum;

/* false sharing: two counters on different cache lines of one page. */
static struct {
	volatile long c[2][8];
} fs PAGE_ALIGNED;

/* locks: plain counters protected by a mutex and by a spinlock. */
static struct {
	pthread_mutex_t mu;
	long mutex_count;
	int spin;
	long spin_count;
} lk PAGE_ALIGNED; /* the mutex is initialised in main (bss, not data) */

/* dekker: flags, turn and the checks on one page. */
static struct {
	int flag[2];
	int turn;
	int in_cs, max_in_cs;
	long count;
} dk PAGE_ALIGNED;

/* racy: a counter incremented without atomics, and who got there. */
static struct {
	volatile long counter;
	long trace_len;
	unsigned char trace[2048];
} rc PAGE_ALIGNED;

static void fail(const char *what, long t)
{
	if (__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST))
		return;
	char *p = fail_msg;
	size_t n = strlen(what);
	if (n > sizeof(fail_msg) - 16)
		n = sizeof(fail_msg) - 16;
	memcpy(p, what, n);
	p += n;
	memcpy(p, " (thread ", 9);
	p += 9;
	*p++ = (char)('0' + t);
	*p++ = ')';
	*p = 0;
}

/* relax is one iteration of a wait: pause, and every 512th time enter the
 * kernel (see the file comment). */
static void relax(unsigned *k)
{
	if (++*k < 512) {
		__asm__ volatile("pause" ::: "memory");
		return;
	}
	*k = 0;
	sched_yield();
}

static void barrier(void)
{
	long g = __atomic_load_n(&bar.gen, __ATOMIC_ACQUIRE);
	unsigned k = 0;

	if (__atomic_fetch_add(&bar.count, 1, __ATOMIC_ACQ_REL) == 1) {
		__atomic_store_n(&bar.count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&bar.gen, g + 1, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&bar.gen, __ATOMIC_ACQUIRE) == g)
		relax(&k);
}

static void phase_ww(long t)
{
	long o = 1 - t;

	for (long r = 1; r <= rounds; r++) {
		barrier();
		for (int j = 0; j < WW_WORDS; j++)
			__atomic_store_n(&ww.own[t][j], r * 1000 + t * 100 + j, __ATOMIC_RELAXED);
		for (int j = 0; j < WW_WORDS; j++)
			__atomic_store_n(&ww.same[j], r * 2 + t, __ATOMIC_RELAXED);
		barrier();
		for (int j = 0; j < WW_WORDS; j++)
			if (__atomic_load_n(&ww.own[o][j], __ATOMIC_RELAXED) != r * 1000 + o * 100 + j)
				fail("ww: the other thread's word is lost", t);
		int from1 = 0;
		for (int j = 0; j < WW_WORDS; j++) {
			long v = __atomic_load_n(&ww.same[j], __ATOMIC_RELAXED);
			if (v != r * 2 && v != r * 2 + 1)
				fail("ww: a shared word holds neither thread's value", t);
			from1 += (int)(v & 1);
		}
		if (t == 0)
			ww_hash = (ww_hash ^ (unsigned long)from1) * 1099511628211UL;
	}
}

static void phase_rw(long t)
{
	long items = RING * rounds;
	unsigned k = 0;

	if (t == 0) { /* producer */
		for (long i = 0; i < items; i++) {
			while (i - __atomic_load_n(&rw_tail.tail, __ATOMIC_ACQUIRE) >= RING)
				relax(&k);
			long *s = rw_slot[i % RING];
			for (int j = 1; j < SLOT_WORDS; j++)
				s[j] = i * 7919 + j;
			s[0] = i;
			__atomic_store_n(&rw_head.head, i + 1, __ATOMIC_RELEASE);
		}
		return;
	}
	for (long i = 0; i < items; i++) { /* consumer */
		if (__atomic_load_n(&rw_head.head, __ATOMIC_ACQUIRE) <= i) {
			rw_empty++;
			while (__atomic_load_n(&rw_head.head, __ATOMIC_ACQUIRE) <= i)
				relax(&k);
		}
		long *s = rw_slot[i % RING];
		if (s[0] != i)
			fail("rw: item out of order", t);
		for (int j = 1; j < SLOT_WORDS; j++) {
			if (s[j] != i * 7919 + j)
				fail("rw: torn item (data read before the flag)", t);
			rw_sum += (unsigned long)s[j];
		}
		rw_items++;
		__atomic_store_n(&rw_tail.tail, i + 1, __ATOMIC_RELEASE);
	}
}

static void phase_false(long t)
{
	for (long i = 0; i < n_iter; i++)
		fs.c[t][0] = fs.c[t][0] + 1;
}

static void spin_lock(int *l)
{
	unsigned k = 0;

	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			relax(&k);
}

static void phase_locks(long t)
{
	for (long i = 0; i < n_iter; i++) {
		pthread_mutex_lock(&lk.mu);
		lk.mutex_count++;
		pthread_mutex_unlock(&lk.mu);
		spin_lock(&lk.spin);
		lk.spin_count++;
		__atomic_store_n(&lk.spin, 0, __ATOMIC_RELEASE);
	}
}

static void phase_dekker(long t)
{
	int o = 1 - (int)t;

	for (long r = 0; r < 4 * rounds; r++) {
		unsigned k = 0;
		__atomic_store_n(&dk.flag[t], 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		while (__atomic_load_n(&dk.flag[o], __ATOMIC_RELAXED)) {
			if (__atomic_load_n(&dk.turn, __ATOMIC_RELAXED) != t) {
				__atomic_store_n(&dk.flag[t], 0, __ATOMIC_RELAXED);
				while (__atomic_load_n(&dk.turn, __ATOMIC_RELAXED) != t)
					relax(&k);
				__atomic_store_n(&dk.flag[t], 1, __ATOMIC_RELAXED);
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
			} else {
				relax(&k);
			}
		}
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		/* critical section */
		int in = __atomic_add_fetch(&dk.in_cs, 1, __ATOMIC_RELAXED);
		if (in > __atomic_load_n(&dk.max_in_cs, __ATOMIC_RELAXED))
			__atomic_store_n(&dk.max_in_cs, in, __ATOMIC_RELAXED);
		if (in != 1)
			fail("dekker: two threads in the critical section", t);
		*(volatile long *)&dk.count = *(volatile long *)&dk.count + 1;
		__atomic_sub_fetch(&dk.in_cs, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		__atomic_store_n(&dk.turn, o, __ATOMIC_RELAXED);
		__atomic_store_n(&dk.flag[t], 0, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
}

static void phase_racy(long t)
{
	for (long i = 0; i < n_iter; i++) {
		rc.counter = rc.counter + 1;
		if ((i & 255) == 0) {
			long at = __atomic_fetch_add(&rc.trace_len, 1, __ATOMIC_RELAXED);
			if (at < (long)sizeof(rc.trace))
				rc.trace[at] = (unsigned char)(t + 1);
		}
	}
}

static int pinned;

static void *worker(void *arg)
{
	long t = (long)arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET((int)t, &set);
	if (sched_setaffinity(0, sizeof(set), &set) == 0)
		__atomic_fetch_add(&pinned, 1, __ATOMIC_RELAXED);
	barrier();
	phase_ww(t);
	barrier();
	phase_rw(t);
	barrier();
	phase_false(t);
	barrier();
	phase_locks(t);
	barrier();
	phase_dekker(t);
	barrier();
	phase_racy(t);
	return NULL;
}

/* Output helpers (no stdio). */
static char out[1024];
static char *op = out;

static void put(const char *s)
{
	size_t n = strlen(s);

	if (n > (size_t)(out + sizeof(out) - op))
		n = (size_t)(out + sizeof(out) - op);
	memcpy(op, s, n);
	op += n;
}

static void put_num(const char *label, long v)
{
	char tmp[24];
	int k = 0;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	put(label);
	if (v < 0)
		put("-");
	do
		tmp[k++] = (char)('0' + u % 10);
	while ((u /= 10) > 0);
	while (k > 0 && op < out + sizeof(out))
		*op++ = tmp[--k];
}

static void put_hex(const char *label, unsigned long v)
{
	put(label);
	for (int s = 60; s >= 0 && op < out + sizeof(out); s -= 4)
		*op++ = "0123456789abcdef"[(v >> s) & 15];
}

static int parse(const char *s, long *v)
{
	long x = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || x > 100000000)
			return -1;
		x = x * 10 + (*s - '0');
	}
	if (x < 1)
		return -1;
	*v = x;
	return 0;
}

int main(int argc, char **argv)
{
	pthread_t th[2];
	static const char usage[] = "usage: conflicts [N [R]]\n";

	if (argc > 3 || (argc > 1 && parse(argv[1], &n_iter)) || (argc > 2 && parse(argv[2], &rounds))) {
		(void)!write(2, usage, sizeof(usage) - 1);
		return 2;
	}
	pthread_mutex_init(&lk.mu, NULL);
	for (long i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
			static const char m[] = "conflicts: FAIL pthread_create\n";
			(void)!write(1, m, sizeof(m) - 1);
			return 1;
		}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);

	/* Checks that need both threads finished. */
	if (rw_items != RING * rounds)
		fail("rw: items lost", 1);
	if (fs.c[0][0] != n_iter || fs.c[1][0] != n_iter)
		fail("false: a counter is not N", 0);
	if (lk.mutex_count != 2 * n_iter)
		fail("locks: mutex-protected total is not 2N", 0);
	if (lk.spin_count != 2 * n_iter)
		fail("locks: spinlock-protected total is not 2N", 0);
	if (dk.count != 8 * rounds || dk.max_in_cs != 1)
		fail("dekker: lost a critical section", 0);

	unsigned long h = 14695981039346656037UL;
	for (long i = 0; i < rc.trace_len && i < (long)sizeof(rc.trace); i++)
		h = (h ^ rc.trace[i]) * 1099511628211UL;

	put_num("conflicts: threads=2 pinned=", pinned);
	put_num(" n=", n_iter);
	put_num(" r=", rounds);
	put_num("\nconflicts: ww rounds=", rounds);
	put_hex(" winners=", ww_hash);
	put_num("\nconflicts: rw items=", rw_items);
	put_num(" sum=", (long)rw_sum);
	put_num(" empty=", rw_empty);
	put_num("\nconflicts: false c0=", fs.c[0][0]);
	put_num(" c1=", fs.c[1][0]);
	put_num("\nconflicts: locks mutex=", lk.mutex_count);
	put_num(" spin=", lk.spin_count);
	put_num("\nconflicts: dekker count=", dk.count);
	put_num(" max_in_cs=", dk.max_in_cs);
	put_num("\nconflicts: racy counter=", rc.counter);
	put_hex(" trace=", h);
	put("\n");
	if (failed) {
		put("conflicts: FAIL ");
		put(fail_msg);
		put("\n");
	} else {
		put("conflicts: ok\n");
	}
	if (write(1, out, (size_t)(op - out)) != op - out)
		return 1;
	return failed ? 1 : 0;
}

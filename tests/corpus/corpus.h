/*
 * Helpers shared by samsara's behaviour corpus (tests/corpus, issue 19).
 *
 * Every program prints only what must hold (never a duration, an address
 * or an iteration count that depends on timing), one line at a time with
 * write(2) so that nothing sits in a stdio buffer across fork(), and ends
 * with "<name>: ok" and exit status 0. A check that fails prints
 * "<name>: FAIL ..." and exits 1. PROG is the program's name (-DPROG from
 * the Makefile).
 */
#ifndef CORPUS_H
#define CORPUS_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

/* From <linux/futex.h>, which musl-gcc's include path does not have. */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_CMP_REQUEUE 4
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)
#define FUTEX_CMP_REQUEUE_PRIVATE (FUTEX_CMP_REQUEUE | FUTEX_PRIVATE_FLAG)

#ifndef PROG
#define PROG "corpus"
#endif

/* say prints one formatted line (unbuffered). */
static __attribute__((unused, format(printf, 1, 2))) void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	for (int off = 0; off < n;) {
		ssize_t w = write(1, buf + off, n - off);
		if (w <= 0)
			break;
		off += w;
	}
}

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			say("%s: FAIL at line %d: %s (errno %d): ", PROG,  \
			    __LINE__, #cond, errno);                       \
			say(__VA_ARGS__);                                  \
			say("\n");                                         \
			_exit(1);                                          \
		}                                                          \
	} while (0)

static __attribute__((unused, noreturn)) void ok(void)
{
	say("%s: ok\n", PROG);
	exit(0);
}

/* now_ns is CLOCK_MONOTONIC in nanoseconds. */
static __attribute__((unused)) int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static __attribute__((unused)) void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Raw system calls that touch neither errno nor TLS, for code that runs
 * on a raw clone() thread with no thread pointer of its own.
 */
static __attribute__((unused)) long sys3(long n, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "0"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return ret;
}

static __attribute__((unused)) long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;

	__asm__ volatile("syscall" : "=a"(ret) : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
	return ret;
}

/*
 * raw_clone is clone(2) without libc: the child starts on stack (the top
 * of a buffer), calls fn(arg) and ends with SYS_exit(fn's result), never
 * returning into libc. The parent gets the child's tid or -errno.
 */
static __attribute__((unused, noinline)) long raw_clone(unsigned long flags, void *stack_top, int *ptid, int *ctid,
							 unsigned long tls, int (*fn)(void *), void *arg)
{
	unsigned long *sp = (unsigned long *)(((unsigned long)stack_top & ~15UL) - 16);
	register long r10 __asm__("r10") = (long)ctid;
	register long r8 __asm__("r8") = (long)tls;
	long ret;

	sp[0] = (unsigned long)fn;
	sp[1] = (unsigned long)arg;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "pop %%rax\n\t"
			 "pop %%rdi\n\t"
			 "call *%%rax\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov $60, %%eax\n\t" /* SYS_exit: this thread only */
			 "syscall\n\t"
			 "hlt\n\t"
			 "1:\n\t"
			 : "=a"(ret)
			 : "0"((long)SYS_clone), "D"(flags), "S"(sp), "d"(ptid), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

/* futex_wait_tid waits until the kernel clears *tid (CLONE_CHILD_CLEARTID). */
static __attribute__((unused)) void futex_wait_tid(volatile int *tid)
{
	int v;

	while ((v = __atomic_load_n(tid, __ATOMIC_SEQ_CST)) != 0)
		syscall(SYS_futex, tid, FUTEX_WAIT /* shared: the kernel's wake at exit is shared */, v, NULL, NULL, 0);
}

#endif

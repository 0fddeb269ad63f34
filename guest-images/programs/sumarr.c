/*
 * sumarr [N] [K]: the trace acceptance program (issue 16). Fills an array
 * of N longs (default 1000, at most 65536) with 0..N-1, prints where it
 * lies, sums it with exactly one 8-byte load per element, then makes
 * exactly K write(2) calls (default 3) from one SYSCALL instruction whose
 * address it prints too. Prints
 *   sumarr: base=<hex> n=<N> syscall=<hex> k=<K>
 *   sumarr: write            (K times, from that SYSCALL)
 *   sumarr: sum=<N(N-1)/2> ok
 * and exits 0 iff the sum is right. A trace of its recording must hold
 * exactly N user-mode loads at base + 8i and K executions of that SYSCALL.
 * No stdio, to stay small.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NMAX 65536

static long arr[NMAX];

/* raw_write is write(2) through the one SYSCALL instruction at
 * sumarr_syscall, which the trace test looks for. */
static long raw_write(int fd, const void *buf, unsigned long n)
{
	long ret;

	__asm__ volatile(".globl sumarr_syscall\nsumarr_syscall: syscall"
			 : "=a"(ret)
			 : "a"(1L), "D"((long)fd), "S"(buf), "d"(n)
			 : "rcx", "r11", "memory");
	return ret;
}

extern char sumarr_syscall[];

static char *append(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

static char *dec(char *p, unsigned long v)
{
	char tmp[24];
	int i = 0;

	do
		tmp[i++] = '0' + v % 10;
	while (v /= 10);
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

static char *hex(char *p, unsigned long v)
{
	char tmp[24];
	int i = 0;

	do
		tmp[i++] = "0123456789abcdef"[v % 16];
	while (v /= 16);
	*p++ = '0';
	*p++ = 'x';
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	long k = argc > 2 ? atol(argv[2]) : 3;
	char line[160], *p;
	volatile long *a = arr;
	unsigned long sum = 0;

	if (n < 1 || n > NMAX || k < 0) {
		static const char usage[] = "usage: sumarr [N 1..65536] [K >= 0]\n";
		write(2, usage, sizeof(usage) - 1);
		return 2;
	}
	for (long i = 0; i < n; i++)
		a[i] = i;
	p = append(line, "sumarr: base=");
	p = hex(p, (unsigned long)arr);
	p = append(p, " n=");
	p = dec(p, n);
	p = append(p, " syscall=");
	p = hex(p, (unsigned long)sumarr_syscall);
	p = append(p, " k=");
	p = dec(p, k);
	*p++ = '\n';
	write(1, line, p - line);
	for (long i = 0; i < n; i++)
		sum += a[i];
	for (long i = 0; i < k; i++)
		raw_write(1, "sumarr: write\n", 14);
	p = append(line, "sumarr: sum=");
	p = dec(p, sum);
	if (sum == (unsigned long)n * (n - 1) / 2) {
		p = append(p, " ok\n");
		write(1, line, p - line);
		return 0;
	}
	p = append(p, " FAIL\n");
	write(1, line, p - line);
	return 1;
}

/*
 * sleep SECONDS: sleep with nanosleep. SECONDS is a decimal number that may
 * have a fraction (e.g. 0.25, 1.5); parsed exactly, without floating point.
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	static const char m[] = "usage: sleep SECONDS (may be fractional, e.g. 0.5)\n";

	(void)!write(2, m, sizeof(m) - 1);
	return 1;
}

int main(int argc, char **argv)
{
	struct timespec ts = { 0, 0 }, rem;
	const char *p;
	long scale = 100000000L;
	int digits = 0;

	if (argc != 2)
		return usage();
	p = argv[1];
	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (ts.tv_sec > 100000000L)
			return usage();
		ts.tv_sec = ts.tv_sec * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
			ts.tv_nsec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p || digits == 0)
		return usage();
	while (nanosleep(&ts, &rem) < 0) {
		if (errno != EINTR)
			return 1;
		ts = rem;
	}
	return 0;
}

/* nproc: print the number of online CPUs (no stdio, to stay small). */
#include <unistd.h>

int main(void)
{
	char buf[24];
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int k = (int)sizeof(buf);

	if (n < 0)
		n = 0;
	buf[--k] = '\n';
	do
		buf[--k] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	return write(1, buf + k, sizeof(buf) - (size_t)k) == (ssize_t)(sizeof(buf) - (size_t)k) ? 0 : 1;
}

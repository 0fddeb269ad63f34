/* echo [-n] [ARG...]: print the arguments separated by spaces. */
#include <string.h>
#include <unistd.h>

static int put(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1, newline = 1, rc = 0;

	if (argc > 1 && strcmp(argv[1], "-n") == 0) {
		newline = 0;
		i = 2;
	}
	for (int first = i; i < argc; i++) {
		if (i > first)
			rc |= put(" ", 1);
		rc |= put(argv[i], strlen(argv[i]));
	}
	if (newline)
		rc |= put("\n", 1);
	return rc ? 1 : 0;
}

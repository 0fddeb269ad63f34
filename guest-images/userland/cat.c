/* cat [FILE...]: copy files (or stdin, also for "-") to stdout. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char buf[65536];

static void complain(const char *name)
{
	const char *e = strerror(errno);

	(void)!write(2, "cat: ", 5);
	(void)!write(2, name, strlen(name));
	(void)!write(2, ": ", 2);
	(void)!write(2, e, strlen(e));
	(void)!write(2, "\n", 1);
}

static int copy(int fd, const char *name)
{
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			complain(name);
			return 1;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				complain("write");
				return 1;
			}
			off += w;
		}
	}
}

int main(int argc, char **argv)
{
	int rc = 0;

	if (argc < 2)
		return copy(0, "stdin");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-") == 0) {
			rc |= copy(0, "stdin");
			continue;
		}
		int fd = open(argv[i], O_RDONLY);
		if (fd < 0) {
			complain(argv[i]);
			rc = 1;
			continue;
		}
		rc |= copy(fd, argv[i]);
		close(fd);
	}
	return rc;
}

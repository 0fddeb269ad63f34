/*
 * diskrw [FILE]: writes 256 KiB of a deterministic pattern to FILE
 * (default /mnt/diskrw.dat, the virtio disk), fsyncs it, reads it back and
 * prints its FNV-1a hash. Exits 0 iff the data read equals the data
 * written.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static unsigned char out[256 << 10], in[sizeof(out)];

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/mnt/diskrw.dat";
	unsigned long h = 14695981039346656037UL, x = 88172645463325252UL;
	int fd;

	for (size_t i = 0; i < sizeof(out); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		out[i] = (unsigned char)x;
	}
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || write(fd, out, sizeof(out)) != (ssize_t)sizeof(out) || fsync(fd) || close(fd)) {
		perror("diskrw: write");
		return 1;
	}
	fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, in, sizeof(in)) != (ssize_t)sizeof(in)) {
		perror("diskrw: read");
		return 1;
	}
	close(fd);
	for (size_t i = 0; i < sizeof(in); i++)
		h = (h ^ in[i]) * 1099511628211UL;
	printf("diskrw: %zu bytes hash=%016lx %s\n", sizeof(in), h, memcmp(in, out, sizeof(in)) ? "MISMATCH" : "ok");
	return memcmp(in, out, sizeof(in)) != 0;
}

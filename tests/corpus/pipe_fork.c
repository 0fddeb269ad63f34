/* 512 KB through a pipe from a child process, in odd-sized writes; the
 * reader sees every byte in order, then EOF; a write to a pipe with no
 * reader gets EPIPE. */
#include "corpus.h"
#include <signal.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], st;
	unsigned char buf[7919];
	long total = 0;
	uint32_t sum = 0, want = 0;
	pid_t pid;

	CHECK(pipe(p) == 0, "pipe");
	pid = fork();
	if (pid == 0) {
		long off = 0;
		close(p[0]);
		while (off < (512 << 10)) {
			int n = (int)((512 << 10) - off < (long)sizeof(buf) ? (512 << 10) - off : (long)sizeof(buf));
			for (int i = 0; i < n; i++)
				buf[i] = (unsigned char)((off + i) * 31);
			if (write(p[1], buf, n) != n)
				_exit(1);
			off += n;
		}
		_exit(0);
	}
	close(p[1]);
	for (;;) {
		ssize_t r = read(p[0], buf, sizeof(buf));
		CHECK(r >= 0, "read");
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			sum = sum * 33 + buf[i];
		total += r;
	}
	for (long i = 0; i < (512 << 10); i++)
		want = want * 33 + (unsigned char)(i * 31);
	CHECK(waitpid(pid, &st, 0) == pid && st == 0, "writer");
	CHECK(total == (512 << 10) && sum == want, "total %ld", total);
	say("512 KB through a pipe in order, then EOF\n");
	signal(SIGPIPE, SIG_IGN);
	CHECK(pipe(p) == 0, "pipe");
	close(p[0]);
	CHECK(write(p[1], "x", 1) == -1 && errno == EPIPE, "write without reader");
	say("write with no reader: EPIPE\n");
	ok();
}

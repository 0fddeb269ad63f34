/* MAP_PRIVATE: copy-on-write across fork, and a private file mapping whose
 * writes do not reach the file. */
#include "corpus.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(void)
{
	char path[] = "/tmp/corpus-mmap-XXXXXX", buf[8];
	int *p, fd, st;
	char *f;
	pid_t pid;

	p = mmap(NULL, 256 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "mmap");
	CHECK(p[1000] == 0, "anonymous memory not zero");
	for (int i = 0; i < (64 << 10); i += 1024)
		p[i] = i;
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < (64 << 10); i += 1024)
			if (p[i] != i)
				_exit(1);
		p[0] = -1;
		_exit(p[0] == -1 ? 0 : 2);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WEXITSTATUS(st) == 0, "child %#x", st);
	CHECK(p[0] == 0, "the child's write reached the parent");
	say("private anonymous mapping: the child saw the parent's data; its write stayed private\n");

	fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	CHECK(write(fd, "abcdefgh", 8) == 8, "write");
	f = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(f != MAP_FAILED && memcmp(f, "abcdefgh", 8) == 0, "file mapping");
	f[0] = 'X';
	CHECK(pread(fd, buf, 8, 0) == 8 && buf[0] == 'a', "a private write reached the file");
	munmap(f, 4096);
	close(fd);
	unlink(path);
	say("private file mapping: reads the file, writes stay in memory\n");
	ok();
}

/* MAP_SHARED anonymous memory between processes: parent and child each add
 * 50000 atomically; a shared file mapping's writes reach the file. */
#include "corpus.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(void)
{
	char path[] = "/tmp/corpus-shared-XXXXXX", buf[4];
	long *c;
	char *f;
	int st, fd;
	pid_t pid;

	c = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(c != MAP_FAILED, "mmap");
	pid = fork();
	for (int i = 0; i < 50000; i++)
		__atomic_add_fetch(c, 1, __ATOMIC_SEQ_CST);
	if (pid == 0)
		_exit(0);
	CHECK(waitpid(pid, &st, 0) == pid && st == 0, "child");
	CHECK(*c == 100000, "counter %ld", *c);
	say("shared anonymous mapping: 2 processes x 50000 atomic adds = 100000\n");

	fd = mkstemp(path);
	CHECK(fd >= 0 && ftruncate(fd, 4096) == 0, "file");
	f = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(f != MAP_FAILED, "mmap file");
	pid = fork();
	if (pid == 0) {
		memcpy(f, "abc", 3);
		msync(f, 4096, MS_SYNC);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(pread(fd, buf, 3, 0) == 3 && memcmp(buf, "abc", 3) == 0, "the child's write is not in the file");
	close(fd);
	unlink(path);
	say("shared file mapping: the child's write is in the file\n");
	ok();
}

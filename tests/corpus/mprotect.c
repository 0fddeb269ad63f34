/* mprotect: PROT_NONE faults on read, PROT_READ faults on write only, and
 * restoring RW keeps the data; mprotect on an unmapped range is ENOMEM. */
#include "corpus.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

static sigjmp_buf jb;
static volatile int faults;
static void on_segv(int sig) { (void)sig; faults++; siglongjmp(jb, 1); }

static int touch(volatile char *p, int write)
{
	int before = faults;

	if (sigsetjmp(jb, 1) == 0) {
		if (write)
			*p = 1;
		else
			(void)*p;
	}
	return faults - before;
}

int main(void)
{
	char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED, "mmap");
	signal(SIGSEGV, on_segv);
	p[4096] = 42;
	CHECK(mprotect(p + 4096, 4096, PROT_NONE) == 0, "PROT_NONE");
	CHECK(touch(p + 4096, 0) == 1 && touch(p, 0) == 0 && touch(p + 8192, 1) == 0, "PROT_NONE page");
	CHECK(mprotect(p + 4096, 4096, PROT_READ) == 0, "PROT_READ");
	CHECK(touch(p + 4096, 0) == 0 && touch(p + 4096, 1) == 1, "PROT_READ page");
	CHECK(mprotect(p + 4096, 4096, PROT_READ | PROT_WRITE) == 0 && p[4096] == 42, "RW again");
	say("PROT_NONE faults on read, PROT_READ only on write, RW keeps the data\n");
	munmap(p + 8192, 4096);
	CHECK(mprotect(p + 8192, 4096, PROT_READ) == -1 && errno == ENOMEM, "mprotect of a hole");
	say("mprotect of an unmapped page: ENOMEM\n");
	ok();
}

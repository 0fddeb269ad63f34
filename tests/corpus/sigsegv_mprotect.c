/* A write to a read-only page raises SIGSEGV with the faulting address;
 * the handler makes the page writable and the write is retried. */
#include "corpus.h"
#include <signal.h>
#include <sys/mman.h>

static char *page;
static volatile int faults;
static volatile int addr_ok;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig; (void)uc;
	faults++;
	addr_ok = (char *)si->si_addr == page + 123 && si->si_code == SEGV_ACCERR;
	mprotect(page, 4096, PROT_READ | PROT_WRITE);
}

int main(void)
{
	struct sigaction sa = { 0 };

	page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(page != MAP_FAILED, "mmap");
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, NULL);
	page[123] = 7;
	CHECK(faults == 1 && addr_ok && page[123] == 7, "faults %d addr_ok %d", faults, addr_ok);
	say("one SIGSEGV (SEGV_ACCERR at the written byte), the write retried after mprotect\n");
	page[124] = 8;
	CHECK(faults == 1, "a second fault on a writable page");
	ok();
}

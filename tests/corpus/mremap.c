/* mremap grows a mapping (moving it if needed) and keeps its contents;
 * MADV_DONTNEED on private anonymous memory reads back zeros. */
#include "corpus.h"
#include <sys/mman.h>

int main(void)
{
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *q;

	CHECK(p != MAP_FAILED, "mmap");
	memset(p, 'a', 8192);
	q = mremap(p, 8192, 1 << 20, MREMAP_MAYMOVE);
	CHECK(q != MAP_FAILED, "mremap");
	CHECK(q[0] == 'a' && q[8191] == 'a' && q[8192] == 0 && q[(1 << 20) - 1] == 0, "contents");
	say("mremap to 1 MB: old contents kept, new part zero\n");
	memset(q, 'b', 1 << 20);
	CHECK(madvise(q, 1 << 20, MADV_DONTNEED) == 0, "madvise");
	CHECK(q[0] == 0 && q[(1 << 20) - 1] == 0, "not zero after MADV_DONTNEED");
	say("MADV_DONTNEED: private anonymous pages read back as zero\n");
	ok();
}

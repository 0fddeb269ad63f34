/* __thread variables are per thread; a thread-specific key's destructor
 * runs at thread exit. */
#include "corpus.h"
#include <pthread.h>

static __thread long mine = 5;
static pthread_key_t key;
static volatile int destroyed;

static void dtor(void *p) { (void)p; __atomic_add_fetch(&destroyed, 1, __ATOMIC_SEQ_CST); }

static void *run(void *arg)
{
	long id = (long)arg;

	if (mine != 5)
		return (void *)-1L;
	pthread_setspecific(key, arg);
	for (int i = 0; i < 1000; i++)
		mine += id;
	return (void *)(pthread_getspecific(key) == arg ? mine : -2L);
}

int main(void)
{
	pthread_t t[4];
	void *r;

	pthread_key_create(&key, dtor);
	for (long i = 1; i <= 4; i++)
		pthread_create(&t[i - 1], NULL, run, (void *)i);
	for (long i = 1; i <= 4; i++) {
		pthread_join(t[i - 1], &r);
		CHECK((long)r == 5 + 1000 * i, "thread %ld: %ld", i, (long)r);
	}
	CHECK(mine == 5, "main's copy changed");
	CHECK(destroyed == 4, "destructors ran %d times", destroyed);
	say("4 threads: private __thread copies, 4 key destructors\n");
	ok();
}

/* A reader-writer lock: readers share it, a writer excludes everyone; the
 * readers always see a consistent pair. */
#include "corpus.h"
#include <pthread.h>

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long a, b;
static volatile int bad;

static void *reader(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		pthread_rwlock_rdlock(&rw);
		if (a != b)
			bad = 1;
		pthread_rwlock_unlock(&rw);
	}
	return NULL;
}

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 500; i++) {
		pthread_rwlock_wrlock(&rw);
		a++;
		b++;
		pthread_rwlock_unlock(&rw);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[4];

	pthread_create(&t[0], NULL, writer, NULL);
	pthread_create(&t[1], NULL, writer, NULL);
	pthread_create(&t[2], NULL, reader, NULL);
	pthread_create(&t[3], NULL, reader, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(!bad && a == 1000 && b == 1000, "a %ld b %ld bad %d", a, b, bad);
	pthread_rwlock_rdlock(&rw);
	CHECK(pthread_rwlock_tryrdlock(&rw) == 0, "second reader refused");
	CHECK(pthread_rwlock_trywrlock(&rw) == EBUSY, "writer admitted beside readers");
	pthread_rwlock_unlock(&rw);
	pthread_rwlock_unlock(&rw);
	say("rwlock: 2 writers x 500, readers always consistent; trywrlock EBUSY under readers\n");
	ok();
}

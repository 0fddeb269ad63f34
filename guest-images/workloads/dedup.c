/*
 * dedup - models PARSEC dedup.
 *
 * A five-stage pipeline compressing a deterministic, highly redundant input
 * stream with chunk-level deduplication.  Stages are connected by bounded
 * queues (mutex + two condition variables):
 *
 *   fragment (1 thread)  coarse content-defined segments (gear rolling hash)
 *   refine   (T threads) fine content-defined chunks + FNV-1a 64 hash
 *   dedup    (T threads) lookup/insert in a shared hash table with striped
 *                        mutexes; new chunks go to compress, duplicates
 *                        straight to the writer
 *   compress (T threads) own LZ77-style compressor into a shared arena
 *                        (atomic bump allocation)
 *   reorder  (main)      restores stream order and writes the archive:
 *                        first occurrence of a chunk as compressed data,
 *                        later ones as references
 *
 * Which thread wins the race to insert a chunk varies from run to run, but
 * the archive is written in stream order, so it is deterministic.
 *
 * Check: the archive decodes back to exactly the input, it is byte-identical
 * to the archive produced by a serial implementation (own open-addressing
 * table, no threads), and the unique and total chunk counts match.
 */
#include "wl.h"

#define MIN_CHUNK 256
#define MAX_CHUNK 4096
#define CHUNK_BITS 10 /* ~1 KiB average beyond the minimum */
#define MIN_SEG 8192
#define MAX_SEG 131072
#define SEG_BITS 15 /* ~32 KiB average beyond the minimum */
#define QCAP 32
#define NSTRIPE 64
#define LZ_HBITS 12

static uint64_t gear[256];

static void gear_init(void)
{
	uint64_t s = 0x6ea7ULL;
	for (int i = 0; i < 256; i++)
		gear[i] = wl_splitmix64(&s);
}

/* Length of the next content-defined piece of p[0..n). */
static size_t cut(const uint8_t *p, size_t n, size_t minsz, size_t maxsz,
		  int bits)
{
	if (n <= minsz)
		return n;
	size_t lim = n < maxsz ? n : maxsz;
	uint64_t mask = ~0ULL << (64 - bits);
	uint64_t h = 0;
	for (size_t i = minsz; i < lim; i++) {
		h = (h << 1) + gear[p[i]];
		if ((h & mask) == 0)
			return i + 1;
	}
	return lim;
}

static inline uint32_t load32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint32_t lz_bound(uint32_t n)
{
	return n + n / 128 + 1;
}

/* Tokens: c < 0x80: c+1 literals follow; c >= 0x80: match of length
 * (c & 0x7f) + 4 at distance given by the next two bytes (LE). */
static uint32_t lz_compress(const uint8_t *in, uint32_t n, uint8_t *out)
{
	uint16_t tab[1 << LZ_HBITS];
	memset(tab, 0, sizeof tab);
	uint32_t ip = 0, op = 0, lit = 0;
	while (ip + 4 <= n) {
		uint32_t v = load32(in + ip);
		uint32_t hs = (v * 2654435761u) >> (32 - LZ_HBITS);
		uint32_t cand = tab[hs];
		tab[hs] = (uint16_t)(ip + 1);
		if (cand && load32(in + cand - 1) == v) {
			uint32_t mp = cand - 1, ml = 4;
			while (ip + ml < n && ml < 131 && in[mp + ml] == in[ip + ml])
				ml++;
			while (lit < ip) {
				uint32_t k = ip - lit > 128 ? 128 : ip - lit;
				out[op++] = (uint8_t)(k - 1);
				memcpy(out + op, in + lit, k);
				op += k;
				lit += k;
			}
			uint32_t dist = ip - mp;
			out[op++] = (uint8_t)(0x80 | (ml - 4));
			out[op++] = (uint8_t)dist;
			out[op++] = (uint8_t)(dist >> 8);
			ip += ml;
			lit = ip;
		} else {
			ip++;
		}
	}
	while (lit < n) {
		uint32_t k = n - lit > 128 ? 128 : n - lit;
		out[op++] = (uint8_t)(k - 1);
		memcpy(out + op, in + lit, k);
		op += k;
		lit += k;
	}
	return op;
}

/* Returns decompressed length, or -1 on malformed input / overflow. */
static long lz_decompress(const uint8_t *in, uint32_t n, uint8_t *out,
			  uint32_t cap)
{
	uint32_t ip = 0, op = 0;
	while (ip < n) {
		uint8_t c = in[ip++];
		if (c < 0x80) {
			uint32_t k = (uint32_t)c + 1;
			if (ip + k > n || op + k > cap)
				return -1;
			memcpy(out + op, in + ip, k);
			ip += k;
			op += k;
		} else {
			if (ip + 2 > n)
				return -1;
			uint32_t ml = (uint32_t)(c & 0x7f) + 4;
			uint32_t dist = in[ip] | (uint32_t)in[ip + 1] << 8;
			ip += 2;
			if (dist == 0 || dist > op || op + ml > cap)
				return -1;
			for (uint32_t k = 0; k < ml; k++, op++)
				out[op] = out[op - dist];
		}
	}
	return op;
}

static inline uint64_t chunk_hash(const uint8_t *p, uint32_t n)
{
	return wl_fnv1a(WL_FNV_INIT ^ n, p, n);
}

/* ---------------- bounded queue ---------------- */

struct queue {
	void *buf[QCAP];
	int head, count, producers;
	pthread_mutex_t m;
	pthread_cond_t not_empty, not_full;
};

static void q_init(struct queue *q, int producers)
{
	memset(q, 0, sizeof *q);
	q->producers = producers;
	pthread_mutex_init(&q->m, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
}

static void q_push(struct queue *q, void *v)
{
	pthread_mutex_lock(&q->m);
	while (q->count == QCAP)
		pthread_cond_wait(&q->not_full, &q->m);
	q->buf[(q->head + q->count) % QCAP] = v;
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->m);
}

/* NULL once every producer is done and the queue is drained. */
static void *q_pop(struct queue *q)
{
	void *v = NULL;
	pthread_mutex_lock(&q->m);
	while (q->count == 0 && q->producers > 0)
		pthread_cond_wait(&q->not_empty, &q->m);
	if (q->count > 0) {
		v = q->buf[q->head];
		q->head = (q->head + 1) % QCAP;
		q->count--;
		pthread_cond_signal(&q->not_full);
	}
	pthread_mutex_unlock(&q->m);
	return v;
}

static void q_producer_done(struct queue *q)
{
	pthread_mutex_lock(&q->m);
	if (--q->producers == 0)
		pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->m);
}

/* ---------------- pipeline state ---------------- */

struct segment {
	size_t off, len;
	int idx;
};

struct entry {
	uint64_t hash;
	size_t off;
	uint32_t len, clen;
	struct entry *next;
	uint8_t *cdata;
	int done; /* compressed data ready (atomic) */
	int uid;  /* writer-private: -1 until written */
};

struct item {
	size_t off;
	uint32_t len;
	int seg, idx;
	uint64_t hash;
	struct entry *e;
};

struct pipe {
	const uint8_t *in;
	size_t len;
	int T;
	struct queue q_seg, q_chunk, q_comp, q_out;
	struct segment *segs;
	int nsegs;
	int *seg_base, *seg_count; /* seg_count: -1 until published */
	struct item *items;
	int nitems; /* atomic */
	struct entry *entries;
	int nentries; /* atomic */
	struct entry **buckets;
	size_t nbuckets;
	pthread_mutex_t stripe[NSTRIPE];
	uint8_t *arena;
	size_t arena_used; /* atomic */
};

static void *fragment_main(void *arg)
{
	struct pipe *pp = arg;
	size_t off = 0;
	int ns = 0;
	while (off < pp->len) {
		size_t l = cut(pp->in + off, pp->len - off, MIN_SEG, MAX_SEG, SEG_BITS);
		struct segment *s = &pp->segs[ns];
		s->off = off;
		s->len = l;
		s->idx = ns++;
		q_push(&pp->q_seg, s);
		off += l;
	}
	pp->nsegs = ns;
	q_producer_done(&pp->q_seg);
	return NULL;
}

static void *refine_main(void *arg)
{
	struct pipe *pp = arg;
	struct segment *s;
	while ((s = q_pop(&pp->q_seg)) != NULL) {
		const uint8_t *p = pp->in + s->off;
		int n = 0;
		for (size_t o = 0; o < s->len; n++)
			o += cut(p + o, s->len - o, MIN_CHUNK, MAX_CHUNK, CHUNK_BITS);
		int base = __atomic_fetch_add(&pp->nitems, n, __ATOMIC_RELAXED);
		size_t o = 0;
		for (int k = 0; k < n; k++) {
			struct item *it = &pp->items[base + k];
			uint32_t l = (uint32_t)cut(p + o, s->len - o, MIN_CHUNK,
						   MAX_CHUNK, CHUNK_BITS);
			it->off = s->off + o;
			it->len = l;
			it->seg = s->idx;
			it->idx = k;
			it->e = NULL;
			o += l;
		}
		pp->seg_base[s->idx] = base;
		__atomic_store_n(&pp->seg_count[s->idx], n, __ATOMIC_RELEASE);
		for (int k = 0; k < n; k++) {
			struct item *it = &pp->items[base + k];
			it->hash = chunk_hash(pp->in + it->off, it->len);
			q_push(&pp->q_chunk, it);
		}
	}
	q_producer_done(&pp->q_chunk);
	return NULL;
}

static void *dedup_main(void *arg)
{
	struct pipe *pp = arg;
	struct item *it;
	while ((it = q_pop(&pp->q_chunk)) != NULL) {
		size_t b = it->hash & (pp->nbuckets - 1);
		pthread_mutex_t *m = &pp->stripe[b % NSTRIPE];
		int first = 0;
		pthread_mutex_lock(m);
		struct entry *e;
		for (e = pp->buckets[b]; e; e = e->next)
			if (e->hash == it->hash && e->len == it->len &&
			    memcmp(pp->in + e->off, pp->in + it->off, it->len) == 0)
				break;
		if (!e) {
			int ix = __atomic_fetch_add(&pp->nentries, 1, __ATOMIC_RELAXED);
			e = &pp->entries[ix];
			e->hash = it->hash;
			e->off = it->off;
			e->len = it->len;
			e->clen = 0;
			e->cdata = NULL;
			e->done = 0;
			e->uid = -1;
			e->next = pp->buckets[b];
			pp->buckets[b] = e;
			first = 1;
		}
		pthread_mutex_unlock(m);
		it->e = e;
		q_push(first ? &pp->q_comp : &pp->q_out, it);
	}
	q_producer_done(&pp->q_comp);
	q_producer_done(&pp->q_out);
	return NULL;
}

static void *compress_main(void *arg)
{
	struct pipe *pp = arg;
	struct item *it;
	while ((it = q_pop(&pp->q_comp)) != NULL) {
		struct entry *e = it->e;
		size_t at = __atomic_fetch_add(&pp->arena_used, lz_bound(e->len),
					       __ATOMIC_RELAXED);
		e->cdata = pp->arena + at;
		e->clen = lz_compress(pp->in + e->off, e->len, e->cdata);
		__atomic_store_n(&e->done, 1, __ATOMIC_RELEASE);
		q_push(&pp->q_out, it);
	}
	q_producer_done(&pp->q_out);
	return NULL;
}

/* ---------------- archive writing ---------------- */

struct out {
	uint8_t *buf;
	size_t len;
	int nuid, nchunks;
};

static void put32(struct out *o, uint32_t v)
{
	memcpy(o->buf + o->len, &v, 4);
	o->len += 4;
}

static void put_unique(struct out *o, uint32_t len, const uint8_t *cdata,
		       uint32_t clen)
{
	o->buf[o->len++] = 'U';
	put32(o, len);
	put32(o, clen);
	memcpy(o->buf + o->len, cdata, clen);
	o->len += clen;
	o->nuid++;
	o->nchunks++;
}

static void put_ref(struct out *o, uint32_t uid)
{
	o->buf[o->len++] = 'R';
	put32(o, uid);
	o->nchunks++;
}

static void put_header(struct out *o, uint64_t inlen)
{
	memcpy(o->buf, "SDDP", 4);
	memcpy(o->buf + 4, &inlen, 8);
	o->len = 12;
}

static size_t out_bound(size_t len)
{
	size_t maxchunks = len / MIN_CHUNK + len / MIN_SEG + 2;
	return 12 + len + len / 128 + maxchunks * 10;
}

/* Writer: runs on the main thread, drains q_out, emits in stream order. */
static void reorder_main(struct pipe *pp, struct out *o, unsigned char *arrived)
{
	int cur_seg = 0, cur_idx = 0;
	put_header(o, pp->len);
	for (;;) {
		struct item *it = q_pop(&pp->q_out);
		if (it)
			arrived[it - pp->items] = 1;
		for (;;) {
			int cnt = __atomic_load_n(&pp->seg_count[cur_seg],
						  __ATOMIC_ACQUIRE);
			if (cnt < 0)
				break;
			if (cur_idx == cnt) {
				cur_seg++;
				cur_idx = 0;
				continue;
			}
			int ix = pp->seg_base[cur_seg] + cur_idx;
			if (!arrived[ix])
				break;
			struct entry *e = pp->items[ix].e;
			if (e->uid < 0) {
				if (!__atomic_load_n(&e->done, __ATOMIC_ACQUIRE))
					break; /* its compressor will push later */
				e->uid = o->nuid;
				put_unique(o, e->len, e->cdata, e->clen);
			} else {
				put_ref(o, (uint32_t)e->uid);
			}
			cur_idx++;
		}
		if (!it)
			break;
	}
}

/* ---------------- serial reference ---------------- */

struct sentry {
	uint64_t hash;
	size_t off;
	uint32_t len;
};

static void serial_encode(const uint8_t *in, size_t len, struct out *o)
{
	size_t maxchunks = len / MIN_CHUNK + len / MIN_SEG + 2;
	size_t tsize = 1;
	while (tsize < 2 * maxchunks)
		tsize <<= 1;
	int *tab = wl_xmalloc(sizeof(int) * tsize);
	for (size_t i = 0; i < tsize; i++)
		tab[i] = -1;
	struct sentry *ent = wl_xmalloc(sizeof(struct sentry) * maxchunks);
	uint8_t *tmp = wl_xmalloc(lz_bound(MAX_CHUNK));
	put_header(o, len);
	size_t off = 0;
	while (off < len) {
		size_t sl = cut(in + off, len - off, MIN_SEG, MAX_SEG, SEG_BITS);
		for (size_t co = 0; co < sl;) {
			const uint8_t *p = in + off + co;
			uint32_t cl = (uint32_t)cut(p, sl - co, MIN_CHUNK, MAX_CHUNK,
						    CHUNK_BITS);
			uint64_t h = chunk_hash(p, cl);
			size_t slot = h & (tsize - 1);
			int uid = -1;
			while (tab[slot] >= 0) {
				struct sentry *s = &ent[tab[slot]];
				if (s->hash == h && s->len == cl &&
				    memcmp(in + s->off, p, cl) == 0) {
					uid = tab[slot];
					break;
				}
				slot = (slot + 1) & (tsize - 1);
			}
			if (uid >= 0) {
				put_ref(o, (uint32_t)uid);
			} else {
				tab[slot] = o->nuid;
				ent[o->nuid].hash = h;
				ent[o->nuid].off = (size_t)(p - in);
				ent[o->nuid].len = cl;
				uint32_t clen = lz_compress(p, cl, tmp);
				put_unique(o, cl, tmp, clen);
			}
			co += cl;
		}
		off += sl;
	}
	free(tab);
	free(ent);
	free(tmp);
}

/* Decode an archive into rec (capacity cap); returns decoded length or -1. */
static long decode(const uint8_t *a, size_t alen, uint8_t *rec, size_t cap,
		   int maxuid)
{
	if (alen < 12 || memcmp(a, "SDDP", 4))
		return -1;
	uint64_t inlen;
	memcpy(&inlen, a + 4, 8);
	size_t *uoff = wl_xmalloc(sizeof(size_t) * (size_t)(maxuid + 1));
	uint32_t *ulen = wl_xmalloc(sizeof(uint32_t) * (size_t)(maxuid + 1));
	int nu = 0;
	size_t ip = 12, op = 0;
	long ret = -1;
	while (ip < alen) {
		uint8_t tag = a[ip++];
		if (tag == 'U' && ip + 8 <= alen) {
			uint32_t l, cl;
			memcpy(&l, a + ip, 4);
			memcpy(&cl, a + ip + 4, 4);
			ip += 8;
			if (ip + cl > alen || op + l > cap || nu > maxuid)
				goto out;
			if (lz_decompress(a + ip, cl, rec + op, l) != (long)l)
				goto out;
			uoff[nu] = op;
			ulen[nu++] = l;
			ip += cl;
			op += l;
		} else if (tag == 'R' && ip + 4 <= alen) {
			uint32_t u;
			memcpy(&u, a + ip, 4);
			ip += 4;
			if ((int)u >= nu || op + ulen[u] > cap)
				goto out;
			memcpy(rec + op, rec + uoff[u], ulen[u]);
			op += ulen[u];
		} else {
			goto out;
		}
	}
	if (op == inlen)
		ret = (long)op;
out:
	free(uoff);
	free(ulen);
	return ret;
}

/* ---------------- input generation ---------------- */

static size_t gen_text(struct wl_rng *r, uint8_t *dst, size_t n,
		       char words[][10], int nwords)
{
	size_t o = 0;
	while (o < n) {
		const char *w = words[wl_rng_below(r, (uint32_t)nwords)];
		for (int i = 0; w[i] && o < n; i++)
			dst[o++] = (uint8_t)w[i];
		if (o < n)
			dst[o++] = wl_rng_below(r, 12) == 0 ? '\n' : ' ';
	}
	return n;
}

static void gen_input(uint8_t *in, size_t len, uint64_t seed)
{
	struct wl_rng r;
	wl_rng_seed(&r, seed);
	static char words[256][10];
	int nwords = 256;
	for (int i = 0; i < nwords; i++) {
		int l = 2 + (int)wl_rng_below(&r, 8);
		for (int k = 0; k < l; k++)
			words[i][k] = (char)('a' + wl_rng_below(&r, 26));
		words[i][l] = 0;
	}
	enum { NBASE = 24, BASEMAX = 16384 };
	static uint8_t base[NBASE][BASEMAX];
	size_t blen[NBASE];
	for (int b = 0; b < NBASE; b++) {
		blen[b] = 2048 + wl_rng_below(&r, BASEMAX - 2048);
		gen_text(&r, base[b], blen[b], words, nwords);
	}
	size_t o = 0;
	while (o < len) {
		uint32_t kind = wl_rng_below(&r, 10);
		size_t room = len - o, n;
		if (kind < 8) { /* copy of a base block */
			int b = (int)wl_rng_below(&r, NBASE);
			n = blen[b] < room ? blen[b] : room;
			memcpy(in + o, base[b], n);
			if (kind >= 5) { /* mutated copy */
				int muts = 1 + (int)wl_rng_below(&r, 3);
				for (int m = 0; m < muts; m++)
					in[o + wl_rng_below(&r, (uint32_t)n)] =
						(uint8_t)('A' + wl_rng_below(&r, 26));
			}
		} else if (kind == 8) {
			n = 1024 + wl_rng_below(&r, 7168);
			n = n < room ? n : room;
			gen_text(&r, in + o, n, words, nwords);
		} else {
			n = 256 + wl_rng_below(&r, 1792);
			n = n < room ? n : room;
			if (wl_rng_below(&r, 2)) {
				memset(in + o, (int)wl_rng_below(&r, 256), n);
			} else {
				for (size_t i = 0; i < n; i++)
					in[o + i] = (uint8_t)wl_rng_next(&r);
			}
		}
		o += n;
	}
}

struct bufs {
	size_t len, maxsegs, maxitems, nbuckets;
	uint8_t *in, *rec, *arena;
	struct segment *segs;
	int *seg_base, *seg_count;
	struct item *items;
	struct entry *entries;
	struct entry **buckets;
	unsigned char *arrived;
	uint8_t *pout, *sout;
};

struct round_result {
	int ok, nchunks, nuid;
	size_t archive;
	uint64_t hash;
};

/* One input stream through the pipeline plus all checks. */
static struct round_result run_round(struct bufs *b, int T, uint64_t seed)
{
	struct round_result rr;
	size_t len = b->len;
	gen_input(b->in, len, seed);

	static struct pipe pp;
	memset(&pp, 0, sizeof pp);
	pp.in = b->in;
	pp.len = len;
	pp.T = T;
	pp.segs = b->segs;
	pp.seg_base = b->seg_base;
	pp.seg_count = b->seg_count;
	for (size_t i = 0; i < b->maxsegs; i++)
		pp.seg_count[i] = -1;
	pp.items = b->items;
	pp.entries = b->entries;
	pp.nbuckets = b->nbuckets;
	pp.buckets = b->buckets;
	memset(pp.buckets, 0, sizeof(struct entry *) * pp.nbuckets);
	for (int i = 0; i < NSTRIPE; i++)
		pthread_mutex_init(&pp.stripe[i], NULL);
	pp.arena = b->arena;
	q_init(&pp.q_seg, 1);
	q_init(&pp.q_chunk, T);
	q_init(&pp.q_comp, T);
	q_init(&pp.q_out, 2 * T);
	memset(b->arrived, 0, b->maxitems);

	struct out po = { b->pout, 0, 0, 0 };
	pthread_t tid[1 + 3 * WL_MAX_THREADS];
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int nt = 0, err = 0;
	err |= pthread_create(&tid[nt++], &attr, fragment_main, &pp);
	for (int t = 0; t < T; t++) {
		err |= pthread_create(&tid[nt++], &attr, refine_main, &pp);
		err |= pthread_create(&tid[nt++], &attr, dedup_main, &pp);
		err |= pthread_create(&tid[nt++], &attr, compress_main, &pp);
	}
	pthread_attr_destroy(&attr);
	if (err) {
		fprintf(stderr, "dedup: pthread_create failed\n");
		exit(1);
	}
	reorder_main(&pp, &po, b->arrived);
	for (int i = 0; i < nt; i++)
		pthread_join(tid[i], NULL);

	int all_written = po.nchunks == pp.nitems;

	struct out so = { b->sout, 0, 0, 0 };
	serial_encode(b->in, len, &so);

	long dl = decode(po.buf, po.len, b->rec, len, po.nuid);
	int round_trip = dl == (long)len && memcmp(b->rec, b->in, len) == 0;
	int same = po.len == so.len && memcmp(po.buf, so.buf, po.len) == 0;
	rr.ok = all_written && round_trip && same && po.nuid == so.nuid &&
		po.nchunks == so.nchunks && pp.nentries == so.nuid;
	if (!rr.ok)
		fprintf(stderr,
			"dedup: written=%d/%d roundtrip=%d same_archive=%d "
			"unique par=%d table=%d ser=%d chunks par=%d ser=%d\n",
			po.nchunks, pp.nitems, round_trip, same, po.nuid,
			pp.nentries, so.nuid, po.nchunks, so.nchunks);
	rr.nchunks = po.nchunks;
	rr.nuid = po.nuid;
	rr.archive = po.len;
	rr.hash = wl_fnv1a(WL_FNV_INIT, po.buf, po.len);
	return rr;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int tiny = a.size == WL_TINY;
	size_t len = tiny ? (size_t)512 * 1024 : (size_t)8 << 20;
	int rounds = tiny ? 1 : 24;
	gear_init();

	struct bufs b;
	b.len = len;
	b.maxsegs = len / MIN_SEG + 2;
	b.maxitems = len / MIN_CHUNK + b.maxsegs;
	b.nbuckets = 1;
	while (b.nbuckets < b.maxitems / 2)
		b.nbuckets <<= 1;
	b.in = wl_xmalloc(len);
	b.rec = wl_xmalloc(len);
	b.arena = wl_xmalloc(len + len / 128 + b.maxitems + 16);
	b.segs = wl_xmalloc(sizeof(struct segment) * b.maxsegs);
	b.seg_base = wl_xmalloc(sizeof(int) * b.maxsegs);
	b.seg_count = wl_xmalloc(sizeof(int) * b.maxsegs);
	b.items = wl_xmalloc(sizeof(struct item) * b.maxitems);
	b.entries = wl_xmalloc(sizeof(struct entry) * b.maxitems);
	b.buckets = wl_xmalloc(sizeof(struct entry *) * b.nbuckets);
	b.arrived = wl_xmalloc(b.maxitems);
	b.pout = wl_xmalloc(out_bound(len));
	b.sout = wl_xmalloc(out_bound(len));

	int ok = 1;
	long chunks = 0, unique = 0;
	size_t archive = 0;
	uint64_t h = WL_FNV_INIT;
	for (int r = 0; r < rounds; r++) {
		struct round_result rr = run_round(&b, a.threads,
						   0xdeda9ULL + 0x1000ULL * (uint64_t)r);
		ok &= rr.ok;
		chunks += rr.nchunks;
		unique += rr.nuid;
		archive += rr.archive;
		h = wl_fnv_u64(h, rr.hash);
	}
	return WL_FINISH(ok, "dedup", a,
			 "input=%zux%d chunks=%ld unique=%ld archive=%zu checksum=%016llx",
			 len, rounds, chunks, unique, archive, (unsigned long long)h);
}

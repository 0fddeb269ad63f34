/*
 * raytrace - models PARSEC raytrace.
 *
 * Whitted-style ray tracer (spheres on a checkered ground plane, two point
 * lights, hard shadows, mirror reflections) rendering a short camera
 * fly-around.  Rows of each frame are handed out dynamically through a
 * shared atomic counter; threads write disjoint rows of a shared frame
 * buffer and meet at a barrier between frames.  The scene is read-only
 * and every pixel is computed independently, so the image does not depend
 * on which thread rendered which row.
 *
 * Check: every frame is byte-identical to a serial render of the same
 * frame.
 */
#include <math.h>

#include "wl.h"

#define NSPH_MAX 64
#define MAXDEPTH 3

struct vec {
	double x, y, z;
};

static inline struct vec v3(double x, double y, double z)
{
	struct vec v = { x, y, z };
	return v;
}
static inline struct vec vadd(struct vec a, struct vec b)
{
	return v3(a.x + b.x, a.y + b.y, a.z + b.z);
}
static inline struct vec vsub(struct vec a, struct vec b)
{
	return v3(a.x - b.x, a.y - b.y, a.z - b.z);
}
static inline struct vec vmul(struct vec a, double s)
{
	return v3(a.x * s, a.y * s, a.z * s);
}
static inline struct vec vhad(struct vec a, struct vec b)
{
	return v3(a.x * b.x, a.y * b.y, a.z * b.z);
}
static inline double vdot(struct vec a, struct vec b)
{
	return a.x * b.x + a.y * b.y + a.z * b.z;
}
static inline struct vec vcross(struct vec a, struct vec b)
{
	return v3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z,
		  a.x * b.y - a.y * b.x);
}
static inline struct vec vnorm(struct vec a)
{
	return vmul(a, 1.0 / sqrt(vdot(a, a)));
}

struct sphere {
	struct vec c, color;
	double r, refl;
};

struct scene {
	struct sphere s[NSPH_MAX];
	int ns;
	struct vec light[2], lcolor[2];
};

struct camera {
	struct vec pos, fwd, right, up;
};

/* Nearest hit along the ray; returns object id (-1 none, ns = plane). */
static int intersect(const struct scene *sc, struct vec o, struct vec d,
		     double *tout)
{
	double best = 1e30;
	int id = -1;
	for (int i = 0; i < sc->ns; i++) {
		struct vec oc = vsub(o, sc->s[i].c);
		double b = vdot(oc, d);
		double c = vdot(oc, oc) - sc->s[i].r * sc->s[i].r;
		double disc = b * b - c;
		if (disc <= 0.0)
			continue;
		double sq = sqrt(disc);
		double t = -b - sq;
		if (t < 1e-6)
			t = -b + sq;
		if (t > 1e-6 && t < best) {
			best = t;
			id = i;
		}
	}
	if (d.y < -1e-9) { /* ground plane y = 0 */
		double t = -o.y / d.y;
		if (t > 1e-6 && t < best) {
			best = t;
			id = sc->ns;
		}
	}
	*tout = best;
	return id;
}

static struct vec trace(const struct scene *sc, struct vec o, struct vec d,
			int depth)
{
	double t;
	int id = intersect(sc, o, d, &t);
	if (id < 0) {
		double k = 0.5 * (d.y + 1.0);
		return v3(0.55 + 0.25 * k, 0.65 + 0.2 * k, 0.9);
	}
	struct vec p = vadd(o, vmul(d, t));
	struct vec n, base;
	double refl;
	if (id == sc->ns) {
		n = v3(0, 1, 0);
		int chk = ((int)floor(p.x * 0.5) + (int)floor(p.z * 0.5)) & 1;
		base = chk ? v3(0.9, 0.9, 0.9) : v3(0.25, 0.25, 0.3);
		refl = 0.15;
	} else {
		n = vnorm(vsub(p, sc->s[id].c));
		base = sc->s[id].color;
		refl = sc->s[id].refl;
	}
	struct vec col = vmul(base, 0.08);
	struct vec po = vadd(p, vmul(n, 1e-7 * (1.0 + fabs(t))));
	for (int l = 0; l < 2; l++) {
		struct vec ld = vsub(sc->light[l], p);
		double ldist = sqrt(vdot(ld, ld));
		ld = vmul(ld, 1.0 / ldist);
		double diff = vdot(n, ld);
		if (diff <= 0.0)
			continue;
		double st;
		int sid = intersect(sc, po, ld, &st);
		if (sid >= 0 && st < ldist)
			continue;
		col = vadd(col, vmul(vhad(base, sc->lcolor[l]), diff));
		struct vec h = vnorm(vsub(ld, d));
		double spec = vdot(n, h);
		if (spec > 0.0)
			col = vadd(col, vmul(sc->lcolor[l], 0.4 * pow(spec, 40.0)));
	}
	if (refl > 0.0 && depth < MAXDEPTH) {
		struct vec rd = vsub(d, vmul(n, 2.0 * vdot(d, n)));
		col = vadd(vmul(col, 1.0 - refl),
			   vmul(trace(sc, po, rd, depth + 1), refl));
	}
	return col;
}

static inline uint8_t to8(double v)
{
	if (!(v > 0.0))
		return 0;
	if (v >= 1.0)
		return 255;
	return (uint8_t)(v * 255.0 + 0.5);
}

struct render {
	const struct scene *sc;
	int W, H, ss, frames, T;
	uint8_t *img;          /* frames x H x W x 3 */
	int next_row;          /* atomic */
	int frame;
	pthread_barrier_t bar;
};

static struct camera make_camera(int frame, int frames)
{
	double ang = 0.35 + 0.6 * frame / (frames > 1 ? frames - 1 : 1);
	struct camera c;
	c.pos = v3(12.0 * sin(ang), 4.5, -12.0 * cos(ang));
	struct vec target = v3(0, 1.0, 0);
	c.fwd = vnorm(vsub(target, c.pos));
	c.right = vnorm(vcross(v3(0, 1, 0), c.fwd));
	c.up = vcross(c.fwd, c.right);
	return c;
}

static void render_row(const struct render *r, const struct camera *cam,
		       uint8_t *frame_img, int y)
{
	double aspect = (double)r->W / r->H;
	double inv = 1.0 / (r->ss * r->ss);
	for (int x = 0; x < r->W; x++) {
		struct vec acc = v3(0, 0, 0);
		for (int sy = 0; sy < r->ss; sy++)
			for (int sx = 0; sx < r->ss; sx++) {
				double u = ((x + (sx + 0.5) / r->ss) / r->W * 2.0 - 1.0) *
					   aspect * 0.6;
				double v = (1.0 - (y + (sy + 0.5) / r->ss) / r->H * 2.0) *
					   0.6;
				struct vec d = vnorm(vadd(cam->fwd,
							  vadd(vmul(cam->right, u),
							       vmul(cam->up, v))));
				acc = vadd(acc, trace(r->sc, cam->pos, d, 0));
			}
		uint8_t *px = frame_img + ((size_t)y * r->W + x) * 3;
		px[0] = to8(acc.x * inv);
		px[1] = to8(acc.y * inv);
		px[2] = to8(acc.z * inv);
	}
}

struct worker {
	struct render *r;
	int tid, rows;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct render *r = w->r;
	for (int f = 0; f < r->frames; f++) {
		struct camera cam = make_camera(f, r->frames);
		uint8_t *fi = r->img + (size_t)f * r->W * r->H * 3;
		for (;;) {
			int y = __atomic_fetch_add(&r->next_row, 1, __ATOMIC_RELAXED);
			if (y >= r->H)
				break;
			render_row(r, &cam, fi, y);
			w->rows++;
		}
		/* Everyone is past the counter; reset it for the next frame. */
		if (pthread_barrier_wait(&r->bar) == PTHREAD_BARRIER_SERIAL_THREAD)
			__atomic_store_n(&r->next_row, 0, __ATOMIC_RELAXED);
		pthread_barrier_wait(&r->bar);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse_args(argc, argv);
	int tiny = a.size == WL_TINY;

	static struct scene sc;
	struct wl_rng rng;
	wl_rng_seed(&rng, 0x7a17ace0ULL);
	sc.ns = tiny ? 12 : 24;
	for (int i = 0; i < sc.ns; i++) {
		double r = 0.35 + 0.6 * wl_rng_double(&rng);
		sc.s[i].r = r;
		sc.s[i].c = v3(-5.0 + 10.0 * wl_rng_double(&rng),
			       r + 1.5 * wl_rng_double(&rng),
			       -5.0 + 10.0 * wl_rng_double(&rng));
		sc.s[i].color = v3(0.2 + 0.8 * wl_rng_double(&rng),
				   0.2 + 0.8 * wl_rng_double(&rng),
				   0.2 + 0.8 * wl_rng_double(&rng));
		sc.s[i].refl = wl_rng_below(&rng, 3) == 0 ? 0.6 : 0.1;
	}
	sc.light[0] = v3(-6, 9, -4);
	sc.lcolor[0] = v3(0.8, 0.75, 0.7);
	sc.light[1] = v3(7, 6, -8);
	sc.lcolor[1] = v3(0.35, 0.4, 0.5);

	static struct render r;
	r.sc = &sc;
	r.W = tiny ? 128 : 512;
	r.H = tiny ? 96 : 384;
	r.ss = tiny ? 1 : 2;
	r.frames = tiny ? 2 : 4;
	r.T = a.threads;
	size_t fsz = (size_t)r.W * r.H * 3;
	r.img = wl_xmalloc(fsz * r.frames);
	uint8_t *ref = wl_xmalloc(fsz);
	pthread_barrier_init(&r.bar, NULL, (unsigned)a.threads);

	struct worker w[WL_MAX_THREADS];
	for (int t = 0; t < a.threads; t++) {
		w[t].r = &r;
		w[t].tid = t;
		w[t].rows = 0;
	}
	wl_run_threads(a.threads, worker_main, w, sizeof w[0]);

	int rows = 0;
	for (int t = 0; t < a.threads; t++)
		rows += w[t].rows;
	int ok = rows == r.H * r.frames;
	int bad_frames = 0;
	uint64_t h = WL_FNV_INIT;
	for (int f = 0; f < r.frames; f++) {
		struct camera cam = make_camera(f, r.frames);
		for (int y = 0; y < r.H; y++)
			render_row(&r, &cam, ref, y);
		if (memcmp(ref, r.img + (size_t)f * fsz, fsz))
			bad_frames++;
		h = wl_fnv1a(h, r.img + (size_t)f * fsz, fsz);
	}
	if (bad_frames)
		ok = 0;
	if (!ok)
		fprintf(stderr, "raytrace: rows=%d/%d bad_frames=%d\n", rows,
			r.H * r.frames, bad_frames);
	return WL_FINISH(ok, "raytrace", a,
			 "image=%dx%d frames=%d spp=%d checksum=%016llx", r.W, r.H,
			 r.frames, r.ss * r.ss, (unsigned long long)h);
}

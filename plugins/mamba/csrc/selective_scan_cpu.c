/* The selective scan of Mamba on CPU, forward and backward, fused.
 *
 * Plain C99 (no torch headers), built and loaded by selective_scan_cpu.py through ctypes, which
 * checks the library's ABI version and the layout of its structs before the first call (see
 * the end of this file). For each utterance b, channel d, frame t and state n:
 *
 *     delta[t] = softplus(delta_in[t]) if softplus else delta_in[t]
 *     h[t, n]  = exp(delta[t] A[d, n]) h[t-1, n] + delta[t] u[t] B[b, t, n]
 *     y[t]     = sum_n C[b, t, n] h[t, n]
 *     out[t]   = (y[t] + D[d] u[t]) * silu(z[t])     (D and z optional, as in mamba-ssm)
 *
 * The channels of each utterance are cut into tiles of TILE, spread over the threads of
 * torch's OpenMP runtime (pthreads when built without OpenMP; see run_tiles). For each frame, a tile reads delta and u of its
 * channels (softplus applied), updates its (N, TILE) states, vectorised over the channels
 * (per frame and state one exp and three multiply-adds, no horizontal sums), and writes
 * (y + D u) * silu(z). A thread runs all its tiles of an utterance frame by frame together,
 * so with channel-last tensors ((B, L, Din) memory, as the mixer has them: nothing is
 * transposed) each frame is read from one run of memory; channel-first tensors are run one
 * tile at a time instead. Inputs are read once, out written once, nothing is dispatched per
 * frame.
 *
 * Layouts (float32): u, delta, z, out and their gradients take any strides (b, d, t); B, C
 * (batch, L, N) by strides (b, t), the N states adjacent; A (Din, N); D (Din); initial and
 * last states (batch * Din, N). Saved for the backward in tile order: the state at the start
 * of every segment of K frames, ckpt (tiles, S, N, TILE) with S = ceil(L / K), and, when z is
 * given, the scan output before D and z, y (tiles, L, TILE).
 *
 * Backward, the reverse-time adjoint. With gy[t] = dLoss/dy[t] and g[t] = dLoss/dh[t]
 * through all later frames, a[t] = exp(delta[t] A), x[t] = delta[t] u[t]:
 *
 *     g[t]       = gy[t] C[t] + a[t+1] g[t+1]           (g[L-1] adds dLoss/dh_last)
 *     dC[t]     += gy[t] h[t]               dB[t] += g[t] x[t]
 *     dx[t]      = sum_n g[t, n] B[t, n]    da[n]  = g[t, n] h[t-1, n] a[t, n]
 *     du[t]      = dx[t] delta[t]           ddelta[t] = dx[t] u[t] + sum_n da[n] A[n]
 *     dA[n]     += da[n] delta[t]           dh_init = a[0] g[0]
 *
 * run per channel (vectorised over the states, as dB and dC sum over channels) segment by
 * segment from the last: a segment's K states and decays are recomputed from its checkpoint,
 * then the adjoint runs back over them. dB and dC: each thread adds into its own
 * (batch, L, N) buffer, summed by the caller; dA and dD: each channel writes its own slice of
 * a (batch * Din, N) / (batch * Din) buffer, summed over the batch by the caller.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bumped, with ABI_VERSION in selective_scan_cpu.py, whenever an exported function's signature
 * or the meaning of a scan_args field changes; the struct layouts are checked field by field. */
#define SELECTIVE_SCAN_ABI_VERSION 1
#define TILE 16 /* channels per tile: one AVX-512 vector, two AVX2 ones */
#define MAX_THREADS 256
#define SOFTPLUS_LINEAR 20.0f /* softplus(x) = x above this, as in PyTorch */
#define SOFTPLUS_ZERO -88.0f  /* softplus(x) < 1e-38 below this: taken as 0 (padding) */

typedef struct {
    int64_t b, d, t;
} strides3;

/* Mirrored field by field by _ScanArgs in selective_scan_cpu.py; a field added here goes into
 * scan_args_fields below too. */
typedef struct {
    int64_t batch, din, nstate, len, seg; /* seg: checkpoint interval K */
    int64_t softplus;                     /* delta holds softplus's input */
    int64_t threads;                      /* from selective_scan_threads */
    /* forward inputs; z, D and h0 may be NULL */
    const float *u, *delta, *z, *A, *B, *C, *D, *h0;
    strides3 su, sdelta, sz;
    int64_t sB_b, sB_t, sC_b, sC_t;
    /* forward outputs; y and ckpt may be NULL (inference) */
    float *out, *y, *hlast, *ckpt;
    strides3 sout;
    /* backward: dlast and dh0 may be NULL; dz when z is given, dD_rows when D is */
    const float *dout, *dlast;
    strides3 sdout;
    float *du, *ddelta, *dz;
    strides3 sdu, sddelta, sdz;
    float *dA_rows, *dD_rows, *dB_parts, *dC_parts, *dh0;
} scan_args;

typedef struct {
    const scan_args *p;
    int64_t tile_begin, tile_end;
    int64_t tid;
    int status; /* 0 ok, 1 out of memory */
} scan_task;

/* exp(x) to about 2 ulp for -87 <= x <= 88 (clamped outside), inlined so the loops stay
 * plain vector code: 2^k p(r) for x = k ln2 + r, |r| <= ln2 / 2 (ln2 split in two for an exact
 * reduction; fmaf keeps -ffast-math from merging the halves), p the degree-6 Taylor
 * polynomial. Twice as fast here as glibc's vectorised expf, a call per vector. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float k = rintf(x * 1.44269504088896341f);
    const float r = fmaf(-k, 1.42860682030941723e-06f, fmaf(-k, 0.693145751953125f, x));
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale;
    scale.i = ((int32_t)k + 127) << 23;
    return p * scale.f;
}

/* log(1 + e) for 0 <= e <= 1 as 2 atanh(s), s = e / (2 + e) <= 1/3, by its odd series up to
 * s^13 (truncation below 1e-8): plain arithmetic, so the loops calling it stay vector code
 * (libm's log1pf is a scalar call per element). */
static inline float log1p_unit(float e) {
    const float s = e / (2.0f + e), s2 = s * s;
    float q = 1.0f / 13.0f;
    q = q * s2 + 1.0f / 11.0f;
    q = q * s2 + 1.0f / 9.0f;
    q = q * s2 + 1.0f / 7.0f;
    q = q * s2 + 1.0f / 5.0f;
    q = q * s2 + 1.0f / 3.0f;
    q = q * s2 + 1.0f;
    return 2.0f * s * q;
}

/* softplus(v) = max(v, 0) + log(1 + exp(-|v|)) */
static inline float softplus(float v) {
    const float s = (v > 0.0f ? v : 0.0f) + log1p_unit(exp_approx(-fabsf(v)));
    return v > SOFTPLUS_LINEAR ? v : (v < SOFTPLUS_ZERO ? 0.0f : s);
}

/* d softplus(v) / dv = sigmoid(v) = exp(v - softplus(v)), from v and softplus(v) */
static inline float softplus_grad(float v, float sp) {
    const float e = v - sp;
    return v > SOFTPLUS_LINEAR ? 1.0f : (v < SOFTPLUS_ZERO ? 0.0f : exp_approx(e < 0.0f ? e : 0.0f));
}

static inline float sigmoid(float v) { return 1.0f / (1.0f + exp_approx(-v)); }

/* dst[g] = src[g * stride] for g < GE; a plain vector load when stride is 1. */
static inline __attribute__((always_inline)) void load_lanes(
    float *restrict dst, const float *restrict src, int64_t stride, const int64_t GE) {
    if (stride == 1) {
        for (int64_t g = 0; g < GE; ++g) dst[g] = src[g];
    } else {
        for (int64_t g = 0; g < GE; ++g) dst[g] = src[g * stride];
    }
}

static inline __attribute__((always_inline)) void store_lanes(
    float *restrict dst, const float *restrict src, int64_t stride, const int64_t GE) {
    if (stride == 1) {
        for (int64_t g = 0; g < GE; ++g) dst[g] = src[g];
    } else {
        for (int64_t g = 0; g < GE; ++g) dst[g * stride] = src[g];
    }
}

/* One frame of one tile: delta and delta * u of its channels, the recurrence vectorised over
 * them, and the D skip and gate into out; h and a are the tile's (N, TILE) states and A, Dv
 * its D. Lanes past GE carry zeros (delta = x = A = 0: their state stays 0). GE and N are
 * constants after inlining for full tiles and the common state sizes. */
static inline __attribute__((always_inline)) void forward_step(
    const scan_args *p, int64_t b, int64_t d0, int64_t t, float *restrict h, const float *restrict a,
    const float *restrict Dv, float *restrict y, const int64_t GE, const int64_t N) {
    const float *bt = p->B + b * p->sB_b + t * p->sB_t, *ct = p->C + b * p->sC_b + t * p->sC_t;
    float dtv[TILE], xv[TILE], uv[TILE], zv[TILE], acc[TILE], ov[TILE];
    for (int64_t g = 0; g < TILE; ++g) dtv[g] = uv[g] = zv[g] = acc[g] = 0.0f;
    load_lanes(dtv, p->delta + b * p->sdelta.b + d0 * p->sdelta.d + t * p->sdelta.t, p->sdelta.d, GE);
    load_lanes(uv, p->u + b * p->su.b + d0 * p->su.d + t * p->su.t, p->su.d, GE);
    if (p->softplus) {
        for (int64_t g = 0; g < TILE; ++g) dtv[g] = softplus(dtv[g]);
    }
    for (int64_t g = 0; g < TILE; ++g) xv[g] = dtv[g] * uv[g];
    for (int64_t n = 0; n < N; ++n) {
        const float bn = bt[n], cn = ct[n];
        float *hn = h + n * TILE;
        const float *an = a + n * TILE;
        for (int64_t g = 0; g < TILE; ++g) {
            hn[g] = exp_approx(dtv[g] * an[g]) * hn[g] + xv[g] * bn;
            acc[g] += cn * hn[g];
        }
    }
    if (y) {
        for (int64_t g = 0; g < TILE; ++g) y[t * TILE + g] = acc[g];
    }
    if (p->z) {
        load_lanes(zv, p->z + b * p->sz.b + d0 * p->sz.d + t * p->sz.t, p->sz.d, GE);
        for (int64_t g = 0; g < TILE; ++g) ov[g] = (acc[g] + Dv[g] * uv[g]) * zv[g] * sigmoid(zv[g]);
    } else {
        for (int64_t g = 0; g < TILE; ++g) ov[g] = acc[g] + Dv[g] * uv[g];
    }
    store_lanes(p->out + b * p->sout.b + d0 * p->sout.d + t * p->sout.t, ov, p->sout.d, GE);
}

/* The forward of tiles [k0, k1) of utterance b, frame by frame, each frame through all the
 * tiles before the next ("lockstep"): with channel-last inputs a frame's channels are then
 * read from one run of memory. h, a: (k1 - k0, N + 1, TILE) scratch: each tile's states
 * and its A, then D. */
static inline __attribute__((always_inline)) void forward_tiles(
    const scan_args *p, int64_t b, int64_t k0, int64_t k1, float *restrict h, float *restrict a, const int64_t N) {
    const int64_t L = p->len, K = p->seg, segments = (L + K - 1) / K, din = p->din;
    const int64_t tiles_per_row = (din + TILE - 1) / TILE;
    for (int64_t k = k0; k < k1; ++k) {
        const int64_t d0 = k * TILE, ge = din - d0 < TILE ? din - d0 : TILE;
        float *hk = h + (k - k0) * (N + 1) * TILE, *ak = a + (k - k0) * (N + 1) * TILE;
        for (int64_t n = 0; n < N; ++n) {
            for (int64_t g = 0; g < TILE; ++g) {
                ak[n * TILE + g] = g < ge ? p->A[(d0 + g) * N + n] : 0.0f;
                hk[n * TILE + g] = g < ge && p->h0 ? p->h0[((b * din) + d0 + g) * N + n] : 0.0f;
            }
        }
        for (int64_t g = 0; g < TILE; ++g) ak[N * TILE + g] = g < ge && p->D ? p->D[d0 + g] : 0.0f;
    }
    for (int64_t s = 0; s < segments; ++s) {
        const int64_t t0 = s * K, t1 = t0 + K < L ? t0 + K : L;
        if (p->ckpt) {
            for (int64_t k = k0; k < k1; ++k) {
                float *ckpt = p->ckpt + ((b * tiles_per_row + k) * segments + s) * N * TILE;
                memcpy(ckpt, h + (k - k0) * (N + 1) * TILE, (size_t)(N * TILE) * sizeof(float));
            }
        }
        for (int64_t t = t0; t < t1; ++t) {
            for (int64_t k = k0; k < k1; ++k) {
                const int64_t d0 = k * TILE;
                float *y = p->y ? p->y + (b * tiles_per_row + k) * L * TILE : NULL;
                float *hk = h + (k - k0) * (N + 1) * TILE;
                const float *ak = a + (k - k0) * (N + 1) * TILE, *Dk = ak + N * TILE;
                if (din - d0 >= TILE) {
                    forward_step(p, b, d0, t, hk, ak, Dk, y, TILE, N);
                } else {
                    forward_step(p, b, d0, t, hk, ak, Dk, y, din - d0, N);
                }
            }
        }
    }
    for (int64_t k = k0; k < k1; ++k) {
        const int64_t d0 = k * TILE, ge = din - d0 < TILE ? din - d0 : TILE;
        const float *hk = h + (k - k0) * (N + 1) * TILE;
        for (int64_t g = 0; g < ge; ++g)
            for (int64_t n = 0; n < N; ++n) p->hlast[(b * din + d0 + g) * N + n] = hk[n * TILE + g];
    }
}

/* The adjoint of channel d (lane g of its tile): gy (dLoss/dy) in; dx and dd (the decay part
 * of dLoss/ddelta) out; dt, x, gy, dx, dd are (L, TILE) buffers already offset to the lane.
 * adj, dA, start (N each) and hs, as (K N each) are scratch. */
static inline __attribute__((always_inline)) void backward_channel(
    const scan_args *p, int64_t tile, int64_t b, int64_t d, int64_t g, const float *restrict dt,
    const float *restrict x, const float *restrict gy, float *restrict dx, float *restrict dd,
    float *restrict dB, float *restrict dC, float *restrict adj, float *restrict dA, float *restrict start,
    float *restrict hs, float *restrict as, const int64_t N) {
    const int64_t L = p->len, K = p->seg, segments = (L + K - 1) / K, r = b * p->din + d;
    const float *a = p->A + d * N;
    const float *Bb = p->B + b * p->sB_b, *Cb = p->C + b * p->sC_b;
    const int64_t sBt = p->sB_t, sCt = p->sC_t;
    const float *ckpt = p->ckpt + tile * segments * N * TILE + g;
    dB += b * L * N;
    dC += b * L * N;
    for (int64_t n = 0; n < N; ++n) {
        adj[n] = p->dlast ? p->dlast[r * N + n] : 0.0f;
        dA[n] = 0.0f;
    }
    for (int64_t s = segments - 1; s >= 0; --s) {
        const int64_t t0 = s * K, t1 = t0 + K < L ? t0 + K : L;
        for (int64_t n = 0; n < N; ++n) start[n] = ckpt[(s * N + n) * TILE];
        const float *prev = start;
        for (int64_t t = t0; t < t1; ++t) { /* the segment's states and decays */
            const float dtt = dt[t * TILE], xt = x[t * TILE];
            const float *bt = Bb + t * sBt;
            float *ht = hs + (t - t0) * N, *at = as + (t - t0) * N;
            for (int64_t n = 0; n < N; ++n) {
                at[n] = exp_approx(dtt * a[n]);
                ht[n] = at[n] * prev[n] + xt * bt[n];
            }
            prev = ht;
        }
        for (int64_t t = t1 - 1; t >= t0; --t) { /* the adjoint, back over the segment */
            const float dtt = dt[t * TILE], xt = x[t * TILE], gyt = gy[t * TILE];
            const float *bt = Bb + t * sBt, *ct = Cb + t * sCt;
            const float *ht = hs + (t - t0) * N, *at = as + (t - t0) * N;
            const float *hp = t > t0 ? ht - N : start;
            float *dbt = dB + t * N, *dct = dC + t * N;
            float dxt = 0.0f, ddt = 0.0f;
            for (int64_t n = 0; n < N; ++n) {
                const float gn = adj[n] + gyt * ct[n];
                dct[n] += gyt * ht[n];
                dbt[n] += gn * xt;
                dxt += gn * bt[n];
                const float da = gn * hp[n] * at[n]; /* dLoss / d(delta A[n]) */
                ddt += da * a[n];
                dA[n] += da * dtt;
                adj[n] = gn * at[n];
            }
            dx[t * TILE] = dxt;
            dd[t * TILE] = ddt;
        }
    }
    for (int64_t n = 0; n < N; ++n) {
        if (p->dh0) p->dh0[r * N + n] = adj[n];
        p->dA_rows[r * N + n] = dA[n];
    }
}

#define DISPATCH_N(CALL)                 \
    switch (p->nstate) {                 \
        case 4: CALL(4); break;          \
        case 8: CALL(8); break;          \
        case 16: CALL(16); break;        \
        case 32: CALL(32); break;        \
        case 64: CALL(64); break;        \
        default: CALL(p->nstate); break; \
    }

static void *forward_task(void *arg) {
    scan_task *task = (scan_task *)arg;
    const scan_args *p = task->p;
    const int64_t N = p->nstate, tiles_per_row = (p->din + TILE - 1) / TILE;
    /* lockstep over all this thread's tiles of an utterance, unless frames are contiguous
     * per channel (channel-first), where one tile at a time keeps to a few runs of memory */
    const int64_t group = p->sdelta.t == 1 ? 1 : tiles_per_row;
    float *work = (float *)malloc((size_t)(2 * group * (N + 1) * TILE) * sizeof(float));
    if (!work) {
        task->status = 1;
        return NULL;
    }
    float *h = work, *a = work + group * (N + 1) * TILE;
    for (int64_t tile = task->tile_begin; tile < task->tile_end;) {
        const int64_t b = tile / tiles_per_row, k0 = tile % tiles_per_row;
        int64_t k1 = k0 + group < tiles_per_row ? k0 + group : tiles_per_row;
        if (b * tiles_per_row + k1 > task->tile_end) k1 = task->tile_end - b * tiles_per_row;
#define FORWARD(NN) forward_tiles(p, b, k0, k1, h, a, NN)
        DISPATCH_N(FORWARD)
#undef FORWARD
        tile = b * tiles_per_row + k1;
    }
    free(work);
    return NULL;
}

static void *backward_task(void *arg) {
    scan_task *task = (scan_task *)arg;
    const scan_args *p = task->p;
    const int64_t L = p->len, N = p->nstate, K = p->seg, tiles_per_row = (p->din + TILE - 1) / TILE;
    float *work = (float *)malloc((size_t)(5 * L * TILE + (3 + 2 * K) * N) * sizeof(float));
    if (!work) {
        task->status = 1;
        return NULL;
    }
    float *dt = work, *x = dt + L * TILE, *gy = x + L * TILE, *dx = gy + L * TILE, *dd = dx + L * TILE;
    float *adj = dd + L * TILE, *dA = adj + N, *start = dA + N, *hs = start + N, *as = hs + K * N;
    float *dB = p->dB_parts + task->tid * p->batch * L * N; /* this thread's buffers */
    float *dC = p->dC_parts + task->tid * p->batch * L * N;
    for (int64_t tile = task->tile_begin; tile < task->tile_end; ++tile) {
        const int64_t b = tile / tiles_per_row, d0 = tile % tiles_per_row * TILE;
        const int64_t ge = p->din - d0 < TILE ? p->din - d0 : TILE;
        float Dv[TILE], dD[TILE];
        for (int64_t g = 0; g < TILE; ++g) {
            Dv[g] = p->D && g < ge ? p->D[d0 + g] : 0.0f;
            dD[g] = 0.0f;
        }
        /* per frame: delta and delta * u, and back through the gate and the D skip: gy, dz, dD */
        for (int64_t t = 0; t < L; ++t) {
            float raw[TILE], uv[TILE], go[TILE], zv[TILE], dzv[TILE];
            float *dtt = dt + t * TILE, *xt = x + t * TILE, *gyt = gy + t * TILE;
            for (int64_t g = 0; g < TILE; ++g) raw[g] = uv[g] = go[g] = zv[g] = 0.0f;
            load_lanes(raw, p->delta + b * p->sdelta.b + d0 * p->sdelta.d + t * p->sdelta.t, p->sdelta.d, ge);
            load_lanes(uv, p->u + b * p->su.b + d0 * p->su.d + t * p->su.t, p->su.d, ge);
            load_lanes(go, p->dout + b * p->sdout.b + d0 * p->sdout.d + t * p->sdout.t, p->sdout.d, ge);
            for (int64_t g = 0; g < TILE; ++g) {
                dtt[g] = p->softplus ? softplus(raw[g]) : raw[g];
                xt[g] = dtt[g] * uv[g];
            }
            if (p->z) {
                const float *yt = p->y + (tile * L + t) * TILE;
                load_lanes(zv, p->z + b * p->sz.b + d0 * p->sz.d + t * p->sz.t, p->sz.d, ge);
                for (int64_t g = 0; g < TILE; ++g) {
                    const float sg = sigmoid(zv[g]);
                    gyt[g] = go[g] * zv[g] * sg;
                    dzv[g] = go[g] * (yt[g] + Dv[g] * uv[g]) * sg * (1.0f + zv[g] * (1.0f - sg));
                }
                store_lanes(p->dz + b * p->sdz.b + d0 * p->sdz.d + t * p->sdz.t, dzv, p->sdz.d, ge);
            } else {
                for (int64_t g = 0; g < TILE; ++g) gyt[g] = go[g];
            }
            for (int64_t g = 0; g < TILE; ++g) dD[g] += gyt[g] * uv[g];
        }
        for (int64_t g = 0; g < ge; ++g) {
            if (p->dD_rows) p->dD_rows[b * p->din + d0 + g] = dD[g];
#define BACKWARD(NN) \
    backward_channel(p, tile, b, d0 + g, g, dt + g, x + g, gy + g, dx + g, dd + g, dB, dC, adj, dA, start, hs, as, NN)
            DISPATCH_N(BACKWARD)
#undef BACKWARD
        }
        /* du, and ddelta through softplus */
        for (int64_t t = 0; t < L; ++t) {
            const float *dxt = dx + t * TILE, *ddt = dd + t * TILE, *dtt = dt + t * TILE, *gyt = gy + t * TILE;
            float raw[TILE], uv[TILE], duv[TILE], ddv[TILE];
            for (int64_t g = 0; g < TILE; ++g) raw[g] = uv[g] = 0.0f;
            load_lanes(raw, p->delta + b * p->sdelta.b + d0 * p->sdelta.d + t * p->sdelta.t, p->sdelta.d, ge);
            load_lanes(uv, p->u + b * p->su.b + d0 * p->su.d + t * p->su.t, p->su.d, ge);
            for (int64_t g = 0; g < TILE; ++g) {
                duv[g] = dxt[g] * dtt[g] + Dv[g] * gyt[g];
                ddv[g] = (dxt[g] * uv[g] + ddt[g]) * (p->softplus ? softplus_grad(raw[g], dtt[g]) : 1.0f);
            }
            store_lanes(p->du + b * p->sdu.b + d0 * p->sdu.d + t * p->sdu.t, duv, p->sdu.d, ge);
            store_lanes(p->ddelta + b * p->sddelta.b + d0 * p->sddelta.d + t * p->sddelta.t, ddv, p->sddelta.d, ge);
        }
    }
    free(work);
    return NULL;
}

static void init_tasks(const scan_args *p, scan_task *tasks) {
    const int64_t tiles = p->batch * ((p->din + TILE - 1) / TILE), threads = p->threads;
    for (int64_t i = 0; i < threads; ++i) {
        tasks[i].p = p;
        tasks[i].tile_begin = tiles * i / threads;
        tasks[i].tile_end = tiles * (i + 1) / threads;
        tasks[i].tid = i;
        tasks[i].status = 0;
    }
}

#ifdef _OPENMP
/* Splits the tiles over p->threads workers of the process's OpenMP runtime: loaded after
 * torch, this library binds to the libgomp torch already loaded, so the scan runs on torch's
 * own worker threads, which are still spinning from the projection before it, instead of
 * competing with them for the cores. Returns 0, or 1 when a worker ran out of memory. */
static int run_tiles(const scan_args *p, void *(*fn)(void *)) {
    scan_task tasks[MAX_THREADS];
    init_tasks(p, tasks);
    int64_t ran = 0;
#pragma omp parallel num_threads((int)p->threads)
    {
#pragma omp single
        ran = omp_get_num_threads();
        /* implicit barrier: ran is set; a smaller team than asked shares out the rest */
        for (int64_t i = omp_get_thread_num(); i < p->threads; i += ran) fn(&tasks[i]);
    }
    int status = 0;
    for (int64_t i = 0; i < p->threads; ++i) status = tasks[i].status ? tasks[i].status : status;
    return status;
}
#else
/* Splits the tiles over p->threads pthreads (the caller's thread is worker 0). Returns 0, or
 * 1 when a worker ran out of memory. */
static int run_tiles(const scan_args *p, void *(*fn)(void *)) {
    const int64_t threads = p->threads;
    scan_task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    init_tasks(p, tasks);
    for (int64_t i = 1; i < threads; ++i) {
        if (pthread_create(&ids[i], NULL, fn, &tasks[i]) == 0) {
            started[i] = 1;
        } else {
            fn(&tasks[i]); /* no thread to be had: run its tiles here */
        }
    }
    fn(&tasks[0]);
    int status = 0;
    for (int64_t i = 0; i < threads; ++i) {
        if (started[i]) pthread_join(ids[i], NULL);
        if (tasks[i].status) status = tasks[i].status;
    }
    return status;
}
#endif

/* Channels per tile: ckpt and y are kept in tile order (see the top). */
int64_t selective_scan_tile(void) { return TILE; }

/* How many workers run for `requested` threads: at least 1, at most one per tile and
 * MAX_THREADS. The backward needs that many (batch, L, N) buffers for dB and for dC. */
int64_t selective_scan_threads(int64_t batch, int64_t din, int64_t requested) {
    const int64_t tiles = batch * ((din + TILE - 1) / TILE);
    int64_t threads = requested < 1 ? 1 : requested;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > tiles) threads = tiles > 0 ? tiles : 1;
    return threads;
}

int selective_scan_forward(const scan_args *p) { return run_tiles(p, forward_task); }

/* Needs p->ckpt from the forward, and p->y when z is given; dB_parts and dC_parts are
 * p->threads zeroed (batch, L, N) buffers each. */
int selective_scan_backward(const scan_args *p) { return run_tiles(p, backward_task); }

/* The handshake selective_scan_cpu.py makes at load: its ctypes mirrors (_Strides3,
 * _ScanArgs) must have these sizes and field offsets, or it refuses the library. */
typedef struct {
    const char *name;
    size_t offset;
} field_offset;

#define FIELD(type, name) {#name, offsetof(type, name)}
static const field_offset strides3_fields[] = {FIELD(strides3, b), FIELD(strides3, d), FIELD(strides3, t)};
static const field_offset scan_args_fields[] = {
    FIELD(scan_args, batch),    FIELD(scan_args, din),      FIELD(scan_args, nstate),   FIELD(scan_args, len),
    FIELD(scan_args, seg),      FIELD(scan_args, softplus), FIELD(scan_args, threads),  FIELD(scan_args, u),
    FIELD(scan_args, delta),    FIELD(scan_args, z),        FIELD(scan_args, A),        FIELD(scan_args, B),
    FIELD(scan_args, C),        FIELD(scan_args, D),        FIELD(scan_args, h0),       FIELD(scan_args, su),
    FIELD(scan_args, sdelta),   FIELD(scan_args, sz),       FIELD(scan_args, sB_b),     FIELD(scan_args, sB_t),
    FIELD(scan_args, sC_b),     FIELD(scan_args, sC_t),     FIELD(scan_args, out),      FIELD(scan_args, y),
    FIELD(scan_args, hlast),    FIELD(scan_args, ckpt),     FIELD(scan_args, sout),     FIELD(scan_args, dout),
    FIELD(scan_args, dlast),    FIELD(scan_args, sdout),    FIELD(scan_args, du),       FIELD(scan_args, ddelta),
    FIELD(scan_args, dz),       FIELD(scan_args, sdu),      FIELD(scan_args, sddelta),  FIELD(scan_args, sdz),
    FIELD(scan_args, dA_rows),  FIELD(scan_args, dD_rows),  FIELD(scan_args, dB_parts), FIELD(scan_args, dC_parts),
    FIELD(scan_args, dh0),
};
#define COUNT(fields) (sizeof(fields) / sizeof(fields[0]))

int64_t selective_scan_abi_version(void) { return SELECTIVE_SCAN_ABI_VERSION; }

/* sizeof the struct named `type` ("scan_args" or "strides3"), -1 for another name. */
int64_t selective_scan_sizeof(const char *type) {
    if (strcmp(type, "scan_args") == 0) return (int64_t)sizeof(scan_args);
    if (strcmp(type, "strides3") == 0) return (int64_t)sizeof(strides3);
    return -1;
}

/* offsetof(type, field) for the structs of selective_scan_sizeof, -1 for a name not there. */
int64_t selective_scan_offsetof(const char *type, const char *field) {
    const int is_args = strcmp(type, "scan_args") == 0;
    if (!is_args && strcmp(type, "strides3") != 0) return -1;
    const field_offset *fields = is_args ? scan_args_fields : strides3_fields;
    const size_t count = is_args ? COUNT(scan_args_fields) : COUNT(strides3_fields);
    for (size_t i = 0; i < count; ++i) {
        if (strcmp(fields[i].name, field) == 0) return (int64_t)fields[i].offset;
    }
    return -1;
}

/* The floor of the move alone, written by hand in AVX2 C (a measurement, not part of the package).

   gcc -O3 -march=native -o /tmp/move_floor benchmarks/move_floor_avx2.c -lm
   /tmp/move_floor 16 && /tmp/move_floor 128 && /tmp/move_floor 512

   The step of cosmicflow.integrate (push._push_lanes) with nothing observed: half drift, the
   look-up (padded float32 (Bx, By, Bz, T) per cell, as the full field layout), the trilinear
   blend of one cell's 4 values as one vector per corner, the Boris rotation, the second half
   drift, periodic wrap, and the prefetch of the look-up two steps ahead; no output times, no
   phase, no recorders. 8 particles in flight as NG = 2 groups of 4 lanes (-DNG=k to change),
   every value of a step in registers, 2000 particles x 2500 steps, r_L = 10 cells, steps of
   0.5 cells, a white-noise field with |B| ~ 3-5 muG. Prints the best of 3 runs in ns per
   particle-step: compare with benchmarks/bench_integrate.py's kernel with its recorders removed
   (README "Scaling": 21 / 26 ns at 16^3 / 128^3). The compiler may contract multiply-adds, which
   the package does not: this is, if anything, a lower floor.
*/
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <math.h>
#include <time.h>
#ifndef NG
#define NG 2
#endif
static inline __m256d wrap(__m256d c, __m256d n) {
  __m256d hi = _mm256_cmp_pd(c, n, _CMP_GE_OQ), lo = _mm256_cmp_pd(c, _mm256_setzero_pd(), _CMP_LT_OQ);
  c = _mm256_blendv_pd(c, _mm256_sub_pd(c, n), hi);
  return _mm256_blendv_pd(c, _mm256_add_pd(c, n), lo);
}
static inline __m256d corner(__m256d c, __m256d *w) {  // q as double, w
  __m256d g = _mm256_sub_pd(c, _mm256_set1_pd(0.5));
  __m256d q = _mm256_cvtepi32_pd(_mm256_cvttpd_epi32(_mm256_add_pd(g, _mm256_set1_pd(1.0))));
  *w = _mm256_sub_pd(g, _mm256_sub_pd(q, _mm256_set1_pd(1.0)));
  return q;
}
int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s GRID [STEPS]\n", argv[0]); return 2; }
  int n = atoi(argv[1]); long steps = argc > 2 ? atol(argv[2]) : 2500; int nparts = 2000;
  long g = n + 2; size_t cells = (size_t)g * g * g;
  float *f = aligned_alloc(64, cells * 16);
  srand(1);
  for (size_t i = 0; i < cells; i++) { f[4*i] = 3.0f*(rand()/(float)RAND_MAX-0.5f)*2; f[4*i+1] = 3.0f*(rand()/(float)RAND_MAX-0.5f)*2; f[4*i+2] = 3.0f + 3.0f*(rand()/(float)RAND_MAX-0.5f)*2; f[4*i+3] = 100.0f; }
  double *st = aligned_alloc(64, sizeof(double) * 7 * nparts);
  for (int p = 0; p < nparts; p++) {
    st[7*p] = n * (rand()/(double)RAND_MAX); st[7*p+1] = n * (rand()/(double)RAND_MAX); st[7*p+2] = n * (rand()/(double)RAND_MAX);
    double a = rand()/(double)RAND_MAX*6.283, z = 2.0*(rand()/(double)RAND_MAX)-1, s = sqrt(1-z*z);
    st[7*p+3] = s*cos(a); st[7*p+4] = s*sin(a); st[7*p+5] = z; st[7*p+6] = 3.0;
  }
  const __m256d N = _mm256_set1_pd(n), G1 = _mm256_set1_pd(g), G2 = _mm256_set1_pd(g), FOUR = _mm256_set1_pd(4.0);
  const __m256d MAXROT_R1 = _mm256_set1_pd(0.1 * 30.0), MAXLEN = _mm256_set1_pd(0.5), HALFC = _mm256_set1_pd(0.5);
  const __m256d INV_R1 = _mm256_set1_pd(1.0/30.0), ONE = _mm256_set1_pd(1.0), TWO = _mm256_set1_pd(2.0), THREE = _mm256_set1_pd(3.0);
  const long sk = 4, sj = g * 4, si = g * g * 4;
  double best = 1e30, chk = 0; long total = 0;
  double *st0 = aligned_alloc(64, sizeof(double) * 7 * nparts);
  for (int i = 0; i < 7 * nparts; i++) st0[i] = st[i];
  for (int rep = 0; rep < 3; rep++) {
  for (int i = 0; i < 7 * nparts; i++) st[i] = st0[i];
  chk = 0; total = 0;
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int p0 = 0; p0 < nparts; p0 += 4 * NG) {
    __m256d cx[NG], cy[NG], cz[NG], nx[NG], ny[NG], nz[NG], bp[NG];
    for (int v = 0; v < NG; v++) {
      double t[7][4];
      for (int l = 0; l < 4; l++) for (int k = 0; k < 7; k++) t[k][l] = st[7*(p0+4*v+l)+k];
      cx[v] = _mm256_loadu_pd(t[0]); cy[v] = _mm256_loadu_pd(t[1]); cz[v] = _mm256_loadu_pd(t[2]);
      nx[v] = _mm256_loadu_pd(t[3]); ny[v] = _mm256_loadu_pd(t[4]); nz[v] = _mm256_loadu_pd(t[5]); bp[v] = _mm256_loadu_pd(t[6]);
    }
    for (long s = 0; s < steps; s++) {
      for (int v = 0; v < NG; v++) {
        __m256d h = _mm256_min_pd(_mm256_div_pd(MAXROT_R1, bp[v]), MAXLEN), half = _mm256_mul_pd(HALFC, h);
        __m256d mx = wrap(_mm256_add_pd(cx[v], _mm256_mul_pd(half, nx[v])), N);
        __m256d my = wrap(_mm256_add_pd(cy[v], _mm256_mul_pd(half, ny[v])), N);
        __m256d mz = wrap(_mm256_add_pd(cz[v], _mm256_mul_pd(half, nz[v])), N);
        __m256d wx, wy, wz, qx = corner(mx, &wx), qy = corner(my, &wy), qz = corner(mz, &wz);
        __m256d of = _mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(qx, G1), qy), G2), qz), FOUR);
        __m128i oi = _mm256_cvttpd_epi32(of);
        int o[4]; _mm_storeu_si128((__m128i*)o, oi);
        double WX[4], WY[4], WZ[4]; _mm256_storeu_pd(WX, wx); _mm256_storeu_pd(WY, wy); _mm256_storeu_pd(WZ, wz);
        __m256d r[4];
        for (int l = 0; l < 4; l++) {
          const float *b = f + o[l];
          __m256d c0 = _mm256_cvtps_pd(_mm_loadu_ps(b)), c1 = _mm256_cvtps_pd(_mm_loadu_ps(b + sk));
          __m256d c2 = _mm256_cvtps_pd(_mm_loadu_ps(b + sj)), c3 = _mm256_cvtps_pd(_mm_loadu_ps(b + sj + sk));
          __m256d c4 = _mm256_cvtps_pd(_mm_loadu_ps(b + si)), c5 = _mm256_cvtps_pd(_mm_loadu_ps(b + si + sk));
          __m256d c6 = _mm256_cvtps_pd(_mm_loadu_ps(b + si + sj)), c7 = _mm256_cvtps_pd(_mm_loadu_ps(b + si + sj + sk));
          __m256d uz = _mm256_set1_pd(1 - WZ[l]), wzl = _mm256_set1_pd(WZ[l]);
          __m256d uy = _mm256_set1_pd(1 - WY[l]), wyl = _mm256_set1_pd(WY[l]);
          __m256d ux = _mm256_set1_pd(1 - WX[l]), wxl = _mm256_set1_pd(WX[l]);
          __m256d a0 = _mm256_add_pd(_mm256_mul_pd(c0, uz), _mm256_mul_pd(c1, wzl));
          __m256d a1 = _mm256_add_pd(_mm256_mul_pd(c2, uz), _mm256_mul_pd(c3, wzl));
          __m256d a2 = _mm256_add_pd(_mm256_mul_pd(c4, uz), _mm256_mul_pd(c5, wzl));
          __m256d a3 = _mm256_add_pd(_mm256_mul_pd(c6, uz), _mm256_mul_pd(c7, wzl));
          __m256d e0 = _mm256_add_pd(_mm256_mul_pd(a0, uy), _mm256_mul_pd(a1, wyl));
          __m256d e1 = _mm256_add_pd(_mm256_mul_pd(a2, uy), _mm256_mul_pd(a3, wyl));
          r[l] = _mm256_add_pd(_mm256_mul_pd(e0, ux), _mm256_mul_pd(e1, wxl));
        }
        __m256d t01 = _mm256_unpacklo_pd(r[0], r[1]), t23 = _mm256_unpacklo_pd(r[2], r[3]);
        __m256d u01 = _mm256_unpackhi_pd(r[0], r[1]), u23 = _mm256_unpackhi_pd(r[2], r[3]);
        __m256d bx = _mm256_permute2f128_pd(t01, t23, 0x20), bz = _mm256_permute2f128_pd(t01, t23, 0x31);
        __m256d by = _mm256_permute2f128_pd(u01, u23, 0x20);
        __m256d bm = _mm256_sqrt_pd(_mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(bx, bx), _mm256_mul_pd(by, by)), _mm256_mul_pd(bz, bz)));
        __m256d k = _mm256_mul_pd(half, INV_R1);
        __m256d tx = _mm256_mul_pd(bx, k), ty = _mm256_mul_pd(by, k), tz = _mm256_mul_pd(bz, k);
        __m256d ff = _mm256_div_pd(TWO, _mm256_add_pd(ONE, _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(tx, tx), _mm256_mul_pd(ty, ty)), _mm256_mul_pd(tz, tz))));
        __m256d px = _mm256_add_pd(nx[v], _mm256_sub_pd(_mm256_mul_pd(ny[v], tz), _mm256_mul_pd(nz[v], ty)));
        __m256d py = _mm256_add_pd(ny[v], _mm256_sub_pd(_mm256_mul_pd(nz[v], tx), _mm256_mul_pd(nx[v], tz)));
        __m256d pz = _mm256_add_pd(nz[v], _mm256_sub_pd(_mm256_mul_pd(nx[v], ty), _mm256_mul_pd(ny[v], tx)));
        __m256d sx = _mm256_mul_pd(ff, tx), sy = _mm256_mul_pd(ff, ty), sz = _mm256_mul_pd(ff, tz);
        __m256d kx = _mm256_add_pd(nx[v], _mm256_sub_pd(_mm256_mul_pd(py, sz), _mm256_mul_pd(pz, sy)));
        __m256d ky = _mm256_add_pd(ny[v], _mm256_sub_pd(_mm256_mul_pd(pz, sx), _mm256_mul_pd(px, sz)));
        __m256d kz = _mm256_add_pd(nz[v], _mm256_sub_pd(_mm256_mul_pd(px, sy), _mm256_mul_pd(py, sx)));
        cx[v] = wrap(_mm256_add_pd(cx[v], _mm256_mul_pd(half, _mm256_add_pd(nx[v], kx))), N);
        cy[v] = wrap(_mm256_add_pd(cy[v], _mm256_mul_pd(half, _mm256_add_pd(ny[v], ky))), N);
        cz[v] = wrap(_mm256_add_pd(cz[v], _mm256_mul_pd(half, _mm256_add_pd(nz[v], kz))), N);
        nx[v] = kx; ny[v] = ky; nz[v] = kz; bp[v] = bm;
        // prefetch the look-up two steps ahead
        __m256d h3 = _mm256_mul_pd(THREE, half);
        __m256d ax = wrap(_mm256_add_pd(cx[v], _mm256_mul_pd(h3, kx)), N), ay = wrap(_mm256_add_pd(cy[v], _mm256_mul_pd(h3, ky)), N), az = wrap(_mm256_add_pd(cz[v], _mm256_mul_pd(h3, kz)), N);
        __m256d vx, vy, vz, ax0 = corner(ax, &vx), ay0 = corner(ay, &vy), az0 = corner(az, &vz);
        __m128i pi = _mm256_cvttpd_epi32(_mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(_mm256_mul_pd(ax0, G1), ay0), G2), az0), FOUR));
        int po[4]; _mm_storeu_si128((__m128i*)po, pi);
        for (int l = 0; l < 4; l++) {
          const char *b = (const char*)(f + po[l]);
          _mm_prefetch(b, _MM_HINT_T0); _mm_prefetch(b + 28, _MM_HINT_T0);
          _mm_prefetch(b + sj*4, _MM_HINT_T0); _mm_prefetch(b + sj*4 + 28, _MM_HINT_T0);
          _mm_prefetch(b + si*4, _MM_HINT_T0); _mm_prefetch(b + si*4 + 28, _MM_HINT_T0);
          _mm_prefetch(b + si*4 + sj*4, _MM_HINT_T0); _mm_prefetch(b + si*4 + sj*4 + 28, _MM_HINT_T0);
        }
      }
    }
    for (int v = 0; v < NG; v++) { double t[4]; _mm256_storeu_pd(t, cx[v]); chk += t[0] + t[3]; }
    total += 4 * NG * steps;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double sec = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  if (sec / total * 1e9 < best) best = sec / total * 1e9;
  }
  printf("%d^3: %.1f ns per particle-step, best of 3 (%ld particle-steps each, checksum %g)\n", n, best, total, chk);
  return 0;
}

// conv and conv_transpose: every op-fixture case (forward and every gradient), plus larger random
// shapes against a naive double-precision loop (these take the tiled, threaded and strided paths
// that the small fixtures do not reach), plus shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/test_util.h"
#include "engine/gradcheck.h"
#include "engine/ops.h"
#include "engine/op_fixture.h"
#include "kernels/cpu/conv_k2s2.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu_paths.h"
#include "kernels/parallel.h"

namespace {

using pw::Tensor;
using pw::Var;

Tensor random_tensor(const pw::Shape& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng);
  return t;
}

// Naive conv (transposed = false) or conv_transpose on N,C,D,H,W tensors (2D: D = 1, kD = 1) in
// double precision: y, and dx, dw, db for upstream gradient gy.
// m* hold, per element, the sum of the magnitudes of its terms (the scale of float rounding).
struct Naive {
  std::vector<double> y, dx, dw, db, my, mdx, mdw, mdb;
};

Naive naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& gy, int s, int p, bool transposed) {
  auto dims5 = [](const Tensor& t) {
    pw::Shape d = t.shape();
    if (d.size() == 4) d.insert(d.begin() + 2, 1);
    return d;
  };
  const pw::Shape xs = dims5(x), ws = dims5(w), ys = dims5(gy);
  const int64_t N = xs[0], C = xs[1], O = ys[1];
  const int64_t kd = ws[2], kh = ws[3], kw = ws[4];
  const int64_t sd = xs.size() == 5 && x.ndim() == 5 ? s : 1, pd = x.ndim() == 5 ? p : 0;
  Naive r;
  r.y.assign(gy.numel(), 0.0);
  r.dx.assign(x.numel(), 0.0);
  r.dw.assign(w.numel(), 0.0);
  r.db.assign(O, 0.0);
  r.my.assign(gy.numel(), 0.0);
  r.mdx.assign(x.numel(), 0.0);
  r.mdw.assign(w.numel(), 0.0);
  r.mdb.assign(O, 0.0);
  const float *xp = x.f32(), *wp = w.f32(), *bp = b.f32(), *gp = gy.f32();
  auto xi = [&](int64_t n, int64_t c, int64_t d, int64_t h, int64_t ww) {
    return (((n * C + c) * xs[2] + d) * xs[3] + h) * xs[4] + ww;
  };
  auto yi = [&](int64_t n, int64_t o, int64_t d, int64_t h, int64_t ww) {
    return (((n * O + o) * ys[2] + d) * ys[3] + h) * ys[4] + ww;
  };
  auto wi = [&](int64_t o, int64_t c, int64_t a, int64_t bb, int64_t cc) {
    // conv: (O, C, k); transposed: (C, O, k)
    return transposed ? (((c * O + o) * kd + a) * kh + bb) * kw + cc : (((o * C + c) * kd + a) * kh + bb) * kw + cc;
  };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < ys[2] * ys[3] * ys[4]; ++i) {
        r.y[yi(n, o, 0, 0, 0) + i] += bp[o];
        r.my[yi(n, o, 0, 0, 0) + i] += std::abs(bp[o]);
        r.db[o] += gp[yi(n, o, 0, 0, 0) + i];
        r.mdb[o] += std::abs(gp[yi(n, o, 0, 0, 0) + i]);
      }
  // One loop over every (x voxel, y voxel, tap) pair, in the direction that is a gather for conv.
  const pw::Shape& small = transposed ? xs : ys;  // the "output" of the underlying conv
  const pw::Shape& big = transposed ? ys : xs;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t od = 0; od < small[2]; ++od)
          for (int64_t oh = 0; oh < small[3]; ++oh)
            for (int64_t ow = 0; ow < small[4]; ++ow)
              for (int64_t a = 0; a < kd; ++a)
                for (int64_t bb = 0; bb < kh; ++bb)
                  for (int64_t cc = 0; cc < kw; ++cc) {
                    int64_t id = od * sd - pd + a, ih = oh * s - p + bb, iw = ow * s - p + cc;
                    if (id < 0 || ih < 0 || iw < 0 || id >= big[2] || ih >= big[3] || iw >= big[4]) continue;
                    // conv: x at (id,ih,iw), y at (od,oh,ow); transposed: x at (od,..), y at (id,..)
                    int64_t xidx = transposed ? xi(n, c, od, oh, ow) : xi(n, c, id, ih, iw);
                    int64_t yidx = transposed ? yi(n, o, id, ih, iw) : yi(n, o, od, oh, ow);
                    int64_t widx = wi(o, c, a, bb, cc);
                    r.y[yidx] += double(wp[widx]) * xp[xidx];
                    r.dx[xidx] += double(wp[widx]) * gp[yidx];
                    r.dw[widx] += double(xp[xidx]) * gp[yidx];
                    r.my[yidx] += std::abs(double(wp[widx]) * xp[xidx]);
                    r.mdx[xidx] += std::abs(double(wp[widx]) * gp[yidx]);
                    r.mdw[widx] += std::abs(double(xp[xidx]) * gp[yidx]);
                  }
  return r;
}

void check_vs_naive(const pw::Shape& xs, const pw::Shape& ws, int s, int p, bool transposed, unsigned seed) {
  INFO("x " << pw::shape_str(xs) << " w " << pw::shape_str(ws) << " stride " << s << " pad " << p
            << (transposed ? " transposed" : ""));
  const int64_t O = transposed ? ws[1] : ws[0];
  Var x = pw::variable(random_tensor(xs, seed), true);
  Var w = pw::variable(random_tensor(ws, seed + 1), true);
  Var b = pw::variable(random_tensor({O}, seed + 2), true);
  Var y = transposed ? pw::conv_transpose(x, w, b, s) : pw::conv(x, w, b, s, p);
  Tensor gy = random_tensor(y->value.shape(), seed + 3);
  pw::backward(y, gy);
  Naive r = naive_conv(x->value, w->value, b->value, gy, s, p, transposed);
  // The op-fixture rule, plus float32 rounding of the sum (1e-6 of its terms' magnitudes) for
  // elements whose terms cancel.
  auto check = [](const Tensor& got, const std::vector<double>& ref, const std::vector<double>& mag,
                  const std::string& what) {
    const std::vector<float> a = got.to_vector();
    REQUIRE(a.size() == ref.size());
    double max_ref = 0.0;
    for (double v : ref) max_ref = std::max(max_ref, std::abs(v));
    int bad = 0;
    for (size_t i = 0; i < a.size(); ++i)
      if (std::abs(a[i] - ref[i]) > 1e-4 * std::abs(ref[i]) + 1e-5 * max_ref + 1e-6 * mag[i] && bad++ == 0)
        FAIL_CHECK(what << "[" << i << "]: got " << a[i] << ", expected " << ref[i]);
    CHECK_MESSAGE(bad == 0, what << ": " << bad << " elements out of tolerance");
  };
  check(y->value, r.y, r.my, "y");
  check(x->grad, r.dx, r.mdx, "dx");
  check(w->grad, r.dw, r.mdw, "dw");
  check(b->grad, r.db, r.mdb, "db");
}

// Runs f(special) with the process's CPU conv path set to the special kernels (special = true), then to the
// direct loops, and restores the path (kernels/cpu_paths.h).
template <class F>
void on_both_conv_paths(const F& f) {
  namespace kc = pw::kernels::cpu;
  const kc::ConvPath before = kc::conv_path();
  for (kc::ConvPath path : {kc::ConvPath::special, kc::ConvPath::direct}) {
    kc::set_conv_path(path);
    CAPTURE(path == kc::ConvPath::special ? "special" : "direct");
    f(path == kc::ConvPath::special);
  }
  kc::set_conv_path(before);
}

}  // namespace

TEST_CASE("conv and conv_transpose match every op-fixture case (forward and all gradients)") {
  std::ifstream f(pw::test::test_data("op-fixtures/index.json"));
  auto index = nlohmann::json::parse(f);
  int ran = 0;
  for (const auto& c : index["cases"]) {
    const std::string op = c["op"], name = c["name"];
    const bool transposed = op.rfind("conv_transpose", 0) == 0;
    if (op.rfind("conv", 0) != 0) continue;
    CAPTURE(name);
    const int stride = c["params"]["stride"], padding = c["params"]["padding"];
    Var x = pw::variable(pw::test::fixture(name, "x").to_f32(), true);
    Var w = pw::variable(pw::test::fixture(name, "weight").to_f32(), true);
    Var b = pw::variable(pw::test::fixture(name, "bias").to_f32(), true);
    Var y = transposed ? pw::conv_transpose(x, w, b, stride) : pw::conv(x, w, b, stride, padding);
    CHECK(y->value.shape() == pw::test::fixture(name, "y").shape);
    pw::test::check_fixture(y->value, name, "y");
    pw::backward(y, pw::test::fixture(name, "grad_y").to_f32());
    pw::test::check_fixture(x->grad, name, "grad_x");
    pw::test::check_fixture(w->grad, name, "grad_weight");
    pw::test::check_fixture(b->grad, name, "grad_bias");
    ++ran;
  }
  CHECK(ran == 10);  // 4 conv3d + 4 conv2d + 2 conv_transpose cases in index.json
}

TEST_CASE("conv matches a naive loop on shapes that span several tiles and threads") {
  check_vs_naive({2, 8, 12, 20, 20}, {5, 8, 3, 3, 3}, 1, 1, false, 10);    // k3 p1, several tiles
  check_vs_naive({3, 8, 11, 20, 20}, {4, 8, 3, 3, 3}, 2, 1, false, 20);    // stride 2 (col2im path)
  check_vs_naive({2, 40, 9, 30, 31}, {3, 40, 1, 1, 1}, 1, 0, false, 30);   // 1x1x1, no im2col
  check_vs_naive({2, 3, 9, 10, 11}, {4, 3, 3, 2, 3}, 1, 2, false, 40);     // non-cubic kernel, pad > k/2
  check_vs_naive({1, 21, 5, 6, 18}, {10, 21, 3, 3, 3}, 1, 1, false, 45);   // K = 567: two tap chunks
  // Rows of 8 and 4 columns run on half- and quarter-width vectors (kernels/cpu/conv.cpp with_packet).
  check_vs_naive({2, 16, 8, 8, 8}, {16, 16, 3, 3, 3}, 1, 1, false, 46);    // 8^3: half width
  check_vs_naive({2, 12, 4, 4, 4}, {20, 12, 3, 3, 3}, 1, 1, false, 47);    // 4^3: quarter width
  // 1x1x1 on rows of a multiple of the SIMD width: the source (and dy) are read in place, not copied.
  check_vs_naive({2, 5, 3, 4, 32}, {3, 5, 1, 1, 1}, 1, 0, false, 48);
  check_vs_naive({3, 6, 5, 16}, {2, 6, 1, 1}, 1, 0, false, 49);
  check_vs_naive({2, 3, 2, 3, 32}, {3, 4, 1, 1, 1}, 1, 0, true, 51);      // transposed 1x1x1
  check_vs_naive({3, 16, 70, 90}, {6, 16, 3, 3}, 1, 1, false, 50);         // 2D, several tiles
  check_vs_naive({2, 4, 17, 16}, {3, 4, 5, 5}, 3, 2, false, 60);           // 2D, stride 3
  check_vs_naive({2, 4, 5, 6, 7}, {4, 3, 3, 3, 3}, 2, 0, true, 70);        // transposed k3 s2 (overlap)
  check_vs_naive({2, 6, 20, 30}, {6, 5, 2, 2}, 2, 0, true, 80);            // transposed 2D k2 s2
  check_vs_naive({1, 3, 4, 5, 6}, {3, 2, 3, 3, 3}, 1, 0, true, 90);        // transposed stride 1
}

// Strided convolutions and transposed ones run on phase-split copies of their source, whole or per tile
// of output planes (see kernels/cpu/conv.cpp): odd sizes, channel counts that are no multiple of the SIMD width or the
// register blocks, phases that no tap reaches (k < s), padding beyond k - 1.
TEST_CASE("strided and transposed conv match a naive loop on every phase geometry") {
  // Whether a source is split per tile, the planes per tile and the channel blocks of the data
  // gradient depend on the thread count: each case at 1, 2 and 3 threads.
  const int before = pw::num_threads();
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    pw::set_num_threads(threads);
    check_vs_naive({2, 17, 9, 13, 21}, {19, 17, 3, 3, 3}, 2, 1, false, 100);  // k3 s2 p1, odd everything
    check_vs_naive({2, 5, 7, 9, 11}, {3, 5, 2, 2, 2}, 2, 0, false, 110);      // k2 s2, odd sizes (last row cut)
    check_vs_naive({1, 4, 7, 8, 9}, {5, 4, 3, 3, 3}, 2, 2, false, 120);       // pad 2 > k - 1
    check_vs_naive({2, 3, 7, 8, 10}, {4, 3, 1, 1, 1}, 2, 0, false, 130);      // k1 s2: phases no tap reads
    check_vs_naive({1, 6, 10, 11, 12}, {7, 6, 3, 3, 3}, 3, 1, false, 140);    // k3 s3
    check_vs_naive({2, 17, 5, 7, 9}, {17, 9, 2, 2, 2}, 2, 0, true, 150);      // transposed k2 s2, odd channels
    check_vs_naive({1, 3, 4, 5, 6}, {3, 2, 1, 1, 1}, 3, 0, true, 160);        // transposed k1 s3: bias-only phases
    check_vs_naive({1, 5, 3, 4, 5}, {5, 6, 4, 4, 4}, 3, 0, true, 170);        // transposed k4 s3 (uneven overlap)
    check_vs_naive({3, 9, 17, 19}, {11, 9, 3, 3}, 2, 1, false, 180);          // 2D k3 s2 p1
    // Sources split per tile of output planes (kernels/cpu/conv.cpp, Source), several tiles per sample:
    check_vs_naive({1, 32, 21, 24, 24}, {5, 32, 3, 3, 3}, 2, 1, false, 190);  // 2 planes a tile, the last 1
    check_vs_naive({2, 64, 9, 22, 23}, {3, 64, 3, 3, 3}, 2, 1, false, 200);   // 1 plane a tile
    check_vs_naive({1, 5, 11, 12, 12}, {5, 32, 3, 3, 3}, 2, 0, true, 210);    // transposed k3 s2: its gradients
    check_vs_naive({1, 16, 32, 64, 64}, {2, 16, 3, 3, 3}, 2, 1, false, 220);  // dx of 8 MB: streamed rows
  }
  pw::set_num_threads(before);
}

// 3x3x3 stride-1 convolutions whose channel counts are multiples of the SIMD width run by Winograd
// F(2x2x2, 3x3x3) (kernels/cpu/conv_winograd.cpp); every case runs on both CPU paths.
TEST_CASE("Winograd and direct 3x3x3 convs match a naive loop: odd sizes, pads 0-2, several slabs") {
  namespace kc = pw::kernels::cpu;
  struct Case {
    pw::Shape x, w;
    int pad;
  };
  const Case cases[] = {
      {{2, 16, 6, 8, 10}, {16, 16, 3, 3, 3}, 1},   // even sizes, two samples
      {{1, 32, 7, 7, 9}, {16, 32, 3, 3, 3}, 1},    // odd sizes: partial tiles
      {{1, 16, 5, 10, 10}, {32, 16, 3, 3, 3}, 0},  // no padding (the data gradient pads by 2)
      {{2, 16, 3, 8, 8}, {16, 16, 3, 3, 3}, 2},    // pad 2 (the data gradient pads by 0)
      {{1, 48, 4, 12, 12}, {16, 48, 3, 3, 3}, 1},  // several blocks per slab
      {{1, 15, 5, 8, 10}, {14, 15, 3, 3, 3}, 1},   // channels padded to a SIMD multiple
      {{2, 8, 6, 8, 8}, {16, 8, 3, 3, 3}, 1},      // 8 channels: half-width lanes with AVX-512
      {{1, 24, 4, 8, 8}, {8, 24, 3, 3, 3}, 1},     // 24 and 8 channels
  };
  on_both_conv_paths([&](bool special) {
    unsigned seed = 200;
    for (const Case& c : cases) {
      pw::kernels::ConvGeom g;  // the path each case takes
      g.n = c.x[0], g.cin = c.x[1], g.cout = c.w[0];
      for (int d = 0; d < 3; ++d) {
        g.in[d] = c.x[2 + d], g.out[d] = c.x[2 + d] + 2 * c.pad - 2, g.k[d] = 3, g.pad[d] = c.pad;
      }
      CHECK(kc::winograd::suits(g) == special);
      check_vs_naive(c.x, c.w, 1, c.pad, false, seed += 10);
    }
  });
}

// k2 s2 convolutions and their transposes run in place by pairs of taps (kernels/cpu/conv_k2s2.cpp)
// on the special path, by the phase-split direct loops on the other; both against the naive loop.
// Rows of 16, 8, 4 and 2 outputs take 16-, 8- and 4-lane vectors; 6, 5, 3 and 12 end in a shifted
// tail vector (outputs computed twice, dy lanes already counted zeroed for the weight gradient).
TEST_CASE("k2 s2 convs and transposed convs match a naive loop on both conv paths") {
  namespace kc = pw::kernels::cpu;
  struct Case {
    pw::Shape x, w;
    bool transposed;
  };
  const Case cases[] = {
      {{2, 16, 8, 8, 32}, {16, 16, 2, 2, 2}, false},   // rows of 16 outputs
      {{1, 9, 6, 4, 24}, {11, 9, 2, 2, 2}, false},     // 12: a shifted tail of 16 lanes; odd channels
      {{2, 5, 4, 6, 10}, {7, 5, 2, 2, 2}, false},      // 5: a shifted tail of 8 lanes
      {{1, 3, 2, 2, 6}, {4, 3, 2, 2, 2}, false},       // 3: a shifted tail of 4 lanes
      {{1, 40, 4, 4, 4}, {3, 40, 2, 2, 2}, false},     // rows of 2, many taps
      {{2, 6, 10, 12}, {5, 6, 2, 2}, false},           // 2D: rows of 6
      {{2, 16, 4, 4, 8}, {16, 8, 2, 2, 2}, true},      // transposed: up to 8^3
      {{1, 7, 3, 5, 5}, {7, 13, 2, 2, 2}, true},       // transposed, rows of 5 (a shifted tail), odd channels
      {{2, 4, 5, 9}, {4, 6, 2, 2}, true},              // 2D transposed, rows of 9
      {{1, 16, 32, 64, 64}, {2, 16, 2, 2, 2}, false},  // dx of 8 MB: non-temporal stores
      {{1, 2, 16, 32, 32}, {2, 16, 2, 2, 2}, true},    // transposed, output of 8 MB: non-temporal stores
  };
  on_both_conv_paths([&](bool special) {
    unsigned seed = 300;
    for (const Case& c : cases) {
      const bool three_d = c.x.size() == 5;
      pw::kernels::ConvGeom g;  // the convolution of the case (of its data gradient when transposed)
      g.n = c.x[0], g.cin = c.transposed ? c.w[1] : c.x[1], g.cout = c.transposed ? c.x[1] : c.w[0];
      for (int d = 0; d < 3; ++d) {
        const int64_t size = three_d ? c.x[2 + d] : (d == 0 ? 1 : c.x[1 + d]);
        const int k = (three_d || d > 0) ? 2 : 1;
        g.out[d] = c.transposed ? size : size / k, g.in[d] = c.transposed ? size * k : size;
        g.k[d] = g.stride[d] = k;
      }
#ifdef __AVX2__
      CHECK(kc::k2s2::suits(g) == special);
#endif
      check_vs_naive(c.x, c.w, 2, 0, c.transposed, seed += 10);
    }
  });
}

// conv_transpose_backward computes dx, dw and db in one kernel; on the k2 s2 path in one pass over dy
// (kernels/cpu/conv_k2s2.cpp, transposed_backward). It must give the floats of the three separate kernels
// (the adjoint conv's forward and weight gradient, conv_backward_bias), with any of the three skipped, also
// when a sample's tiles fall to two workers (3 samples of 2 tiles each on 2 threads).
TEST_CASE("conv_transpose_backward equals the separate data, weight and bias kernels bit for bit") {
  namespace kc = pw::kernels::cpu;
  pw::kernels::ConvGeom g;  // transposed: 16^3 x 5 channels -> 32^3 x 7 channels
  g.n = 3, g.cin = 5, g.cout = 7;
  for (int d = 0; d < 3; ++d) g.in[d] = 16, g.out[d] = 32, g.k[d] = g.stride[d] = 2;
  pw::kernels::ConvGeom c = g;  // its adjoint conv: 32^3 x 7 -> 16^3 x 5
  std::swap(c.cin, c.cout);
  for (int d = 0; d < 3; ++d) std::swap(c.in[d], c.out[d]);
  const Tensor x = random_tensor({3, 5, 16, 16, 16}, 11), w = random_tensor({5, 7, 2, 2, 2}, 12);
  const Tensor dy = random_tensor({3, 7, 32, 32, 32}, 13);
  const int before = pw::num_threads();
  pw::set_num_threads(2);
  on_both_conv_paths([&](bool special) {
#ifdef __AVX2__
    CHECK(kc::k2s2::suits(c) == special);
#endif
    Tensor dx0 = Tensor::zeros_like(x), dw0 = Tensor::zeros_like(w), db0 = Tensor::zeros({7});
    kc::conv_forward(c, dy.f32(), w.f32(), nullptr, dx0.f32());
    kc::conv_backward_weight(c, dy.f32(), x.f32(), dw0.f32());
    kc::conv_backward_bias(g, dy.f32(), db0.f32());
    for (int mask = 1; mask < 8; ++mask) {
      CAPTURE(mask);
      Tensor dx = Tensor::full(x.shape(), -1.f), dw = Tensor::full(w.shape(), -1.f), db = Tensor::full({7}, -1.f);
      kc::conv_transpose_backward(g, x.f32(), dy.f32(), w.f32(), mask & 1 ? dx.f32() : nullptr,
                                  mask & 2 ? dw.f32() : nullptr, mask & 4 ? db.f32() : nullptr);
      if (mask & 1) CHECK(std::memcmp(dx.f32(), dx0.f32(), size_t(dx.nbytes())) == 0);
      if (mask & 2) CHECK(std::memcmp(dw.f32(), dw0.f32(), size_t(dw.nbytes())) == 0);
      if (mask & 4) CHECK(std::memcmp(db.f32(), db0.f32(), size_t(db.nbytes())) == 0);
      if (!(mask & 1)) CHECK(dx.f32()[0] == -1.f);  // skipped outputs stay untouched
    }
  });
  pw::set_num_threads(before);
}

TEST_CASE("conv and conv_transpose match a naive loop on random small geometries") {
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int t = 0; t < 40; ++t) {
    const bool transposed = t % 4 == 3, three_d = t % 2 == 0;
    const int k = pick(1, 4), s = pick(1, 3), p = transposed ? 0 : pick(0, 2);
    const int64_t cin = pick(1, 5), cout = pick(1, 10), n = pick(1, 3);
    pw::Shape xs{n, cin}, ws = transposed ? pw::Shape{cin, cout} : pw::Shape{cout, cin};
    for (int d = 0; d < (three_d ? 3 : 2); ++d) {
      xs.push_back(pick(std::max(1, k - 2 * p), 19));
      ws.push_back(k);
    }
    check_vs_naive(xs, ws, s, p, transposed, 1000 + t);
  }
}

TEST_CASE("conv without a bias and with a constant input computes only the needed gradients") {
  Var x = pw::constant(random_tensor({2, 3, 6, 6}, 1));
  Var w = pw::variable(random_tensor({4, 3, 3, 3}, 2), true);
  Var y = pw::conv(x, w, nullptr, 1, 1);
  pw::backward(pw::sum(y));
  CHECK(!x->grad.defined());
  REQUIRE(w->grad.defined());
  // d sum(y) / d w[o,c,a,b] = sum over n and positions of the (padded) input under the tap.
  double ref = 0.0;
  const float* xp = x->value.f32();
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 6; ++h)
      for (int ww = 0; ww < 6; ++ww) {
        int ih = h - 1, iw = ww - 1;  // tap (0, 0) of channel 1
        if (ih >= 0 && iw >= 0) ref += xp[((n * 3 + 1) * 6 + ih) * 6 + iw];
      }
  CHECK(w->grad.f32()[(2 * 3 + 1) * 9 + 0] == doctest::Approx(ref).epsilon(1e-5));
}

TEST_CASE("conv shape errors name the op and the shapes") {
  Var x = pw::constant(Tensor::zeros({1, 3, 8, 8}));
  CHECK_THROWS_WITH_AS(pw::conv(x, pw::constant(Tensor::zeros({4, 2, 3, 3})), nullptr, 1, 1),
                       doctest::Contains("conv: w [4,2,3,3] expects 2 input channels"), std::invalid_argument);
  CHECK_THROWS_AS(pw::conv(x, pw::constant(Tensor::zeros({4, 3, 3, 3, 3})), nullptr, 1, 1), std::invalid_argument);
  CHECK_THROWS_WITH_AS(pw::conv(x, pw::constant(Tensor::zeros({4, 3, 3, 3})), pw::constant(Tensor::zeros({3})), 1, 1),
                       doctest::Contains("bias"), std::invalid_argument);
  CHECK_THROWS_AS(pw::conv(x, pw::constant(Tensor::zeros({4, 3, 9, 9})), nullptr, 1, 0), std::invalid_argument);
  CHECK_THROWS_AS(pw::conv(x, pw::constant(Tensor::zeros({4, 3, 3, 3})), nullptr, 0, 0), std::invalid_argument);
  CHECK_THROWS_AS(pw::conv_transpose(x, pw::constant(Tensor::zeros({4, 3, 2, 2})), nullptr, 2), std::invalid_argument);
}

TEST_CASE("conv and conv_transpose pass the finite-difference gradient check") {
  auto rt = [](const pw::Shape& s, unsigned seed) { return random_tensor(s, seed); };
  auto conv_s1p1 = [](const std::vector<Var>& in) { return pw::conv(in[0], in[1], in[2], 1, 1); };
  auto conv_s2p1 = [](const std::vector<Var>& in) { return pw::conv(in[0], in[1], in[2], 2, 1); };
  auto conv3_s2p1 = [](const std::vector<Var>& in) { return pw::conv(in[0], in[1], in[2], 2, 1); };
  auto convt = [](const std::vector<Var>& in) { return pw::conv_transpose(in[0], in[1], in[2], 2); };
  for (auto [name, r] : {
           std::pair{"conv3d s1 p1", pw::gradcheck(conv_s1p1, {rt({1, 2, 3, 4, 3}, 1), rt({2, 2, 3, 3, 3}, 2), rt({2}, 3)})},
           std::pair{"conv2d s2 p1", pw::gradcheck(conv_s2p1, {rt({2, 2, 5, 4}, 4), rt({3, 2, 3, 3}, 5), rt({3}, 6)})},
           std::pair{"conv3d s2 p1", pw::gradcheck(conv3_s2p1, {rt({1, 2, 5, 4, 3}, 13), rt({3, 2, 3, 3, 3}, 14), rt({3}, 15)})},
           std::pair{"conv_transpose3d", pw::gradcheck(convt, {rt({1, 2, 2, 3, 2}, 7), rt({2, 3, 2, 2, 2}, 8), rt({3}, 9)})},
           std::pair{"conv_transpose2d k3", pw::gradcheck(convt, {rt({2, 2, 3, 2}, 10), rt({2, 2, 3, 3}, 11), rt({2}, 12)})},
       }) {
    INFO(name);
    CHECK(r.checked > 0);
    CHECK_MESSAGE(r.ok, r.message);
  }
}

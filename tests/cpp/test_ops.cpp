// ctest for the libtorch build (CMakeLists.txt): the CPU ops on a 3-atom example against values
// worked out by hand, called through the dispatcher as an embedding C++ program would.
//
// r0 = (0,0,0), r1 = (3,0,0), r2 = (0,4,0): d01 = 3, d02 = 4, d12 = 5.
// Edges sorted by source (both directions): 0->1, 0->2, 1->0, 1->2, 2->0, 2->1
// with scores                                  1,    2,    1,   -1,  0.5,    1.
// S_i = sum_j s_ij (r_i - r_j) / d_ij:
//   S0 = 1*(-3,0,0)/3 + 2*(0,-4,0)/4     = (-1, -2, 0), |S0| = sqrt(5) > clip = 2
//        -> clipped to (-1,-2,0) * 2/sqrt(5)
//   S1 = 1*(3,0,0)/3 - 1*(3,-4,0)/5      = (0.4, 0.8, 0)
//   S2 = 0.5*(0,4,0)/4 + 1*(-3,4,0)/5    = (-0.6, 1.3, 0)
// a = 0.5 (sqrt(2a) = 1), noise z0 = (0,0,1), z1 = (0.5,0,0), z2 = (0,0,-1):
//   r0' = (-1/sqrt5, -2/sqrt5, 1), r1' = (3.7, 0.4, 0), r2' = (-0.3, 4.65, -1).
//
// gine_aggregate with H = 2 on the same edges, pairs (0,1) -> 0, (0,2) -> 1, (1,2) -> 2, so
// edge_pair = [0, 1, 0, 2, 1, 2]; h = [[1,-1],[0,2],[-3,0.5]], a = [[0.5,-0.5],[1,1],[-1,0]]:
//   out0 = h0 + ReLU(h1 + a0) + ReLU(h2 + a1) = (1,-1) + (0.5,1.5) + (0,1.5) = (1.5, 2)
//   out1 = h1 + ReLU(h0 + a0) + ReLU(h2 + a2) = (0,2) + (1.5,0) + (0,0.5)    = (1.5, 2.5)
//   out2 = h2 + ReLU(h0 + a1) + ReLU(h1 + a2) = (-3,0.5) + (2,0) + (0,2)     = (-1, 2.5)
//
// project_sweeps on the same edges with targets t01 = t10 = 4 (d = 3), t02 = t20 = 4, t12 = t21 = 5
// (d already right) and step 0.25 = 0.5 / degree: one sweep moves only along the 0-1 edge,
//   acc0 = (4-3)/3 * (-3,0,0) = (-1,0,0), acc1 = (1,0,0), acc2 = 0
//   -> r0' = (-0.25,0,0), r1' = (3.25,0,0), r2' = (0,4,0).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

namespace {

int failures = 0;

void expect_close(const at::Tensor& got, const at::Tensor& want, double tol, const char* what) {
  const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
  if (!(err <= tol)) {
    std::printf("FAIL %s: max abs error %.3g > %.3g\n", what, err, tol);
    std::printf("got:\n%s\n", got.toString().c_str());
    ++failures;
  } else {
    std::printf("ok   %s (max abs error %.3g)\n", what, err);
  }
}

}  // namespace

int main() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("confgf_fast::langevin_step", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const std::optional<at::Tensor>&, double, double)>();

  const auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  const auto lng = torch::TensorOptions().dtype(torch::kLong);
  const at::Tensor pos = torch::tensor({0., 0., 0., 3., 0., 0., 0., 4., 0.}, dbl).view({3, 3});
  const at::Tensor edge_index = torch::tensor({0, 0, 1, 1, 2, 2, 1, 2, 0, 2, 0, 1}, lng).view({2, 6});
  const at::Tensor score = torch::tensor({1., 2., 1., -1., 0.5, 1.}, dbl);
  const at::Tensor noise = torch::tensor({0., 0., 1., 0.5, 0., 0., 0., 0., -1.}, dbl).view({3, 3});
  const at::Tensor rowptr = torch::tensor({0, 2, 4, 6}, lng);
  const double s5 = std::sqrt(5.0);
  const at::Tensor want = torch::tensor({-1 / s5, -2 / s5, 1., 3.7, 0.4, 0., -0.3, 4.65, -1.}, dbl).view({3, 3});

  expect_close(op.call(pos, edge_index, score, noise, rowptr, 0.5, 2.0), want, 1e-12, "float64, rowptr given");
  expect_close(op.call(pos, edge_index, score, noise, std::nullopt, 0.5, 2.0), want, 1e-12,
               "float64, rows found from edge_index");
  expect_close(op.call(pos.to(torch::kFloat), edge_index, score.to(torch::kFloat), noise.to(torch::kFloat), rowptr,
                       0.5, 2.0),
               want, 1e-6, "float32");
  // The inputs are not modified (the op writes a new buffer).
  expect_close(pos, torch::tensor({0., 0., 0., 3., 0., 0., 0., 4., 0.}, dbl).view({3, 3}), 0.0, "pos untouched");

  auto& dispatcher = c10::Dispatcher::singleton();
  auto distance = dispatcher.findSchemaOrThrow("confgf_fast::pairwise_distance", "")
                      .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  expect_close(distance.call(pos, edge_index), torch::tensor({3., 4., 3., 5., 4., 5.}, dbl), 1e-12,
               "pairwise_distance");
  auto coord_score = dispatcher.findSchemaOrThrow("confgf_fast::coord_score", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const std::optional<at::Tensor>&)>();
  expect_close(coord_score.call(pos, edge_index, score, rowptr),
               torch::tensor({-1., -2., 0., 0.4, 0.8, 0., -0.6, 1.3, 0.}, dbl).view({3, 3}), 1e-12, "coord_score");

  auto gine = dispatcher.findSchemaOrThrow("confgf_fast::gine_aggregate", "")
                  .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const std::optional<at::Tensor>&)>();
  const at::Tensor h = torch::tensor({1., -1., 0., 2., -3., 0.5}, dbl).view({3, 2});
  const at::Tensor attr = torch::tensor({0.5, -0.5, 1., 1., -1., 0.}, dbl).view({3, 2});
  const at::Tensor pair = torch::tensor({0, 1, 0, 2, 1, 2}, lng);
  const at::Tensor want_gine = torch::tensor({1.5, 2., 1.5, 2.5, -1., 2.5}, dbl).view({3, 2});
  expect_close(gine.call(h, edge_index, attr, pair, rowptr), want_gine, 1e-12, "gine_aggregate, rowptr given");
  expect_close(gine.call(h, edge_index, attr, pair, std::nullopt), want_gine, 1e-12, "gine_aggregate, rows found");

  auto sweeps = dispatcher.findSchemaOrThrow("confgf_fast::project_sweeps", "")
                    .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const std::optional<at::Tensor>&, int64_t)>();
  const at::Tensor target = torch::tensor({4., 4., 4., 5., 4., 5.}, dbl);
  const at::Tensor step = torch::full({3}, 0.25, dbl);
  expect_close(sweeps.call(pos, edge_index, target, step, rowptr, 1),
               torch::tensor({-0.25, 0., 0., 3.25, 0., 0., 0., 4., 0.}, dbl).view({3, 3}), 1e-12,
               "project_sweeps, one sweep");
  expect_close(sweeps.call(pos, edge_index, target, step, std::nullopt, 0), pos, 0.0, "project_sweeps, no sweep");

  // A rowptr that does not close at E is refused (one read on the CPU), not read past the edges.
  bool threw = false;
  try {
    coord_score.call(pos, edge_index, score, torch::tensor({0, 2, 4, 5}, lng));
  } catch (const c10::Error& err) {
    threw = std::string(err.what()).find("rowptr[N] must equal") != std::string::npos;
  }
  std::printf("%s short rowptr refused\n", threw ? "ok  " : "FAIL");
  failures += threw ? 0 : 1;

  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}

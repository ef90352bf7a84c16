#include "engine/gradcheck.h"

#include <cmath>
#include <random>
#include <sstream>
#include <stdexcept>

namespace pw {
namespace {

// L = sum r_i y_i in double, from a forward pass without a graph.
double projected(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs,
                 const std::vector<double>& r) {
  NoGradGuard no_grad;
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.push_back(variable(t, false));
  std::vector<float> y = f(vars)->value.to_vector();
  if (y.size() != r.size()) throw std::logic_error("gradcheck: the output's size changed between calls");
  double l = 0.0;
  for (size_t i = 0; i < y.size(); ++i) l += r[i] * static_cast<double>(y[i]);
  return l;
}

}  // namespace

GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  for (const Tensor& t : inputs)
    if (t.dtype() != DType::f32) throw std::invalid_argument("gradcheck: every input must be f32, got " + t.str());

  // Analytic: the op's backward of L = sum r*y.
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.push_back(variable(t.clone(), true));
  Var y = f(vars);
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<double> r(static_cast<size_t>(y->value.numel()));
  std::vector<float> rf(r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    rf[i] = static_cast<float>(uni(rng));
    r[i] = rf[i];
  }
  backward(y, Tensor::from_vector(y->value.shape(), rf).to(y->value.device()));

  GradcheckResult result;
  double worst_excess = -1.0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    std::vector<float> analytic = vars[k]->grad.defined() ? vars[k]->grad.to_vector()
                                                         : std::vector<float>(static_cast<size_t>(inputs[k].numel()), 0.f);
    std::vector<Tensor> probe;
    for (const Tensor& t : inputs) probe.push_back(t.cpu().clone());
    Tensor& xk = probe[k];
    std::vector<Tensor> on_device = probe;
    for (int64_t i = 0; i < xk.numel(); ++i) {
      const float x0 = xk.f32()[i];
      const float xp = static_cast<float>(x0 + options.step), xm = static_cast<float>(x0 - options.step);
      xk.f32()[i] = xp;
      on_device[k] = xk.to(inputs[k].device());
      const double lp = projected(f, on_device, r);
      xk.f32()[i] = xm;
      on_device[k] = xk.to(inputs[k].device());
      const double lm = projected(f, on_device, r);
      xk.f32()[i] = x0;
      const double numeric = (lp - lm) / (static_cast<double>(xp) - static_cast<double>(xm));
      const double a = analytic[static_cast<size_t>(i)];
      const double err = std::fabs(a - numeric);
      const double excess = err - (options.atol + options.rtol * std::fabs(numeric));
      result.max_abs_err = std::max(result.max_abs_err, err);
      ++result.checked;
      if (excess > worst_excess) {
        worst_excess = excess;
        std::ostringstream msg;
        msg << "input " << k << " " << inputs[k].str() << " element " << i << ": analytic " << a << ", numeric "
            << numeric << ", |diff| " << err;
        result.message = msg.str();
      }
    }
  }
  result.ok = worst_excess <= 0.0;
  if (result.ok) result.message = "ok (" + std::to_string(result.checked) + " elements; worst " + result.message + ")";
  return result;
}

}  // namespace pw

// libtorch's fused Adam (one pass over each weight, as torch.optim.Adam(fused=True)), which
// tch 0.24 does not expose: its binding generator skips ops that take lists and return nothing.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <vector>

extern "C" {

// Adam (L2 weight decay added to the gradient, as torch.optim.Adam) on `n` weights in place,
// with their first and second moments, after `step` steps (this one included). The tensors are
// tch's (at::Tensor*). Returns false, changing nothing it could avoid, if libtorch refused.
bool genseg_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** first, at::Tensor** second,
                       int n, double step, double lr, double beta1, double beta2, double weight_decay,
                       double eps) {
  try {
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> p, g, m, v, steps;
    auto step_tensor = at::full({}, step, at::TensorOptions().dtype(at::kFloat).device(params[0]->device()));
    for (int i = 0; i < n; i++) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*first[i]);
      v.push_back(*second[i]);
      steps.push_back(step_tensor);
    }
    at::_fused_adam_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps, false, false, std::nullopt,
                     std::nullopt);
    return true;
  } catch (...) {
    return false;
  }
}

}  // extern "C"

// bf16 autocast regions for genseg's forward passes. tch 0.24 exposes only the deprecated
// CUDA-only switch (float16 by default); this sets the device type and the dtype explicitly.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(bool cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Turns bf16 autocast on for the CPU or CUDA, saving the previous state in `was_enabled` and
// `was_dtype` for genseg_autocast_exit. Returns false (and changes nothing) if libtorch refused.
bool genseg_autocast_enter(bool cuda, bool* was_enabled, int* was_dtype) {
  try {
    const auto device = device_type(cuda);
    *was_enabled = at::autocast::is_autocast_enabled(device);
    *was_dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return true;
  } catch (...) {
    return false;
  }
}

// Restores what genseg_autocast_enter saved; the outermost region also drops the cached casts of
// the weights, as torch.autocast does on exit.
void genseg_autocast_exit(bool cuda, bool was_enabled, int was_dtype) {
  try {
    const auto device = device_type(cuda);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device, was_enabled);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(was_dtype));
  } catch (...) {
  }
}

}  // extern "C"

#include "engine/kv_residual.h"

namespace kvstack::engine {

size_t KvResidual::BytesFor(const KvShape& shape) {
  return static_cast<size_t>(shape.num_layers) * 2 * static_cast<size_t>(shape.num_kv_heads) *
         static_cast<size_t>(shape.block_size) * static_cast<size_t>(shape.head_dim) * sizeof(uint16_t);
}

KvResidual::KvResidual(const KvShape& shape)
    : kv_heads_(static_cast<size_t>(shape.num_kv_heads)),
      head_elems_(static_cast<size_t>(shape.block_size) * static_cast<size_t>(shape.head_dim)),
      data_(BytesFor(shape) / sizeof(uint16_t)) {}

}  // namespace kvstack::engine

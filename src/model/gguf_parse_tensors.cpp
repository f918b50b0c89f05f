// GGUF tensor table: descriptions read and checked one by one, then placed
// inside the data section and checked against each other.
#include <algorithm>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/gguf_parse.h"

namespace kvstack::gguf_internal {
namespace {

constexpr uint32_t kMaxDims = 4;  // ggml's GGML_MAX_DIMS

std::string TensorWhere(const GgufTensorInfo& t) {
  return fmt::format("tensor {} (info at offset {})", Printable(t.name), t.info_offset);
}

// Reads the fields after the name; `info.name` and `info.info_offset` are set.
Status ReadTensorFields(ByteCursor& cursor, uint32_t alignment, GgufTensorInfo& info) {
  const uint64_t dims_at = cursor.offset();
  auto n_dims = cursor.Read<uint32_t>("n_dims");
  if (!n_dims.ok()) return n_dims.status();
  if (*n_dims == 0 || *n_dims > kMaxDims) {
    return DataLoss(fmt::format("n_dims {} at offset {}: must be 1 to {}", *n_dims, dims_at, kMaxDims));
  }
  info.dims.resize(*n_dims);
  for (uint32_t d = 0; d < *n_dims; ++d) {
    auto ne = cursor.Read<uint64_t>("a dimension");
    if (!ne.ok()) return ne.status();
    info.dims[d] = *ne;
  }
  const uint64_t type_at = cursor.offset();
  auto raw_type = cursor.Read<uint32_t>("the tensor type");
  if (!raw_type.ok()) return raw_type.status();
  auto traits = LookupGgmlType(*raw_type);
  if (!traits.ok()) return Annotate(fmt::format("type at offset {}", type_at), traits.status());
  info.type = (*traits)->type;
  const uint64_t offset_at = cursor.offset();
  auto offset = cursor.Read<uint64_t>("the data offset");
  if (!offset.ok()) return offset.status();
  info.offset = *offset;

  auto bytes = GgmlTensorBytes(info.type, info.dims);
  if (!bytes.ok()) {
    return DataLoss(fmt::format("{} with dimensions [{}] (at offset {}): {}", (*traits)->name,
                                fmt::join(info.dims, ", "), dims_at + 4, bytes.status().message()));
  }
  info.size_bytes = *bytes;
  info.n_elements = std::accumulate(info.dims.begin(), info.dims.end(), uint64_t{1}, std::multiplies<>());
  if (info.offset % alignment != 0) {
    return DataLoss(fmt::format("data offset {} at offset {} is not a multiple of the alignment {}", info.offset,
                                offset_at, alignment));
  }
  return Status::Ok();
}

}  // namespace

Result<ParsedTensors> ReadTensorInfos(ByteCursor& cursor, uint64_t count, uint32_t alignment) {
  ParsedTensors out;
  out.infos.reserve(count);  // the caller bounded count by the file size
  for (uint64_t i = 0; i < count; ++i) {
    GgufTensorInfo info{};
    info.info_offset = cursor.offset();
    auto name = cursor.ReadString("the tensor name");
    if (!name.ok()) {
      return Annotate(fmt::format("tensor {} of {} (info at offset {})", i, count, info.info_offset), name.status());
    }
    info.name = std::string(*name);
    Status fields = ReadTensorFields(cursor, alignment, info);
    if (!fields.ok()) return Annotate(TensorWhere(info), fields);
    auto [it, inserted] = out.index.try_emplace(info.name, out.infos.size());
    if (!inserted) {
      return DataLoss(fmt::format("{}: duplicate tensor name, first described at offset {}", TensorWhere(info),
                                  out.infos[it->second].info_offset));
    }
    out.infos.push_back(std::move(info));
  }
  return out;
}

Status PlaceTensors(std::span<const std::byte> file, uint64_t data_offset, std::vector<GgufTensorInfo>& infos) {
  if (infos.empty()) return Status::Ok();
  if (data_offset > file.size()) {
    return DataLoss(fmt::format("the data section would start at offset {}, past the end of the file ({} bytes)",
                                data_offset, file.size()));
  }
  const uint64_t data_size = file.size() - data_offset;
  for (GgufTensorInfo& t : infos) {
    // Compared as "fits in what is left" so that no sum can wrap around.
    if (t.offset > data_size || t.size_bytes > data_size - t.offset) {
      return DataLoss(fmt::format(
          "{}: data at offset {} of the data section, {} bytes long, runs past the end of the file: the data "
          "section holds {} bytes (offset {} to {})",
          TensorWhere(t), t.offset, t.size_bytes, data_size, data_offset, file.size()));
    }
    t.file_offset = data_offset + t.offset;
    t.data = file.subspan(t.file_offset, t.size_bytes);
  }
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(infos.size());
  for (const GgufTensorInfo& t : infos) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& prev = *by_offset[i - 1];
    const GgufTensorInfo& next = *by_offset[i];
    if (prev.offset + prev.size_bytes > next.offset) {
      return DataLoss(fmt::format("{}: data [{}, {}) of the data section overlaps {} at [{}, {})", TensorWhere(next),
                                  next.offset, next.offset + next.size_bytes, TensorWhere(prev), prev.offset,
                                  prev.offset + prev.size_bytes));
    }
  }
  return Status::Ok();
}

}  // namespace kvstack::gguf_internal

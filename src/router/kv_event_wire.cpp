// msgpack encoding and decoding of vLLM-schema KV event batches (see
// kv_event_wire.h for the layout). Decoding walks msgpack objects by hand so
// that every wrong type is named, and another engine's payloads (int hashes,
// extra trailing fields) decode too.
#include "kvstack/kv_event_wire.h"

#include <msgpack.hpp>

#include <fmt/format.h>

namespace kvstack {

std::string_view MediumName(StorageTier tier) {
  switch (tier) {
    case StorageTier::kDevice: return "GPU";
    case StorageTier::kHost: return "CPU";
    case StorageTier::kDisk: return "DISK";
    case StorageTier::kRemote: return "REDIS";
  }
  return "GPU";
}

StorageTier MediumTier(std::string_view medium) {
  if (medium == "CPU") return StorageTier::kHost;
  if (medium == "DISK") return StorageTier::kDisk;
  if (medium == "REDIS") return StorageTier::kRemote;
  return StorageTier::kDevice;
}

std::string HashBytes(const BlockHash& hash) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[static_cast<size_t>(i)] = static_cast<char>(hash.hi >> (56 - 8 * i));
    out[static_cast<size_t>(8 + i)] = static_cast<char>(hash.lo >> (56 - 8 * i));
  }
  return out;
}

std::optional<BlockHash> HashFromBytes(std::string_view bytes) {
  if (bytes.size() != 16) return std::nullopt;
  BlockHash h;
  for (int i = 0; i < 8; ++i) {
    h.hi = (h.hi << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
    h.lo = (h.lo << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(8 + i)]);
  }
  return h;
}

std::string SeqFrame(int64_t seq) {
  std::string out(8, '\0');
  const auto u = static_cast<uint64_t>(seq);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(u >> (56 - 8 * i));
  return out;
}

std::optional<int64_t> SeqFromFrame(std::string_view frame) {
  if (frame.size() != 8) return std::nullopt;
  uint64_t u = 0;
  for (char c : frame) u = (u << 8) | static_cast<unsigned char>(c);
  return static_cast<int64_t>(u);
}

namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackBin(Packer& pk, std::string_view bytes) {
  pk.pack_bin(static_cast<uint32_t>(bytes.size()));
  pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
}

void PackStr(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void PackEvent(Packer& pk, const WireEvent& e) {
  switch (e.kind) {
    case KvEventKind::kBlockStored: {
      pk.pack_array(e.priority ? 8 : 7);
      PackStr(pk, "BlockStored");
      pk.pack_array(static_cast<uint32_t>(e.block_hashes.size()));
      for (const std::string& h : e.block_hashes) PackBin(pk, h);
      if (e.parent) PackBin(pk, *e.parent); else pk.pack_nil();
      pk.pack_array(static_cast<uint32_t>(e.token_ids.size()));
      for (Token t : e.token_ids) pk.pack(static_cast<int64_t>(t));
      pk.pack(static_cast<int64_t>(e.block_size));
      if (e.lora_id) pk.pack(*e.lora_id); else pk.pack_nil();
      if (e.medium) PackStr(pk, *e.medium); else pk.pack_nil();
      if (e.priority) pk.pack(static_cast<int64_t>(*e.priority));
      return;
    }
    case KvEventKind::kBlockRemoved:
      pk.pack_array(3);
      PackStr(pk, "BlockRemoved");
      pk.pack_array(static_cast<uint32_t>(e.block_hashes.size()));
      for (const std::string& h : e.block_hashes) PackBin(pk, h);
      if (e.medium) PackStr(pk, *e.medium); else pk.pack_nil();
      return;
    case KvEventKind::kAllCleared:
      pk.pack_array(e.medium ? 2 : 1);
      PackStr(pk, "AllBlocksCleared");
      if (e.medium) PackStr(pk, *e.medium);
      return;
  }
}

}  // namespace

std::string EncodeWireBatch(const WireBatch& batch) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  pk.pack_array(batch.data_parallel_rank ? 3 : 2);
  pk.pack_double(batch.ts);
  pk.pack_array(static_cast<uint32_t>(batch.events.size()));
  for (const WireEvent& e : batch.events) PackEvent(pk, e);
  if (batch.data_parallel_rank) pk.pack(*batch.data_parallel_rank);
  return std::string(buf.data(), buf.size());
}

std::string EncodeKvEventBatch(const KvEventBatch& batch, int32_t block_size, double ts) {
  WireBatch wire{.ts = ts, .events = {}, .data_parallel_rank = 0};
  wire.events.reserve(batch.events.size());
  for (const KvEvent& e : batch.events) {
    WireEvent w;
    w.kind = e.kind;
    w.medium = std::string(MediumName(e.tier));
    switch (e.kind) {
      case KvEventKind::kBlockStored: {
        w.block_hashes.push_back(HashBytes(e.hash));
        if (!e.parent.IsZero()) w.parent = HashBytes(e.parent);
        const auto tokens = batch.TokensOf(e);
        w.token_ids.assign(tokens.begin(), tokens.end());
        w.block_size = block_size;
        w.priority = e.priority;
        break;
      }
      case KvEventKind::kBlockRemoved:
        w.block_hashes.push_back(HashBytes(e.hash));
        break;
      case KvEventKind::kAllCleared:
        // The device pool's reset is vLLM's plain AllBlocksCleared.
        if (e.tier == StorageTier::kDevice) w.medium.reset();
        break;
    }
    wire.events.push_back(std::move(w));
  }
  return EncodeWireBatch(wire);
}

namespace {

using msgpack::type::object_type;

Status Bad(std::string what) { return DataLoss(fmt::format("KV event batch: {}", what)); }

// An ExternalBlockHash: bytes, or an int (older vLLM), as 8 big-endian bytes.
Result<std::string> HashOf(const msgpack::object& o, std::string_view where) {
  if (o.type == object_type::BIN) return std::string(o.via.bin.ptr, o.via.bin.size);
  if (o.type == object_type::STR) return std::string(o.via.str.ptr, o.via.str.size);
  if (o.type == object_type::POSITIVE_INTEGER) return SeqFrame(static_cast<int64_t>(o.via.u64));
  if (o.type == object_type::NEGATIVE_INTEGER) return SeqFrame(o.via.i64);
  return Bad(fmt::format("{}: a block hash must be bytes or an int", where));
}

Result<std::vector<std::string>> Hashes(const msgpack::object& o, std::string_view where) {
  if (o.type != object_type::ARRAY) return Bad(fmt::format("{}.block_hashes must be an array", where));
  std::vector<std::string> out;
  out.reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    auto h = HashOf(o.via.array.ptr[i], where);
    if (!h.ok()) return h.status();
    out.push_back(std::move(h).value());
  }
  return out;
}

std::optional<int64_t> IntOf(const msgpack::object& o) {
  if (o.type == object_type::POSITIVE_INTEGER) return static_cast<int64_t>(o.via.u64);
  if (o.type == object_type::NEGATIVE_INTEGER) return o.via.i64;
  return std::nullopt;
}

Result<std::optional<std::string>> OptStr(const msgpack::object& o, std::string_view where) {
  if (o.type == object_type::NIL) return std::optional<std::string>();
  if (o.type == object_type::STR) return std::optional<std::string>(std::string(o.via.str.ptr, o.via.str.size));
  return Bad(fmt::format("{} must be a string or nil", where));
}

Result<WireEvent> DecodeEvent(const msgpack::object& o, size_t index) {
  const std::string where = fmt::format("event {}", index);
  if (o.type != object_type::ARRAY || o.via.array.size == 0 || o.via.array.ptr[0].type != object_type::STR) {
    return Bad(fmt::format("{} must be a tagged array [\"BlockStored\"|\"BlockRemoved\"|\"AllBlocksCleared\", ...]",
                           where));
  }
  const msgpack::object* f = o.via.array.ptr;
  const uint32_t n = o.via.array.size;
  const std::string_view tag(f[0].via.str.ptr, f[0].via.str.size);
  WireEvent e;
  if (tag == "BlockStored") {
    if (n < 7) return Bad(fmt::format("{} (BlockStored) has {} fields, wants at least 7", where, n));
    e.kind = KvEventKind::kBlockStored;
    auto hashes = Hashes(f[1], where);
    if (!hashes.ok()) return hashes.status();
    e.block_hashes = std::move(hashes).value();
    if (f[2].type != object_type::NIL) {
      auto p = HashOf(f[2], where + ".parent_block_hash");
      if (!p.ok()) return p.status();
      e.parent = std::move(p).value();
    }
    if (f[3].type != object_type::ARRAY) return Bad(where + ".token_ids must be an array");
    e.token_ids.reserve(f[3].via.array.size);
    for (uint32_t i = 0; i < f[3].via.array.size; ++i) {
      auto t = IntOf(f[3].via.array.ptr[i]);
      if (!t) return Bad(where + ".token_ids must hold ints");
      e.token_ids.push_back(static_cast<Token>(*t));
    }
    auto bs = IntOf(f[4]);
    if (!bs || *bs <= 0) return Bad(where + ".block_size must be a positive int");
    e.block_size = static_cast<int32_t>(*bs);
    if (f[5].type != object_type::NIL) {
      e.lora_id = IntOf(f[5]);
      if (!e.lora_id) return Bad(where + ".lora_id must be an int or nil");
    }
    auto medium = OptStr(f[6], where + ".medium");
    if (!medium.ok()) return medium.status();
    e.medium = std::move(medium).value();
    // kvstack's trailing priority; another engine's eighth field (a string,
    // say) is not ours and is ignored.
    if (n >= 8) {
      if (auto p = IntOf(f[7]); p && *p >= 0 && *p <= kMaxPriority) e.priority = static_cast<Priority>(*p);
    }
    return e;
  }
  if (tag == "BlockRemoved") {
    if (n < 2) return Bad(fmt::format("{} (BlockRemoved) has {} fields, wants at least 2", where, n));
    e.kind = KvEventKind::kBlockRemoved;
    auto hashes = Hashes(f[1], where);
    if (!hashes.ok()) return hashes.status();
    e.block_hashes = std::move(hashes).value();
    if (n >= 3) {
      auto medium = OptStr(f[2], where + ".medium");
      if (!medium.ok()) return medium.status();
      e.medium = std::move(medium).value();
    }
    return e;
  }
  if (tag == "AllBlocksCleared") {
    e.kind = KvEventKind::kAllCleared;
    if (n >= 2 && f[1].type == object_type::STR) e.medium = std::string(f[1].via.str.ptr, f[1].via.str.size);
    return e;
  }
  return Bad(fmt::format("{} has the unknown tag \"{}\"", where, tag));
}

}  // namespace

Result<WireBatch> DecodeWireBatch(std::string_view payload) {
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(payload.data(), payload.size());
  } catch (const std::exception& e) {
    return Bad(fmt::format("not msgpack ({})", e.what()));
  }
  const msgpack::object& root = handle.get();
  if (root.type != object_type::ARRAY || root.via.array.size < 2) {
    return Bad("the payload must be an array [ts, events, data_parallel_rank]");
  }
  const msgpack::object* f = root.via.array.ptr;
  WireBatch out;
  if (f[0].type == object_type::FLOAT64 || f[0].type == object_type::FLOAT32) {
    out.ts = f[0].via.f64;
  } else if (auto ts = IntOf(f[0])) {
    out.ts = static_cast<double>(*ts);
  } else {
    return Bad("ts must be a number");
  }
  if (f[1].type != object_type::ARRAY) return Bad("events must be an array");
  out.events.reserve(f[1].via.array.size);
  for (uint32_t i = 0; i < f[1].via.array.size; ++i) {
    auto e = DecodeEvent(f[1].via.array.ptr[i], i);
    if (!e.ok()) return e.status();
    out.events.push_back(std::move(e).value());
  }
  if (root.via.array.size >= 3) out.data_parallel_rank = IntOf(f[2]);
  return out;
}

}  // namespace kvstack

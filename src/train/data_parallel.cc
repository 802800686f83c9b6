#include "train/data_parallel.h"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "backend/cuda/cuda_library.h"
#include "model/safetensors.h"

namespace memmamba {

absl::StatusOr<NcclId> CreateNcclId() {
  MM_ASSIGN_OR_RETURN(const mmc_op_table* ops, CudaOps());
  NcclId id{};
  char why[512] = {0};
  const int st = ops->comm_unique_id(id.data(), why, sizeof why);
  if (st == MMC_OK) return id;
  return Errorf(st == MMC_ERR_UNSUPPORTED ? ErrorCode::kUnsupported : ErrorCode::kComm,
                "no NCCL id could be made: ", why);
}

std::string NcclIdToHex(const NcclId& id) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * id.size());
  for (uint8_t b : id) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

absl::StatusOr<NcclId> NcclIdFromHex(const std::string& hex) {
  NcclId id{};
  if (hex.size() != 2 * id.size()) {
    return Errorf(ErrorCode::kInvalidArgument, "an NCCL id is ", 2 * id.size(),
                  " hex digits, not ", hex.size());
  }
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < id.size(); ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Errorf(ErrorCode::kInvalidArgument, "an NCCL id holds hex digits only (position ",
                    2 * i, ")");
    }
    id[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return id;
}

absl::StatusOr<NcclId> ParseNcclIdText(const std::string& text) {
  size_t begin = 0;
  while (begin < text.size() && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  size_t end = begin;
  while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
  if (begin == end) return Error(ErrorCode::kInvalidArgument, "no NCCL id in the text");
  return NcclIdFromHex(text.substr(begin, end - begin));
}

absl::Status WriteNcclIdFile(const std::string& path, const NcclId& id) {
  return WriteFileAtomically(path, NcclIdToHex(id) + "\n");
}

absl::StatusOr<NcclId> ReadNcclIdFile(const std::string& path, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      // An id file is 257 bytes; more is not an id file.
      std::string text(1024, '\0');
      in.read(&text[0], static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<size_t>(in.gcount()));
      if (text.size() == 1024) {
        return Errorf(ErrorCode::kInvalidArgument, path, ": not an NCCL id file (too long)");
      }
      return ParseNcclIdText(text);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Errorf(ErrorCode::kIo, path, ": no NCCL id file after ", timeout_ms, " ms (",
                    std::strerror(errno), ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace memmamba

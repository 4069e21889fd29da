#include "persistence/swap_format.hpp"

#include "persistence/swap_hash.hpp"

#include <cstddef>

namespace nvhv::persistence::swapfmt {

uint64_t header_checksum(const Header& h) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&h);
  const size_t begin = offsetof(Header, format_version);
  return XXH3_64bits(bytes + begin, offsetof(Header, checksum) - begin);
}

uint64_t trailer_checksum(const Trailer& t) { return XXH3_64bits(&t, offsetof(Trailer, checksum)); }

}  // namespace nvhv::persistence::swapfmt

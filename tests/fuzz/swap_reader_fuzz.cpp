// Feeds arbitrary bytes to the swap-file reader as a file: opening, full verification and
// decoding the state must either succeed or fail with the engine's own errors, never crash,
// hang or read out of bounds.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "persistence/codec.hpp"
#include "persistence/machine_state.hpp"
#include "persistence/swap.hpp"
#include "vmm/base/error.hpp"
#include "vmm/base/log.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nvhv::persistence;
  static const bool quiet = (nvhv::log::set_level(nvhv::log::Level::error), true);
  (void)quiet;
  int fd = ::memfd_create("swap-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (size && ::write(fd, data, size) != static_cast<ssize_t>(size)) {
    ::close(fd);
    return 0;
  }
  try {
    SwapFile f = SwapFile::from_fd(nvhv::UniqueFd(fd), "fuzz");
    SwapTuning t;
    t.threads = 1;
    f.verify(true, t);
    try {
      decode_machine_state(f.state(), "swap state");
    } catch (const DecodeError&) {
    }
  } catch (const SwapError&) {
  } catch (const nvhv::SystemError&) {
  }
  return 0;
}

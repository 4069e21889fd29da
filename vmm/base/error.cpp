#include "vmm/base/error.hpp"

#include <sys/ioctl.h>

#include "vmm/base/mapping.hpp"

namespace nvhv {

long checked_ioctl(int fd, unsigned long request, const char* name, unsigned long arg) {
  for (;;) {
    long rc = ::ioctl(fd, request, arg);
    if (rc >= 0) return rc;
    if (errno == EINTR) continue;
    throw SystemError(errno, name);
  }
}

Mapping Mapping::anonymous(size_t size, int extra_flags) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
  if (p == MAP_FAILED) throw_errno("mmap anonymous");
  return Mapping(p, size);
}

}  // namespace nvhv

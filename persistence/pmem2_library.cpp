#include "persistence/pmem2_library.hpp"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <string>

namespace nvhv::persistence {
namespace {

// The ABI whose header this file is compiled against (Debian: libpmem2-1).
constexpr const char* kLibrary = "libpmem2.so.1";

std::string dl_reason() {
  const char* e = ::dlerror();
  return e ? e : "unknown reason";
}

template <typename Fn>
void resolve(void* lib, Fn& fn, const char* name) {
  void* sym = ::dlsym(lib, name);
  if (!sym) throw std::runtime_error(std::string(kLibrary) + " has no " + name + ": " + dl_reason());
  fn = reinterpret_cast<Fn>(sym);
}

Pmem2 load() {
  // Never closed: the persist functions it hands out live as long as the mappings using them.
  void* lib = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    throw std::runtime_error(std::string("DAX backings need libpmem2 (Debian package libpmem2-1): ") + dl_reason());
  Pmem2 p{};
#define NVHV_RESOLVE(field) resolve(lib, p.field, "pmem2_" #field)
  NVHV_RESOLVE(errormsg);
  NVHV_RESOLVE(source_from_fd);
  NVHV_RESOLVE(source_delete);
  NVHV_RESOLVE(source_size);
  NVHV_RESOLVE(source_alignment);
  NVHV_RESOLVE(config_new);
  NVHV_RESOLVE(config_delete);
  NVHV_RESOLVE(config_set_required_store_granularity);
  NVHV_RESOLVE(config_set_length);
  NVHV_RESOLVE(config_set_sharing);
  NVHV_RESOLVE(map_new);
  NVHV_RESOLVE(map_delete);
  NVHV_RESOLVE(map_get_address);
  NVHV_RESOLVE(map_get_size);
  NVHV_RESOLVE(map_get_store_granularity);
  NVHV_RESOLVE(get_persist_fn);
  NVHV_RESOLVE(get_flush_fn);
  NVHV_RESOLVE(get_drain_fn);
#undef NVHV_RESOLVE
  return p;
}

}  // namespace

const Pmem2& Pmem2::get() {
  // A failed load is retried by the next caller (call_once rethrows and stays unset).
  static std::once_flag once;
  static Pmem2 library;
  std::call_once(once, [] { library = load(); });
  return library;
}

}  // namespace nvhv::persistence

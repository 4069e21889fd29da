#pragma once
// libpmem2, loaded on first use. Only DAX backings (device-DAX, MAP_SYNC files) need it, and
// linking it would make every nvhv start load libndctl, libdaxctl, libkmod and libcrypto with
// it: measured on this project's nested host, about 3,700 symbol bindings and 3.4 ms before
// main(), all of it on the resume path of VMs whose RAM is a plain file.
#include <libpmem2.h>

namespace nvhv::persistence {

struct Pmem2 {
  decltype(&::pmem2_errormsg) errormsg;
  decltype(&::pmem2_source_from_fd) source_from_fd;
  decltype(&::pmem2_source_delete) source_delete;
  decltype(&::pmem2_source_size) source_size;
  decltype(&::pmem2_source_alignment) source_alignment;
  decltype(&::pmem2_config_new) config_new;
  decltype(&::pmem2_config_delete) config_delete;
  decltype(&::pmem2_config_set_required_store_granularity) config_set_required_store_granularity;
  decltype(&::pmem2_config_set_length) config_set_length;
  decltype(&::pmem2_config_set_sharing) config_set_sharing;
  decltype(&::pmem2_map_new) map_new;
  decltype(&::pmem2_map_delete) map_delete;
  decltype(&::pmem2_map_get_address) map_get_address;
  decltype(&::pmem2_map_get_size) map_get_size;
  decltype(&::pmem2_map_get_store_granularity) map_get_store_granularity;
  decltype(&::pmem2_get_persist_fn) get_persist_fn;
  decltype(&::pmem2_get_flush_fn) get_flush_fn;
  decltype(&::pmem2_get_drain_fn) get_drain_fn;

  // Loads the library once per process; throws std::runtime_error naming the library and
  // dlerror()'s reason when it or one of its functions is missing.
  static const Pmem2& get();
};

}  // namespace nvhv::persistence

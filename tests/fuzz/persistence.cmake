# libFuzzer targets over persistence/: clang++ compiles these sources directly (see NvhvFuzz.cmake).
set(_nvhv_persistence_fuzz_sources
  persistence/backing.cpp persistence/pmem2_library.cpp persistence/codec.cpp persistence/machine_state.cpp persistence/snapshottable.cpp
  persistence/identity.cpp persistence/image.cpp vmm/base/error.cpp vmm/base/log.cpp)
nvhv_add_fuzzer(NAME persistence_decoder
  SOURCES tests/fuzz/persistence_decoder_fuzz.cpp ${_nvhv_persistence_fuzz_sources}
  LIBS -lxxhash -lfmt
  SECONDS 20)
nvhv_add_fuzzer(NAME persistence_image
  SOURCES tests/fuzz/persistence_image_fuzz.cpp ${_nvhv_persistence_fuzz_sources}
  LIBS -lxxhash -lfmt
  SECONDS 20)

# libFuzzer target for the swap-file reader (see NvhvFuzz.cmake).
nvhv_add_fuzzer(NAME swap_reader
  SOURCES tests/fuzz/swap_reader_fuzz.cpp
          persistence/swap_format.cpp persistence/swap_io.cpp persistence/swap_pool.cpp persistence/swap_reader.cpp
          persistence/swap_chunks.cpp persistence/swap_sparse.cpp persistence/swap_holes.cpp
          persistence/swap_writer.cpp persistence/backing.cpp persistence/pmem2_library.cpp persistence/codec.cpp persistence/machine_state.cpp
          persistence/snapshottable.cpp persistence/identity.cpp vmm/base/error.cpp vmm/base/log.cpp
  LIBS -lxxhash -lzstd -lfmt
  SECONDS 20)

nvhv_add_fuzzer(NAME jsonrpc
  SOURCES tests/fuzz/jsonrpc_fuzz.cpp vmm/api/jsonrpc.cpp vmm/api/reply.cpp vmm/api/params.cpp
          vmm/api/rpc_error.cpp vmm/base/log.cpp
  LIBS -lfmt
  SECONDS 20)

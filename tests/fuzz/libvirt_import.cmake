# libFuzzer target for nvhv import-libvirt (see NvhvFuzz.cmake). Its seeds are the domain XML
# fixtures of the unit tests, copied into the scratch corpus by a fixture test.
nvhv_add_fuzzer(NAME libvirt_import
  SOURCES tests/fuzz/libvirt_import_fuzz.cpp vmm/libvirt_import.cpp vmm/libvirt_import_devices.cpp
          vmm/libvirt_import_guest.cpp vmm/libvirt_import_xml.cpp vmm/config.cpp
  LIBS -lpugixml -lfmt
  SECONDS 20)
if(TEST fuzz.libvirt_import)
  add_test(NAME fuzz.libvirt_import.seeds
    COMMAND sh -c "mkdir -p '${CMAKE_BINARY_DIR}/fuzz/libvirt_import.corpus' && cp '${PROJECT_SOURCE_DIR}'/tests/data/libvirt/*.xml* '${CMAKE_BINARY_DIR}/fuzz/libvirt_import.corpus/'")
  set_tests_properties(fuzz.libvirt_import.seeds PROPERTIES LABELS "fuzz;import" FIXTURES_SETUP libvirt_import_seeds)
  set_tests_properties(fuzz.libvirt_import PROPERTIES FIXTURES_REQUIRED libvirt_import_seeds)
  set_property(TEST fuzz.libvirt_import APPEND PROPERTY LABELS import)
endif()

# Tier-2: the nested test host (tools/nested-host/run, docs/tier2.md) that Linux-guest tests of
# nvhv run in. Each test boots L1 under TCG, which takes both cores of this machine: RUN_SERIAL.
# Skipped (exit 77) where the Debian kernel or busybox-static is missing.
foreach(_check smoke nvdimm power_cut hung devdax kvm_trace)
  add_test(NAME tier2.nested_host_${_check}
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/nested_host_test.sh ${_check} ${PROJECT_SOURCE_DIR}
            ${CMAKE_BINARY_DIR}/tests/tier2)
  set_tests_properties(tier2.nested_host_${_check} PROPERTIES ENVIRONMENT NVHV_BUILD_DIR=${CMAKE_BINARY_DIR}
    LABELS tier2 RUN_SERIAL TRUE TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# Debian's kernel under nvhv inside L1: ELF and bzImage boots, virtio-blk, guest pmem.
add_test(NAME tier2.linux_guest
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/linux_guest_test.sh ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}
          ${CMAKE_BINARY_DIR}/tests/tier2/linux_guest)
set_tests_properties(tier2.linux_guest PROPERTIES
  LABELS tier2 RUN_SERIAL TRUE TIMEOUT 900 SKIP_RETURN_CODE 77)

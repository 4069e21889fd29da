# Tier-2: nvhv-agent's whole-process persistence with real CRIU, in L1 (CRIU cannot run on this
# machine's own kernel; docs/agent.md). Skipped (77) without criu, the Debian kernel or busybox.
add_executable(agent_counter ${CMAKE_CURRENT_LIST_DIR}/agent_counter.c)
target_compile_options(agent_counter PRIVATE -Wall -Wextra)
set_target_properties(agent_counter PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/tier2)
add_test(NAME tier2.agent_wpp
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/agent_wpp_test.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:nvhv-agent>
          $<TARGET_FILE:agent_counter> ${CMAKE_BINARY_DIR}/tests/tier2/agent_wpp)
set_tests_properties(tier2.agent_wpp PROPERTIES
  LABELS tier2 RUN_SERIAL TRUE TIMEOUT 300 SKIP_RETURN_CODE 77)

# Tier-2: the same in the Linux test guest under nvhv, through nvhv's API proxy, across a kernel
# crash and a cold boot in the same nvhv process (docs/tier2.md, tier2.agent_guest_wpp).
add_test(NAME tier2.agent_guest_wpp
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/agent_guest_wpp_test.sh ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}
          ${CMAKE_BINARY_DIR}/tests/tier2/agent_guest_wpp)
set_tests_properties(tier2.agent_guest_wpp PROPERTIES
  LABELS tier2 RUN_SERIAL TRUE TIMEOUT 900 SKIP_RETURN_CODE 77)

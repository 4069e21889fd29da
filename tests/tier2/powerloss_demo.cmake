# tools/powerloss-demo (docs/powerloss-demo.md): a Linux guest with RAM and disk on fsdax in L1
# survives real power cuts (announced: RESUMED, three rounds) and an unannounced cut (COLD-BOOT,
# disk consistent). The hold-up is 1000 ms of L1's clock, not the demo's default 16: under TCG,
# L1 runs the checkpoint path about 100x slower than this machine does natively (52 ms inside
# nvhv, ~100 ms from the notice, against 0.5 ms p99 in tests/bench), see the doc.
add_test(NAME tier2.powerloss_demo_rounds
  COMMAND ${PROJECT_SOURCE_DIR}/tools/powerloss-demo --build-dir ${CMAKE_BINARY_DIR} --rounds 3
          --holdup-ms 1000 --work-dir ${CMAKE_BINARY_DIR}/tests/tier2/powerloss_rounds)
add_test(NAME tier2.powerloss_demo_unannounced
  COMMAND ${PROJECT_SOURCE_DIR}/tools/powerloss-demo --build-dir ${CMAKE_BINARY_DIR} --unannounced
          --work-dir ${CMAKE_BINARY_DIR}/tests/tier2/powerloss_unannounced)
set_tests_properties(tier2.powerloss_demo_rounds tier2.powerloss_demo_unannounced PROPERTIES
  LABELS tier2 RUN_SERIAL TRUE TIMEOUT 1200 SKIP_RETURN_CODE 77)
set_tests_properties(tier2.powerloss_demo_rounds PROPERTIES PASS_REGULAR_EXPRESSION "\nRESUMED: ")
set_tests_properties(tier2.powerloss_demo_unannounced PROPERTIES PASS_REGULAR_EXPRESSION "\nCOLD-BOOT: ")

# Tests of persistence/: named "persistence.<Suite>.<Test>" so `ctest -R persist` selects them.
add_executable(persistence_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/persistence_codec_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/persistence_state_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/persistence_backing_test.cpp
  ${CMAKE_CURRENT_LIST_DIR}/persistence_image_test.cpp)
target_compile_options(persistence_unit_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(persistence_unit_tests PRIVATE nvhv_persistence nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(persistence_unit_tests PREFIX "persistence." LABELS unit persistence)

# Separate binary: it replaces the global operator new to count allocations.
add_executable(persistence_alloc_tests ${CMAKE_CURRENT_LIST_DIR}/persistence_alloc_test.cpp)
target_compile_options(persistence_alloc_tests PRIVATE ${NVHV_WARNINGS})
target_link_libraries(persistence_alloc_tests PRIVATE nvhv_persistence nvhv_test_support GTest::gtest_main)
nvhv_discover_tests(persistence_alloc_tests PREFIX "persistence." LABELS unit persistence)

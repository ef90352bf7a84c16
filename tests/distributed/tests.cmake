# pw_mpi_check (tests/distributed/mpi_check.cpp): the distributed checks that run on real ranks, started with
# mpirun by tests/train/test_distributed.cpp from PW_BINARY_DIR/tests (skipped in a build without MPI or
# without mpirun).
add_executable(pw_mpi_check ${CMAKE_CURRENT_LIST_DIR}/mpi_check.cpp)
target_link_libraries(pw_mpi_check PRIVATE pw_options pw_train)
add_dependencies(pw_tests_train pw_mpi_check)

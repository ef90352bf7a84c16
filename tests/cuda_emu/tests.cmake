# pw_tests_cuda_emu: the CUDA kernel bodies run on the host, against the CPU bodies (no nvcc, no GPU;
# built in every build, CUDA or not). convert.cmake turns each kernels/cuda/<family>.cu into C++ at
# build time (re-run whenever the .cu changes), in namespace pw::kernels::cuda_emu, and the same for
# kernels/cuda/reduce.cuh; emu_context.h stands in for kernels/cuda/context.h. Each launch runs the
# threads of its grid on the host, one after another or as cooperative fibers where they synchronise
# (emu_block.h). See emu_context.h for what this checks and what it cannot.
set(_emu_dir ${CMAKE_CURRENT_BINARY_DIR}/cuda_emu)
set(_emu_script ${CMAKE_CURRENT_LIST_DIR}/convert.cmake)
set(_emu_generated "")
foreach(family pool norm loss elementwise optim gather scatter smooth)
  add_custom_command(
    OUTPUT ${_emu_dir}/emu_${family}.cpp
    COMMAND ${CMAKE_COMMAND} -DMODE=cu -DINPUT=${CMAKE_SOURCE_DIR}/kernels/cuda/${family}.cu
            -DOUTPUT=${_emu_dir}/emu_${family}.cpp -P ${_emu_script}
    DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/${family}.cu ${_emu_script}
    COMMENT "CUDA emulation: kernels/cuda/${family}.cu -> host C++" VERBATIM)
  add_custom_command(
    OUTPUT ${_emu_dir}/emu_${family}.h
    COMMAND ${CMAKE_COMMAND} -DMODE=header -DINPUT=${CMAKE_SOURCE_DIR}/kernels/${family}.h
            -DOUTPUT=${_emu_dir}/emu_${family}.h -P ${_emu_script}
    DEPENDS ${CMAKE_SOURCE_DIR}/kernels/${family}.h ${_emu_script} VERBATIM)
  list(APPEND _emu_generated ${_emu_dir}/emu_${family}.cpp ${_emu_dir}/emu_${family}.h)
endforeach()
add_custom_command(
  OUTPUT ${_emu_dir}/emu_reduce.h
  COMMAND ${CMAKE_COMMAND} -DMODE=cu -DINPUT=${CMAKE_SOURCE_DIR}/kernels/cuda/reduce.cuh
          -DOUTPUT=${_emu_dir}/emu_reduce.h -P ${_emu_script}
  DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/reduce.cuh ${_emu_script} VERBATIM)
add_custom_command(
  OUTPUT ${_emu_dir}/emu_loop.h
  COMMAND ${CMAKE_COMMAND} -DMODE=loop -DINPUT=${CMAKE_SOURCE_DIR}/kernels/cuda/context.h
          -DOUTPUT=${_emu_dir}/emu_loop.h -P ${_emu_script}
  DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/context.h ${_emu_script} VERBATIM)
list(APPEND _emu_generated ${_emu_dir}/emu_reduce.h ${_emu_dir}/emu_loop.h)

file(GLOB _emu_tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
add_executable(pw_tests_cuda_emu ${_emu_tests} ${_emu_generated})
target_include_directories(pw_tests_cuda_emu PRIVATE ${CMAKE_CURRENT_LIST_DIR} ${_emu_dir})
target_link_libraries(pw_tests_cuda_emu PRIVATE pw_test_main pw_kernels)
add_test(NAME cuda_emu COMMAND pw_tests_cuda_emu WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})

# Turns CUDA sources into host C++ for the emulation test (tests/cuda_emu/tests.cmake runs it with
# cmake -P at build time, so the output follows every edit of its input). No sed, no nvcc.
#
#   cmake -DMODE=cu     -DINPUT=kernels/cuda/gather.cu -DOUTPUT=emu_gather.cpp -P convert.cmake
#   (also for kernels/cuda/reduce.cuh -> emu_reduce.h)
#     * `name<<<grid, block, shmem, stream>>>(args);` -> `::pw_emu::launch(threads, [&] { name(args); }, grid, block,
#       shmem, stream);`: the configuration is compiled and checked, then the threads of the grid run one after
#       another on the host (threads = all) or, where the file synchronises or shuffles (__syncthreads,
#       __shfl_down_sync, __shared__), as cooperative fibers of each block (threads = coop, emu_block.h);
#     * `extern __shared__ T name[];` -> `T* name = ::pw_emu::dynamic_shared<T>();` (the launch's shmem bytes);
#       `__shared__` -> `static` (blocks run one after another, so one array per kernel is the block's);
#       `#pragma unroll` lines are dropped (blank lines keep the line numbers);
#     * namespace pw::kernels::cuda -> pw::kernels::cuda_emu (so the emulated bodies never clash with the real
#       CUDA objects of pw_kernels in a CUDA build);
#     * #include "kernels/cuda/context.h" -> the host stand-in emu_context.h, "kernels/cuda/reduce.cuh" -> the
#       converted emu_reduce.h.
#   cmake -DMODE=header -DINPUT=kernels/gather.h -DOUTPUT=emu_gather.h -P convert.cmake
#     the header's `#ifdef PW_HAVE_CUDA` declarations, in namespace pw::kernels::cuda_emu.
#   cmake -DMODE=loop   -DINPUT=kernels/cuda/context.h -DOUTPUT=emu_loop.h -P convert.cmake
#     the real launch helper macros: PW_CUDA_LOOP (grid-stride loop) and PW_LAUNCH, whose launch is converted
#     as above with the threads mode of the .cu file that expands it (PW_EMU_THREADS, which mode cu defines at
#     the top of each converted .cu).
cmake_minimum_required(VERSION 3.18)
foreach(v MODE INPUT OUTPUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "convert.cmake: ${v} is not set")
  endif()
endforeach()
file(READ "${INPUT}" text)
get_filename_component(name "${INPUT}" NAME)
set(head "// GENERATED from ${INPUT} by tests/cuda_emu/convert.cmake (MODE=${MODE}); do not edit.\n")

if(MODE STREQUAL "cu")
  string(FIND "${text}" "namespace pw::kernels::cuda {" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "convert.cmake: ${INPUT} has no 'namespace pw::kernels::cuda {'")
  endif()
  string(REPLACE "namespace pw::kernels::cuda {" "namespace pw::kernels::cuda_emu {" text "${text}")
  string(REPLACE "#include \"kernels/cuda/context.h\"" "#include \"emu_context.h\"" text "${text}")
  string(REPLACE "#include \"kernels/cuda/reduce.cuh\"" "#include \"emu_reduce.h\"" text "${text}")
  if(text MATCHES "#include \"kernels/cuda/")
    message(FATAL_ERROR "convert.cmake: ${INPUT} includes a kernels/cuda/ header with no host stand-in")
  endif()
  if(text MATCHES "cuda::")
    message(FATAL_ERROR "convert.cmake: ${INPUT} names cuda:: explicitly (not renamed for the emulation)")
  endif()
  # Kernel launches `name<<<config>>>(args);` (the name may carry template arguments without nested <>)
  # become `::pw_emu::launch(threads, [&] { name(args); }, config);`.
  if(text MATCHES "__syncthreads|__shfl_down_sync|__shared__")
    set(threads "::pw_emu::Threads::coop")
  else()
    set(threads "::pw_emu::Threads::all")
  endif()
  string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*(<[^<>;]*>)?)[ ]*<<<([^;]*)>>>[ ]*\\(([^;]*)\\);"
                       "::pw_emu::launch(${threads}, [&] { \\1(\\4); }, \\3);" text "${text}")
  if(text MATCHES "<<<|>>>")
    message(FATAL_ERROR "convert.cmake: ${INPUT} has a kernel launch this script cannot convert")
  endif()
  string(REGEX REPLACE "extern __shared__ ([A-Za-z_0-9]+) ([A-Za-z_0-9]+)\\[\\];"
                       "\\1* \\2 = ::pw_emu::dynamic_shared<\\1>();" text "${text}")
  string(REPLACE "__shared__ " "static " text "${text}")
  string(REGEX REPLACE "#pragma unroll[^\n]*" "" text "${text}")
  set(unsupported "__shfl_sync|__shfl_up_sync|__shfl_xor_sync|__ballot_sync|__any_sync|__all_sync|__syncwarp")
  if(text MATCHES "${unsupported}|atomicCAS|__threadfence|cooperative_groups")
    message(FATAL_ERROR "convert.cmake: ${INPUT} uses a CUDA intrinsic that emu_block.h does not emulate")
  endif()
  set(threads_define "")
  if(name MATCHES "\\.cu$")  # a translation unit: the threads mode of the PW_LAUNCH it expands (emu_loop.h)
    set(threads_define "#define PW_EMU_THREADS ${threads}\n")
  endif()
  file(WRITE "${OUTPUT}" "${head}${threads_define}#line 1 \"${INPUT}\"\n${text}")

elseif(MODE STREQUAL "header")
  string(REGEX MATCH "#ifdef PW_HAVE_CUDA\n(.*)" tail "${text}")
  if(NOT tail)
    message(FATAL_ERROR "convert.cmake: ${INPUT} has no '#ifdef PW_HAVE_CUDA' block")
  endif()
  string(FIND "${tail}" "#endif" end)
  string(SUBSTRING "${tail}" 0 ${end} block)
  string(REPLACE "#ifdef PW_HAVE_CUDA\n" "" block "${block}")
  string(REPLACE "namespace pw::kernels::cuda {" "namespace pw::kernels::cuda_emu {" block "${block}")
  string(REPLACE "namespace cuda {" "namespace pw::kernels::cuda_emu {" block "${block}")
  if(NOT block MATCHES "namespace pw::kernels::cuda_emu {")
    message(FATAL_ERROR "convert.cmake: the PW_HAVE_CUDA block of ${INPUT} declares no namespace cuda")
  endif()
  file(WRITE "${OUTPUT}" "${head}#pragma once\n#include \"kernels/${name}\"\n\n${block}")

elseif(MODE STREQUAL "loop")
  string(REGEX MATCH "#define PW_CUDA_LOOP[^\n]*\\\\\n[^\n]*" loop "${text}")
  if(NOT loop)
    message(FATAL_ERROR "convert.cmake: no two-line '#define PW_CUDA_LOOP' in ${INPUT}")
  endif()
  string(REGEX MATCH "#define PW_LAUNCH\\([^\n]*\\\\\n([^\n]*\\\\\n)*[^\n]*" launch "${text}")
  if(NOT launch)
    message(FATAL_ERROR "convert.cmake: no multi-line '#define PW_LAUNCH' in ${INPUT}")
  endif()
  string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*)<<<([^;]*)>>>\\(([^;]*)\\);"
                       "::pw_emu::launch(PW_EMU_THREADS, [&] { \\1(\\3); }, \\2);" launch "${launch}")
  if(launch MATCHES "<<<|>>>")
    message(FATAL_ERROR "convert.cmake: the launch in PW_LAUNCH of ${INPUT} cannot be converted")
  endif()
  file(WRITE "${OUTPUT}" "${head}#pragma once\n${loop}\n\n${launch}\n")

else()
  message(FATAL_ERROR "convert.cmake: unknown MODE '${MODE}' (cu, header or loop)")
endif()

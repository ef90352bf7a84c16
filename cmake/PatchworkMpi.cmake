# PW_MPI=AUTO|ON|OFF: data-parallel training over MPI (train/distributed.cpp). AUTO enables it when an MPI
# (Debian: libopenmpi-dev) is found; ON fails here when none is; OFF (and AUTO without MPI) builds exactly
# the single-process program, with no MPI dependency.
set(PW_HAVE_MPI OFF)
if(NOT PW_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS C QUIET)
  if(MPI_C_FOUND)
    set(PW_HAVE_MPI ON)
    message(STATUS "Patchwork: MPI on (${MPI_C_LIBRARIES})")
  elseif(PW_MPI STREQUAL "ON")
    message(FATAL_ERROR "PW_MPI=ON but no MPI was found: install libopenmpi-dev (and openmpi-bin), "
                        "or configure with -DPW_MPI=OFF.")
  else()
    message(STATUS "Patchwork: MPI off (none found)")
  endif()
endif()
# With CUDA too, GPU ranks reduce their gradients with NCCL when the CUDA plugin has it (PW_HAVE_NCCL,
# cmake/PatchworkCuda.cmake; reached through the plugin's table, never linked here), else through host
# MPI buffers; train/distributed.cpp chooses at run time and the training says which.
if(PW_HAVE_MPI AND PW_HAVE_CUDA AND NOT PW_HAVE_NCCL)
  message(STATUS "Patchwork: CUDA gradients are reduced through host MPI buffers (no NCCL in the CUDA plugin)")
endif()

# pw_link_mpi(target): MPI for the one library that talks to it.
function(pw_link_mpi target)
  if(PW_HAVE_MPI)
    target_link_libraries(${target} PRIVATE MPI::MPI_C)
    # The C API only (mpi.h would pull in the deprecated C++ bindings, which MPI::MPI_C does not link).
    target_compile_definitions(${target} PRIVATE PW_HAVE_MPI=1 OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
  endif()
endfunction()

# The Python package's pytest suite (python/tests/), run on the module built in this tree. Skipped (exit 77,
# shown as skipped by ctest) when the package is not built or numpy/pytest are missing: never a silent pass.
if(TARGET pw_python)
  add_test(NAME python COMMAND ${PW_PYTHON_EXECUTABLE} ${CMAKE_SOURCE_DIR}/python/tests/run.py
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(python PROPERTIES SKIP_RETURN_CODE 77
                       ENVIRONMENT "PYTHONPATH=${PW_PYTHON_DIR};PATCHWORK_BIN=$<TARGET_FILE:patchwork>")
else()
  if(PW_PYTHON STREQUAL "OFF")
    set(_why "PW_PYTHON=OFF")
  else()
    set(_why "${PW_PYTHON_MISSING}")
  endif()
  add_test(NAME python COMMAND sh -c "echo 'python package not built: ${_why}'; exit 77")
  set_tests_properties(python PROPERTIES SKIP_RETURN_CODE 77)
endif()

# build.layering: the layering check passes on the tree, and fails, naming
# the file and the modules, when a module includes one it may not use (a
# copy of the tree with such includes added: git using the gate, contract
# using the store's private engine, the library including agentcore.hpp).
#
#   cmake -DROOT=<source dir> -DWORK=<scratch dir> -P layering_test.cmake
cmake_minimum_required(VERSION 3.21)
set(check "${ROOT}/cmake/check_layering.cmake")

execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${ROOT} -P ${check} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the tree itself breaks the layering:\n${err}")
endif()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(COPY "${ROOT}/include" "${ROOT}/src" DESTINATION "${WORK}")
function(prepend file line)
  file(READ "${WORK}/${file}" text)
  file(WRITE "${WORK}/${file}" "${line}\n${text}")
endfunction()
prepend(src/git/merge.cpp "#include <agentcore/gate/merge_gate.hpp>")
prepend(include/agentcore/contract/glob.hpp "#include \"store/engine.hpp\"")
prepend(src/board/task.cpp "#include <agentcore/agentcore.hpp>")
execute_process(COMMAND ${CMAKE_COMMAND} -DROOT=${WORK} -P ${check} RESULT_VARIABLE rc ERROR_VARIABLE err)
file(REMOVE_RECURSE "${WORK}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the check passed a tree whose git includes the gate")
endif()
foreach(expected "src/git/merge.cpp" "git may not use gate" "include/agentcore/contract/glob.hpp"
                 "contract may not use store" "src/board/task.cpp" "never includes agentcore.hpp")
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the check's message does not say '${expected}':\n${err}")
  endif()
endforeach()
string(FIND "${err}" "src/git/repository.cpp" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "the check blamed a file that did not change:\n${err}")
endif()
message(STATUS "layering: the tree passes; the three bad includes fail, each named")

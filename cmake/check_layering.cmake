# The modules' layering, checked on every build (cmake -P; see CMakeLists.txt):
# a module's headers (include/agentcore/MODULE) and sources (src/MODULE) may
# include the headers of the modules below it in this table and no others,
# whether as <agentcore/OTHER/...> or as the private "OTHER/..." of src/. A
# wrong include fails the build with the file, the line and what to do.
#
#   cmake -DROOT=<source dir> [-DSTAMP=<file to touch on success>] -P check_layering.cmake
#
# The table is DESIGN.md's "depends on" column. src/detail holds core's
# private helpers (completion, offload, spawn), open to every module.
cmake_minimum_required(VERSION 3.21)

if(NOT ROOT)
  message(FATAL_ERROR "check_layering: pass -DROOT=<agentcore's source directory>")
endif()

set(modules core process net store board contract git gate model agent roles runtime observe sim)
set(may_use_core "")
set(may_use_process core)
set(may_use_net core)
set(may_use_store core net)
set(may_use_board core store)
set(may_use_contract core)
set(may_use_git core process)
set(may_use_gate core process store board contract git)
set(may_use_model core process net)
set(may_use_agent core process contract git model)
set(may_use_roles core process store board contract git gate model agent)
set(may_use_runtime core process net store board contract git gate model agent roles observe)
# sim runs the real board, contract check and queue policy on a virtual clock.
set(may_use_sim core store board contract gate)
# observe's dashboard reads the board and acts on the gate through
# observe::dashboard_controls, which the runtime implements.
set(may_use_observe core net)

set(problems "")
foreach(m IN LISTS modules)
  file(GLOB_RECURSE files "${ROOT}/include/agentcore/${m}/*.hpp" "${ROOT}/src/${m}/*.hpp" "${ROOT}/src/${m}/*.cpp")
  foreach(f IN LISTS files)
    file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
    foreach(line IN LISTS lines)
      if(line MATCHES "[<\"]agentcore/agentcore\\.hpp[>\"]")
        string(APPEND problems "  ${f}: ${line}\n    the library never includes agentcore.hpp (it is for users); include what is used\n")
        continue()
      endif()
      set(dep "")
      if(line MATCHES "[<\"]agentcore/([a-z_]+)/")
        set(dep "${CMAKE_MATCH_1}")
      elseif(line MATCHES "\"([a-z_]+)/")
        set(dep "${CMAKE_MATCH_1}")  # src/'s private headers
      endif()
      if(dep STREQUAL "" OR dep STREQUAL m OR dep STREQUAL "detail")
        continue()
      endif()
      if(NOT dep IN_LIST modules)
        continue()  # not ours (<boost/...>, <sys/...>)
      endif()
      if(NOT dep IN_LIST may_use_${m})
        string(REPLACE ";" ", " allowed "${may_use_${m}}")
        if(allowed STREQUAL "")
          set(allowed "none")
        endif()
        string(APPEND problems "  ${f}: ${line}\n    ${m} may not use ${dep} (it may use: ${allowed}); move what both need down a layer, or go through an interface\n")
      endif()
    endforeach()
  endforeach()
endforeach()

if(NOT problems STREQUAL "")
  message(FATAL_ERROR "check_layering: includes across the modules' layering (DESIGN.md, cmake/check_layering.cmake):\n${problems}")
endif()
if(STAMP)
  file(TOUCH "${STAMP}")
endif()

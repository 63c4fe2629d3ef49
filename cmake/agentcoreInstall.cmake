include(CMakePackageConfigHelpers)

set(AGENTCORE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/agentcore CACHE STRING
    "Where agentcore's CMake package files are installed, relative to the prefix")

install(TARGETS agentcore EXPORT agentcoreTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/agentcore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET agentcore-cli)
  install(TARGETS agentcore-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT agentcoreTargets NAMESPACE agentcore:: DESTINATION ${AGENTCORE_CMAKE_DIR})
# A build-tree export too, as fmt has: a consumer can point agentcore_DIR at the build.
export(EXPORT agentcoreTargets NAMESPACE agentcore::
       FILE ${PROJECT_BINARY_DIR}/agentcoreTargets.cmake)

configure_package_config_file(cmake/agentcoreConfig.cmake.in
  ${PROJECT_BINARY_DIR}/agentcoreConfig.cmake
  INSTALL_DESTINATION ${AGENTCORE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/agentcoreConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/agentcoreConfig.cmake
              ${PROJECT_BINARY_DIR}/agentcoreConfigVersion.cmake
        DESTINATION ${AGENTCORE_CMAKE_DIR})

# pkg-config: the prefix is found from the .pc file's own place (${pcfiledir}),
# so an install tree can move, and `cmake --install --prefix` gets a .pc that
# is right for where it put it.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(AGENTCORE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(AGENTCORE_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(AGENTCORE_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH _agentcore_pc_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _agentcore_pc_up "${_agentcore_pc_up}")
  set(AGENTCORE_PC_PREFIX "\${pcfiledir}/${_agentcore_pc_up}")
  set(AGENTCORE_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(AGENTCORE_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(cmake/agentcore.pc.in ${PROJECT_BINARY_DIR}/agentcore.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/agentcore.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

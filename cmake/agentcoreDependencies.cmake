# Public dependencies of agentcore. agentcoreConfig.cmake repeats these with
# find_dependency, so keep the two lists in step.
include(GNUInstallDirs)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG COMPONENTS headers json)
find_package(fmt REQUIRED CONFIG)
# OpenSSL: TLS for the HTTP clients; Asio's SSL part is compiled into agentcore.
find_package(OpenSSL REQUIRED)
# libgit2 is private (not in any public header) but a static agentcore needs it at link time.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBGIT2 REQUIRED IMPORTED_TARGET libgit2)
pkg_check_modules(AGENTCORE_ZLIB REQUIRED IMPORTED_TARGET zlib)
# SQLite (private) holds the board's archive of finished tasks (board/archive.hpp).
pkg_check_modules(AGENTCORE_SQLITE REQUIRED IMPORTED_TARGET sqlite3)

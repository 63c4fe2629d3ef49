#include "support/temp_dir.hpp"

#include <atomic>
#include <random>
#include <string>
#include <unistd.h>

namespace agentcore::test {

temp_dir::temp_dir(std::string_view tag) {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("agentcore-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace agentcore::test

#pragma once
#include <filesystem>
#include <string_view>

namespace agentcore::test {

/// A fresh directory under the system temp dir, removed on destruction.
class temp_dir {
public:
  explicit temp_dir(std::string_view tag = "t");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

}  // namespace agentcore::test

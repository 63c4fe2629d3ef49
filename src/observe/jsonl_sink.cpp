#include <agentcore/observe/jsonl_sink.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agentcore::observe {

namespace {

constexpr std::size_t max_pending = 64u << 20;

error_info io_error(std::string_view what, const std::filesystem::path& p, int err) {
  return fail(error::io_error, fmt::format("event log: {} '{}': {}", what, p.string(), std::strerror(err)));
}

int open_append(const std::filesystem::path& p) {
  return ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

}  // namespace

result<std::shared_ptr<jsonl_sink>> jsonl_sink::open(jsonl_options o) {
  if (o.path.empty()) return fail(error::invalid_argument, "event log: no path; set jsonl_options::path");
  if (o.path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(o.path.parent_path(), ec);
    if (ec)
      return fail(error::io_error, fmt::format("event log: cannot make the directory '{}': {}",
                                               o.path.parent_path().string(), ec.message()));
  }
  int fd = open_append(o.path);
  if (fd < 0) return io_error("cannot open", o.path, errno);
  struct stat st {};
  std::uint64_t size = ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  return std::shared_ptr<jsonl_sink>(new jsonl_sink(std::move(o), fd, size));
}

jsonl_sink::jsonl_sink(jsonl_options o, int fd, std::uint64_t size)
    : options_(std::move(o)), fd_(fd), file_size_(size) {
  buffer_.reserve(options_.buffer_bytes + 4096);
}

jsonl_sink::~jsonl_sink() {
  std::lock_guard lock(mutex_);
  write_buffer_locked();
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::close(fd_);
  }
}

void jsonl_sink::write(const event_view& e) {
  std::lock_guard lock(mutex_);
  const std::size_t before = buffer_.size();
  append_json(buffer_, e);
  buffer_ += '\n';
  if (options_.max_bytes > 0 && file_size_ + buffer_.size() > options_.max_bytes && file_size_ + before > 0) {
    // The line does not fit: what came before it goes to this file, the line to the next.
    std::string tail = buffer_.substr(before);
    buffer_.resize(before);
    write_buffer_locked();
    if (buffer_.empty() && file_size_ > 0) rotate_locked();
    buffer_ += tail;
  }
  ++buffered_lines_;
  if (buffer_.size() >= options_.buffer_bytes) {
    write_buffer_locked();
  } else if (buffered_lines_ == 1) {
    first_buffered_ = std::chrono::steady_clock::now();
  } else if ((buffered_lines_ < 16 || buffered_lines_ % 16 == 0) &&
             std::chrono::steady_clock::now() - first_buffered_ >= options_.max_delay) {
    write_buffer_locked();  // in a burst the clock is read every 16 lines, not for each
  }
  if (buffer_.size() > max_pending) {  // the file cannot be written: keep the newest lines
    auto cut = buffer_.find('\n', buffer_.size() - max_pending);
    if (cut != std::string::npos) {
      std::uint64_t n = 0;
      for (std::size_t i = 0; i <= cut; ++i) n += buffer_[i] == '\n';
      buffer_.erase(0, cut + 1);
      dropped_ += n;
      buffered_lines_ -= std::min(buffered_lines_, n);
    }
  }
}

void jsonl_sink::write_buffer_locked() {
  std::size_t done = 0;
  while (done < buffer_.size()) {
    if (fd_ < 0) {
      fd_ = open_append(options_.path);
      if (fd_ < 0) {
        if (!error_) error_ = io_error("cannot open", options_.path, errno);
        break;
      }
    }
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!error_) error_ = io_error("cannot write", options_.path, n < 0 ? errno : ENOSPC);
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  file_size_ += done;
  // Whole lines that went out leave the buffer; a line cut short by a failed
  // write is ended there (readers skip that fragment) and stays buffered whole.
  std::size_t whole = done;
  if (done < buffer_.size()) {
    auto nl = done == 0 ? std::string::npos : buffer_.rfind('\n', done - 1);
    whole = nl == std::string::npos ? 0 : nl + 1;
    if (done > whole && fd_ >= 0 && ::write(fd_, "\n", 1) == 1) ++file_size_;
  }
  std::uint64_t lines = 0;
  for (std::size_t i = 0; i < whole; ++i) lines += buffer_[i] == '\n';
  written_ += lines;
  buffered_lines_ -= std::min(buffered_lines_, lines);
  buffer_.erase(0, whole);
}

bool jsonl_sink::rotate_locked() {
  if (fd_ >= 0) {
    if (::fsync(fd_) != 0 && !error_) error_ = io_error("cannot fsync", options_.path, errno);
    ::close(fd_);
    fd_ = -1;
  }
  auto name = [&](unsigned i) {
    auto p = options_.path;
    p += fmt::format(".{}", i);
    return p;
  };
  std::error_code ec;
  if (options_.keep == 0) {
    std::filesystem::remove(options_.path, ec);
  } else {
    std::filesystem::remove(name(options_.keep), ec);
    for (unsigned i = options_.keep; i > 1; --i)
      if (std::filesystem::exists(name(i - 1), ec)) std::filesystem::rename(name(i - 1), name(i), ec);
    std::filesystem::rename(options_.path, name(1), ec);
    if (ec && !error_) error_ = fail(error::io_error, fmt::format("event log: cannot rotate '{}': {}",
                                                                 options_.path.string(), ec.message()));
  }
  // The renames are durable only once the directory is.
  auto dir = options_.path.has_parent_path() ? options_.path.parent_path() : std::filesystem::path(".");
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  fd_ = open_append(options_.path);
  if (fd_ < 0) {
    if (!error_) error_ = io_error("cannot open", options_.path, errno);
    return false;
  }
  file_size_ = 0;
  ++rotations_;
  return true;
}

void jsonl_sink::flush() {
  std::lock_guard lock(mutex_);
  write_buffer_locked();
}

result<void> jsonl_sink::sync() {
  std::lock_guard lock(mutex_);
  write_buffer_locked();
  if (!buffer_.empty()) return error_;
  if (fd_ >= 0 && ::fsync(fd_) != 0) return io_error("cannot fsync", options_.path, errno);
  return {};
}

error_info jsonl_sink::last_error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

std::uint64_t jsonl_sink::lines_written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

std::uint64_t jsonl_sink::lines_dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

std::uint64_t jsonl_sink::rotations() const {
  std::lock_guard lock(mutex_);
  return rotations_;
}

}  // namespace agentcore::observe

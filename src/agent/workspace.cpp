#include <agentcore/agent/workspace.hpp>
#include <agentcore/git/repository.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <random>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace agentcore::agent {

namespace {

class category_impl : public boost::system::error_category {
public:
  const char* name() const noexcept override { return "agentcore.agent"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::success: return "success";
      case error::path_refused: return "the path leaves the worktree or goes where tools may not";
      case error::path_not_allowed: return "the task's contract does not allow writing this path";
      case error::not_found: return "no such file or directory in the worktree";
      case error::too_large: return "over the workspace's size limit";
      case error::binary: return "binary content";
      case error::search_text_missing: return "the text to replace is not in the file";
      case error::search_text_ambiguous: return "the text to replace is in the file more than once";
      case error::bad_arguments: return "the tool call's arguments are not valid";
    }
    return "unknown agent error";
  }
};

// A file descriptor that closes itself.
struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(fd_guard&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  fd_guard& operator=(fd_guard&& o) noexcept {
    if (this != &o) {
      reset();
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~fd_guard() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  explicit operator bool() const { return fd >= 0; }
};

bool is_git_dir_name(std::string_view segment) {
  return segment.size() == 4 && segment[0] == '.' && (segment[1] | 0x20) == 'g' && (segment[2] | 0x20) == 'i' &&
         (segment[3] | 0x20) == 't';
}

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string os_error(int err) { return std::strerror(err); }

// Opens `rel` under `root` without leaving it: the kernel's RESOLVE_BENEATH
// (links are followed only while they stay inside), or on a kernel without
// openat2 a walk that follows no link at all.
int open_beneath(int root, const std::string& rel, int flags) {
  if (rel.empty()) return ::openat(root, ".", flags | O_CLOEXEC);
  static bool have_openat2 = true;
  if (have_openat2) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = ::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how);
    if (fd >= 0 || errno != ENOSYS) return static_cast<int>(fd);
    have_openat2 = false;
  }
  fd_guard dir(::openat(root, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  auto parts = split(rel);
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string name(parts[i]);
    fd_guard next(::openat(dir.fd, name.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) return -1;
    dir = std::move(next);
  }
  return ::openat(dir.fd, std::string(parts.back()).c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
}

error_info open_failure(int err, std::string_view rel) {
  switch (err) {
    case ENOENT: return fail(error::not_found, fmt::format("no file or directory '{}' in the worktree", rel));
    case ENOTDIR:
      return fail(error::not_found, fmt::format("'{}': a part of the path is a file, not a directory", rel));
    case EXDEV:
    case ELOOP:
      return fail(error::path_refused,
                  fmt::format("'{}' goes through a symbolic link that leads out of the worktree; tools stay inside it",
                              rel));
    case EACCES:
    case EPERM: return fail(error::path_refused, fmt::format("'{}': permission denied", rel));
    default: return fail(agentcore::error::io_error, fmt::format("'{}': {}", rel, os_error(err)));
  }
}

std::uint64_t fnv(std::uint64_t h, const void* data, std::size_t n) {
  auto p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

const boost::system::error_category& agent_category() noexcept {
  static const category_impl c;
  return c;
}

bool looks_binary(std::string_view content) noexcept {
  return content.substr(0, 8000).find('\0') != std::string_view::npos;
}

struct workspace::impl {
  std::filesystem::path root, canonical_root;
  contract::compiled_contract terms;
  workspace_options options;
  fd_guard root_fd;
  mutable std::optional<git::repository> repo;
  mutable bool repo_tried = false;
  std::uint64_t changes = 0;
  bool untracked = false;
  std::vector<std::string> written;
  std::mt19937_64 rng{std::random_device{}()};

  // Calls f(rel, stat, fd of its directory) for each entry under `dir_fd`
  // (relative path `prefix`), depth first in name order; directories are
  // entered when `recursive`. f returns false to stop everything.
  template <class F>
  bool walk(int dir_fd, const std::string& prefix, bool recursive, int depth, F&& f) const {
    if (depth > 64) return true;  // deeper than any real tree: a trap, not a project
    int dup = ::openat(dir_fd, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dup < 0) return true;
    DIR* d = ::fdopendir(dup);
    if (!d) {
      ::close(dup);
      return true;
    }
    std::vector<std::string> names;
    while (auto* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n == "." || n == ".." || is_git_dir_name(n)) continue;
      names.emplace_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      struct stat st{};
      if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      std::string rel = prefix.empty() ? n : prefix + "/" + n;
      bool dir = S_ISDIR(st.st_mode);
      if (ignored(dir ? rel + "/" : rel)) continue;
      if (!f(rel, st)) return false;
      if (dir && recursive) {
        fd_guard sub(::openat(dir_fd, n.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (sub && !walk(sub.fd, rel, true, depth + 1, f)) return false;
      }
    }
    return true;
  }

  bool ignored(const std::string& rel) const {
    if (!options.honour_gitignore) return false;
    if (!repo_tried) {
      repo_tried = true;
      if (!options.git_dir.empty()) {
        auto r = git::repository::open(options.git_dir, {.work_tree = root});
        if (r) repo.emplace(std::move(*r));
      } else if (std::filesystem::exists(root / ".git")) {
        auto r = git::repository::open(root);
        if (r) repo.emplace(std::move(*r));
      }
    }
    if (!repo) return false;
    auto r = repo->is_ignored(rel);
    return r && *r;
  }
};

workspace::workspace(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
workspace::workspace(workspace&&) noexcept = default;
workspace& workspace::operator=(workspace&&) noexcept = default;
workspace::~workspace() = default;

result<workspace> workspace::open(const std::filesystem::path& root, contract::task_contract terms,
                                  workspace_options options) {
  auto compiled = contract::compiled_contract::compile(std::move(terms));
  if (!compiled) return compiled.error();
  auto p = std::make_unique<impl>();
  p->root = root;
  std::error_code ec;
  p->canonical_root = std::filesystem::canonical(root, ec);
  if (ec || !std::filesystem::is_directory(p->canonical_root))
    return fail(agentcore::error::invalid_argument,
                fmt::format("agent: workspace root '{}' is not an existing directory", root.string()));
  p->root_fd = fd_guard(::open(p->canonical_root.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!p->root_fd)
    return fail(agentcore::error::io_error,
                fmt::format("agent: cannot open workspace root '{}': {}", root.string(), os_error(errno)));
  p->terms = std::move(*compiled);
  p->options = options;
  return workspace(std::move(p));
}

const std::filesystem::path& workspace::root() const noexcept { return impl_->root; }
const contract::compiled_contract& workspace::terms() const noexcept { return impl_->terms; }
const workspace_options& workspace::options() const noexcept { return impl_->options; }
std::uint64_t workspace::changes() const noexcept { return impl_->changes; }
void workspace::note_change() noexcept { ++impl_->changes; }
const std::vector<std::string>& workspace::written() const noexcept { return impl_->written; }
void workspace::note_untracked_change() noexcept { impl_->untracked = true; }
bool workspace::untracked_changes() const noexcept { return impl_->untracked; }

result<std::string> workspace::relative(std::string_view given) const {
  std::string_view p = given;
  // Models see absolute paths in command output; the worktree's own are fine.
  for (const auto& r : {impl_->root.string(), impl_->canonical_root.string()}) {
    if (p == r) return std::string();
    if (p.size() > r.size() && p.starts_with(r) && p[r.size()] == '/') {
      p.remove_prefix(r.size() + 1);
      break;
    }
  }
  while (p.starts_with("./")) p.remove_prefix(2);
  while (p.size() > 1 && p.ends_with('/')) p.remove_suffix(1);
  if (p.empty() || p == ".") return std::string();
  if (auto why = contract::check_relative_path(p); !why.empty())
    return fail(error::path_refused,
                fmt::format("path '{}' refused: {}; give a path inside the worktree, relative to its root, "
                            "like 'src/main.cpp'",
                            given, why));
  for (auto seg : split(p))
    if (is_git_dir_name(seg))
      return fail(error::path_refused,
                  fmt::format("path '{}' is inside .git: the repository's own files are not the task's to touch",
                              given));
  return std::string(p);
}

result<std::string> workspace::read(std::string_view path) const {
  auto rel = relative(path);
  if (!rel) return rel.error();
  if (rel->empty()) return fail(error::bad_arguments, "the worktree root is a directory; list it with list_files");
  fd_guard fd(open_beneath(impl_->root_fd.fd, *rel, O_RDONLY | O_NONBLOCK));
  if (!fd) return open_failure(errno, *rel);
  struct stat st{};
  if (::fstat(fd.fd, &st) != 0) return open_failure(errno, *rel);
  if (S_ISDIR(st.st_mode))
    return fail(error::bad_arguments, fmt::format("'{}' is a directory; list it with list_files", *rel));
  if (!S_ISREG(st.st_mode))
    return fail(error::path_refused, fmt::format("'{}' is not a regular file (a device, socket or pipe)", *rel));
  if (static_cast<std::uint64_t>(st.st_size) > impl_->options.max_file_bytes)
    return fail(error::too_large, fmt::format("'{}' is {} bytes, over the {}-byte limit for whole files; read a "
                                              "line range or search it",
                                              *rel, st.st_size, impl_->options.max_file_bytes));
  std::string out;
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < out.size()) {
    auto n = ::read(fd.fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return open_failure(errno, *rel);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

result<void> workspace::write(std::string_view path, std::string_view content) {
  auto rel = relative(path);
  if (!rel) return rel.error();
  if (rel->empty()) return fail(error::bad_arguments, "a file path is needed, not the worktree root");
  if (auto why = impl_->terms.may_write(*rel); !why.empty())
    return fail(error::path_not_allowed,
                fmt::format("writing '{}' is not allowed by the task's contract: {}", *rel, why));
  if (content.size() > impl_->options.max_file_bytes)
    return fail(error::too_large, fmt::format("the content for '{}' is {} bytes, over the {}-byte limit", *rel,
                                              content.size(), impl_->options.max_file_bytes));
  if (!impl_->terms.terms().binary_allowed && looks_binary(content))
    return fail(error::binary,
                fmt::format("the content for '{}' is binary (it has NUL bytes); the task's contract allows text only",
                            *rel));

  // Walk to the parent directory, making what is missing and following no link.
  fd_guard dir(::openat(impl_->root_fd.fd, ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!dir) return open_failure(errno, *rel);
  auto parts = split(*rel);
  std::string so_far;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string name(parts[i]);
    so_far += (so_far.empty() ? "" : "/") + name;
    fd_guard next(::openat(dir.fd, name.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!next && errno == ENOENT) {
      if (::mkdirat(dir.fd, name.c_str(), 0755) != 0 && errno != EEXIST) return open_failure(errno, so_far);
      next = fd_guard(::openat(dir.fd, name.c_str(), O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!next) {
      int err = errno;
      struct stat st{};
      if (::fstatat(dir.fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        return fail(error::path_refused, fmt::format("'{}' is a symbolic link; writes never go through links "
                                                     "(write to the path it names instead)",
                                                     so_far));
      if (err == ENOTDIR || err == ELOOP)
        return fail(error::path_refused, fmt::format("'{}' is a file, so '{}' cannot be made under it", so_far, *rel));
      return open_failure(err, so_far);
    }
    dir = std::move(next);
  }
  std::string name(parts.back());
  mode_t mode = 0644;
  struct stat st{};
  if (::fstatat(dir.fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode))
      return fail(error::path_refused, fmt::format("'{}' is a symbolic link; writes never go through links "
                                                   "(write to the path it names instead)",
                                                   *rel));
    if (S_ISDIR(st.st_mode)) return fail(error::path_refused, fmt::format("'{}' is a directory, not a file", *rel));
    if (!S_ISREG(st.st_mode))
      return fail(error::path_refused, fmt::format("'{}' is not a regular file (a device, socket or pipe)", *rel));
    mode = st.st_mode & 0777;
  }
  // A new inode renamed over the old name: a hard link to a file elsewhere is
  // replaced, never written through, and a reader never sees half a file.
  std::string tmp = fmt::format(".agentcore-{:016x}", impl_->rng());
  fd_guard out(::openat(dir.fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return open_failure(errno, *rel);
  auto cleanup = [&] { ::unlinkat(dir.fd, tmp.c_str(), 0); };
  std::size_t done = 0;
  while (done < content.size()) {
    auto n = ::write(out.fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      cleanup();
      return fail(agentcore::error::io_error, fmt::format("writing '{}': {}", *rel, os_error(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  ::fchmod(out.fd, mode);
  out.reset();
  if (::renameat(dir.fd, tmp.c_str(), dir.fd, name.c_str()) != 0) {
    int err = errno;
    cleanup();
    return fail(agentcore::error::io_error, fmt::format("writing '{}': {}", *rel, os_error(err)));
  }
  ++impl_->changes;
  if (std::find(impl_->written.begin(), impl_->written.end(), *rel) == impl_->written.end())
    impl_->written.push_back(*rel);
  return {};
}

result<std::vector<entry>> workspace::list(std::string_view dir, bool recursive, std::size_t limit,
                                           bool& truncated) const {
  truncated = false;
  auto rel = relative(dir);
  if (!rel) return rel.error();
  fd_guard fd(open_beneath(impl_->root_fd.fd, *rel, O_DIRECTORY | O_RDONLY));
  if (!fd) {
    if (errno == ENOTDIR)
      return fail(error::bad_arguments, fmt::format("'{}' is a file, not a directory; read it with read_file", *rel));
    return open_failure(errno, *rel);
  }
  std::vector<entry> out;
  impl_->walk(fd.fd, *rel, recursive, 0, [&](const std::string& path, const struct stat& st) {
    bool is_dir = S_ISDIR(st.st_mode);
    if (is_dir && recursive) return true;  // its files are listed
    if (out.size() >= limit) {
      truncated = true;
      return false;
    }
    out.push_back({path, is_dir, S_ISLNK(st.st_mode), static_cast<std::uint64_t>(st.st_size)});
    return true;
  });
  return out;
}

bool workspace::is_ignored(std::string_view path) const { return impl_->ignored(std::string(path)); }

std::uint64_t workspace::fingerprint() const {
  std::uint64_t h = 1469598103934665603ull;
  impl_->walk(impl_->root_fd.fd, "", true, 0, [&](const std::string& path, const struct stat& st) {
    h = fnv(h, path.data(), path.size());
    std::int64_t fields[] = {static_cast<std::int64_t>(st.st_size), static_cast<std::int64_t>(st.st_mode),
                             static_cast<std::int64_t>(st.st_mtim.tv_sec), static_cast<std::int64_t>(st.st_mtim.tv_nsec),
                             static_cast<std::int64_t>(st.st_ino)};
    h = fnv(h, fields, sizeof fields);
    return true;
  });
  return h;
}

}  // namespace agentcore::agent

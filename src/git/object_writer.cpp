#include "git/object_writer.hpp"

#include <git2/odb.h>
#include <git2/oid.h>

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agentcore::git::detail {

namespace {

std::atomic<bool> fsync_on{true};
std::atomic<unsigned long> temp_counter{0};  // temporary object names, across every writer of the process

error_info io_failure(std::string_view what, const std::filesystem::path& p, int err) {
  return fail(error::io_error, fmt::format("git: {} '{}': {}", what, p.string(), std::strerror(err)));
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

const char* type_name(git_object_t t) {
  switch (t) {
    case GIT_OBJECT_BLOB: return "blob";
    case GIT_OBJECT_TREE: return "tree";
    case GIT_OBJECT_COMMIT: return "commit";
    case GIT_OBJECT_TAG: return "tag";
    default: return nullptr;
  }
}

}  // namespace

bool fsync_default() noexcept { return fsync_on.load(std::memory_order_relaxed); }
void set_fsync_default(bool on) noexcept { fsync_on.store(on, std::memory_order_relaxed); }

namespace {
// Deflate streams per thread, reset between objects: starting a stream
// allocates and clears a quarter megabyte. Blobs get git's default for loose
// objects (core.looseCompression: fastest). Trees and commits are stored
// without compression (still a zlib stream, as git and libgit2 read it): a
// tree is mostly 20-byte ids that do not compress (about 15% saved), and
// deflating one took 20 times longer than storing it, a tenth of a merge.
struct zstream {
  z_stream s{};
  bool ready = false;
  ~zstream() {
    if (ready) deflateEnd(&s);
  }
};
thread_local zstream blob_deflater, stored_deflater;
}  // namespace

object_writer::object_writer() = default;

object_writer::~object_writer() {
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

error_info object_writer::open(const std::filesystem::path& objects_dir) {
  int fd = ::open(objects_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_failure("open object directory", objects_dir, errno);
  dir_ = objects_dir;
  dir_fd_ = fd;
  return {};
}

result<oid> object_writer::write(git_object_t type, std::string_view data, bool durable,
                                 const std::function<bool(const oid&)>& present) {
  const char* tname = type_name(type);
  if (!tname) return fail(error::invalid_argument, "git: write object: not a blob, tree, commit or tag");
  git_oid gid;
  if (git_odb_hash(&gid, data.data(), data.size(), type) < 0)
    return fail(error::io_error, "git: write object: could not hash it");
  oid id;
  std::memcpy(id.bytes.data(), gid.id, 20);
  std::string hex = id.hex();
  std::string final_name = hex.substr(0, 2) + "/" + hex.substr(2);
  if (present && present(id)) {  // there already (a fresh clone's packs hold most of a merge's blobs)
    ::utimensat(dir_fd_, final_name.c_str(), nullptr, 0);  // a loose one kept fresh for gc, as git does
    return id;
  }

  // Deflate "<type> <size>\0<data>" into one reused buffer.
  std::string header = fmt::format("{} {}", tname, data.size());
  header.push_back('\0');
  auto& z = type == GIT_OBJECT_BLOB ? blob_deflater : stored_deflater;
  if (!z.ready) {
    if (deflateInit(&z.s, type == GIT_OBJECT_BLOB ? Z_BEST_SPEED : Z_NO_COMPRESSION) != Z_OK)
      return fail(error::io_error, "git: zlib could not start a deflate stream (out of memory?)");
    z.ready = true;
  } else if (deflateReset(&z.s) != Z_OK) {
    return fail(error::io_error, "git: zlib could not reset its deflate stream");
  }
  deflated_.resize(deflateBound(&z.s, header.size() + data.size()) + 64);
  z.s.next_out = reinterpret_cast<Bytef*>(deflated_.data());
  z.s.avail_out = static_cast<uInt>(deflated_.size());
  z.s.next_in = reinterpret_cast<Bytef*>(header.data());
  z.s.avail_in = static_cast<uInt>(header.size());
  if (deflate(&z.s, Z_NO_FLUSH) != Z_OK) return fail(error::io_error, "git: zlib failed to deflate an object header");
  z.s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.s.avail_in = static_cast<uInt>(data.size());
  if (deflate(&z.s, Z_FINISH) != Z_STREAM_END)
    return fail(error::io_error, fmt::format("git: zlib failed to deflate object {}", hex));
  std::size_t size = deflated_.size() - z.s.avail_out;

  // A temporary file in the objects directory, linked into place: readers see
  // the whole object or none. The pid and a counter of the whole process
  // (every writer, every repository) keep writers apart; a name that exists
  // anyway (left by a killed process whose pid came back, as pids do in a
  // container after a restart) is passed over for the next.
  std::string tmp;
  int fd = -1;
  for (int tries = 0; fd < 0; ++tries) {
    tmp = fmt::format("tmp_obj_agentcore_{}_{}", ::getpid(), temp_counter.fetch_add(1, std::memory_order_relaxed));
    fd = ::openat(dir_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0 && (errno != EEXIST || tries >= 1000)) return io_failure("create temporary object", dir_ / tmp, errno);
  }
  bool ok = write_all(fd, deflated_.data(), size) && (!durable || ::fdatasync(fd) == 0);
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlinkat(dir_fd_, tmp.c_str(), 0);
    return io_failure("write object", dir_ / final_name, err);
  }
  int rc = ::linkat(dir_fd_, tmp.c_str(), dir_fd_, final_name.c_str(), 0);
  if (rc < 0 && errno == ENOENT) {  // the fan-out directory does not exist yet
    if (::mkdirat(dir_fd_, hex.substr(0, 2).c_str(), 0755) < 0 && errno != EEXIST) {
      err = errno;
      ::unlinkat(dir_fd_, tmp.c_str(), 0);
      return io_failure("create object directory", dir_ / hex.substr(0, 2), err);
    }
    rc = ::linkat(dir_fd_, tmp.c_str(), dir_fd_, final_name.c_str(), 0);
  }
  if (rc < 0 && errno == EEXIST) {
    ::utimensat(dir_fd_, final_name.c_str(), nullptr, 0);  // keep it fresh for gc, as git does
    ::unlinkat(dir_fd_, tmp.c_str(), 0);
    return id;
  }
  if (rc < 0 && (errno == EPERM || errno == ENOTSUP || errno == EXDEV)) {  // no hard links here: rename
    rc = ::renameat(dir_fd_, tmp.c_str(), dir_fd_, final_name.c_str());
  } else if (rc == 0) {
    ::unlinkat(dir_fd_, tmp.c_str(), 0);
  }
  if (rc < 0) {
    err = errno;
    ::unlinkat(dir_fd_, tmp.c_str(), 0);
    return io_failure("write object", dir_ / final_name, err);
  }
  if (durable) {
    int sub = ::openat(dir_fd_, hex.substr(0, 2).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool synced = sub >= 0 && ::fsync(sub) == 0;
    err = errno;
    if (sub >= 0) ::close(sub);
    if (!synced) return io_failure("sync object directory", dir_ / hex.substr(0, 2), err);
  }
  return id;
}

std::string serialize_tree(std::vector<raw_entry> entries) {
  // git's order: names compared bytewise, a directory as if it ended in '/'.
  auto before = [](const raw_entry& a, const raw_entry& b) {
    std::size_t n = std::min(a.name.size(), b.name.size());
    if (int c = std::memcmp(a.name.data(), b.name.data(), n); c != 0) return c < 0;
    auto next = [n](const raw_entry& e) -> unsigned char {
      if (e.name.size() > n) return static_cast<unsigned char>(e.name[n]);
      return e.mode == 040000 ? '/' : '\0';
    };
    return next(a) < next(b);
  };
  std::sort(entries.begin(), entries.end(), before);
  std::string out;
  out.reserve(entries.size() * 48);
  for (const auto& e : entries) {
    out += fmt::format("{:o} ", e.mode);
    out += e.name;
    out.push_back('\0');
    out.append(reinterpret_cast<const char*>(e.id.bytes.data()), 20);
  }
  return out;
}

}  // namespace agentcore::git::detail

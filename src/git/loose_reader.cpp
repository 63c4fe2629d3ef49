#include "git/loose_reader.hpp"

#include "git/libgit2.hpp"

#include <git2/sys/odb_backend.h>

#include <fmt/format.h>
#include <zlib.h>

#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace agentcore::git::detail {

namespace {

struct reader {
  git_odb_backend parent;  // first: libgit2 hands back a pointer to it
  int dir_fd = -1;
};

struct inflater {
  z_stream s{};
  bool ready = false;
  ~inflater() {
    if (ready) inflateEnd(&s);
  }
};
thread_local inflater inflate_stream;
thread_local std::string file_buffer;

// Reads the whole file at `rel` into file_buffer. false: absent or unreadable
// (another backend will say why).
bool read_file(int dir_fd, const char* rel) {
  int fd = ::openat(dir_fd, rel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && st.st_size > 0;
  if (ok) {
    file_buffer.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (ok && got < file_buffer.size()) {
      ssize_t n = ::read(fd, file_buffer.data() + got, file_buffer.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ok = false;
      else got += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  return ok;
}

git_object_t type_of(std::string_view name) {
  if (name == "blob") return GIT_OBJECT_BLOB;
  if (name == "tree") return GIT_OBJECT_TREE;
  if (name == "commit") return GIT_OBJECT_COMMIT;
  if (name == "tag") return GIT_OBJECT_TAG;
  return GIT_OBJECT_INVALID;
}

// Inflates file_buffer: the header, then (unless header_only) the body into
// memory from git_odb_backend_data_alloc. GIT_PASSTHROUGH on anything odd.
int inflate_object(git_odb_backend* backend, void** out, std::size_t* len, git_object_t* type, bool header_only) {
  auto& z = inflate_stream;
  if (!z.ready) {
    if (inflateInit(&z.s) != Z_OK) return GIT_PASSTHROUGH;
    z.ready = true;
  } else if (inflateReset(&z.s) != Z_OK) {
    return GIT_PASSTHROUGH;
  }
  char head[64];
  z.s.next_in = reinterpret_cast<Bytef*>(file_buffer.data());
  z.s.avail_in = static_cast<uInt>(file_buffer.size());
  z.s.next_out = reinterpret_cast<Bytef*>(head);
  z.s.avail_out = sizeof head;
  int rc = inflate(&z.s, Z_SYNC_FLUSH);
  if (rc != Z_OK && rc != Z_STREAM_END) return GIT_PASSTHROUGH;
  std::size_t produced = sizeof head - z.s.avail_out;
  auto* nul = static_cast<char*>(std::memchr(head, '\0', produced));
  if (!nul) return GIT_PASSTHROUGH;
  std::string_view header(head, static_cast<std::size_t>(nul - head));
  auto space = header.find(' ');
  if (space == std::string_view::npos) return GIT_PASSTHROUGH;
  git_object_t t = type_of(header.substr(0, space));
  std::size_t size = 0;
  auto digits = header.substr(space + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size);
  if (t == GIT_OBJECT_INVALID || ec != std::errc() || end != digits.data() + digits.size()) return GIT_PASSTHROUGH;
  *type = t;
  *len = size;
  if (header_only) return 0;
  std::size_t body_here = produced - static_cast<std::size_t>(nul + 1 - head);
  if (body_here > size) return GIT_PASSTHROUGH;
  auto* data = static_cast<char*>(git_odb_backend_data_alloc(backend, size + 1));
  if (!data) return GIT_PASSTHROUGH;
  std::memcpy(data, nul + 1, body_here);
  if (rc != Z_STREAM_END) {
    z.s.next_out = reinterpret_cast<Bytef*>(data + body_here);
    z.s.avail_out = static_cast<uInt>(size - body_here + 1);  // one more: a longer stream is caught
    rc = inflate(&z.s, Z_FINISH);
    body_here = size + 1 - z.s.avail_out;
  }
  if (rc != Z_STREAM_END || body_here != size) {
    git_odb_backend_data_free(backend, data);
    return GIT_PASSTHROUGH;
  }
  data[size] = '\0';
  *out = data;
  return 0;
}

void path_of(const git_oid* id, char (&rel)[42]) {
  char hex[GIT_OID_HEXSZ + 1];
  git_oid_tostr(hex, sizeof hex, id);
  rel[0] = hex[0];
  rel[1] = hex[1];
  rel[2] = '/';
  std::memcpy(rel + 3, hex + 2, 38);
  rel[41] = '\0';
}

int do_read(void** out, std::size_t* len, git_object_t* type, git_odb_backend* b, const git_oid* id) {
  char rel[42];
  path_of(id, rel);
  if (!read_file(reinterpret_cast<reader*>(b)->dir_fd, rel)) return GIT_PASSTHROUGH;
  return inflate_object(b, out, len, type, false);
}

int do_read_header(std::size_t* len, git_object_t* type, git_odb_backend* b, const git_oid* id) {
  char rel[42];
  path_of(id, rel);
  if (!read_file(reinterpret_cast<reader*>(b)->dir_fd, rel)) return GIT_PASSTHROUGH;
  return inflate_object(b, nullptr, len, type, true);
}

int do_exists(git_odb_backend* b, const git_oid* id) {
  char rel[42];
  path_of(id, rel);
  return ::faccessat(reinterpret_cast<reader*>(b)->dir_fd, rel, F_OK, 0) == 0 ? 1 : 0;
}

void do_free(git_odb_backend* b) {
  auto* r = reinterpret_cast<reader*>(b);
  if (r->dir_fd >= 0) ::close(r->dir_fd);
  delete r;
}

}  // namespace

error_info add_loose_reader(git_repository* repo, const std::filesystem::path& objects_dir) {
  int fd = ::open(objects_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return fail(error::io_error,
                fmt::format("git: open object directory '{}': {}", objects_dir.string(), std::strerror(errno)));
  auto* r = new reader;
  r->dir_fd = fd;
  if (int rc = git_odb_init_backend(&r->parent, GIT_ODB_BACKEND_VERSION); rc < 0) {
    do_free(&r->parent);
    return last_error(rc, "set up the object reader");
  }
  r->parent.read = do_read;
  r->parent.read_header = do_read_header;
  r->parent.exists = do_exists;
  r->parent.free = do_free;
  git_odb* odb = nullptr;
  if (int rc = git_repository_odb(&odb, repo); rc < 0) {
    do_free(&r->parent);
    return last_error(rc, "open object database");
  }
  // libgit2's pack backend has priority 2 and its loose backend 1, higher
  // first: this one sits with the packs, ahead of libgit2's loose reader.
  int rc = git_odb_add_backend(odb, &r->parent, 2);
  git_odb_free(odb);
  if (rc < 0) {
    do_free(&r->parent);
    return last_error(rc, "add the object reader");
  }
  return {};
}

}  // namespace agentcore::git::detail

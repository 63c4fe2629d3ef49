#include <agentcore/git/worktree_pool.hpp>

#include <agentcore/core/path.hpp>
#include <agentcore/git/repository.hpp>

#include "git/repository_impl.hpp"

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <mutex>
#include <set>
#include <unistd.h>

namespace agentcore::git {

namespace fs = std::filesystem;
using namespace git::detail;

struct detail::slot {
  std::size_t index = 0;
  fs::path path;
  std::string name;
  std::optional<repository> repo;  // the linked worktree, opened on its directory
  oid base, head;
  std::optional<oid> merging;  // merge_in's other parent, until the next commit
  // The only paths changed since the slot was lent, when the borrower said so
  // (only_changed); unknown otherwise, and then every file is looked at.
  std::optional<std::set<std::string>> touched;
  bool tainted = false;  // anything_changed() this lease: declarations no longer count
  bool index_dirty = false;  // the in-memory index has changes the file does not (see commit_all)
  bool created = false;
  bool busy = false;
};

struct detail::pool_state {
  mutable std::mutex mu;
  std::condition_variable cv;
  fs::path repo_path;
  worktree_pool_options options;
  std::optional<repository> main;  // used only under mu
  std::vector<std::unique_ptr<slot>> slots;
  std::atomic<std::uint64_t> full_checkouts{0}, files_written{0};
  int root_lock = -1;  // flock on <root>/.pool.lock: one pool per slot directory
  fs::path common_dir;  // the repository's git directory (canonical), the only one slots may link to
  ~pool_state() {
    if (root_lock >= 0) ::close(root_lock);
  }
};

namespace {

git_repository* raw(repository& r) { return repository_access::of(r).repo.get(); }

error_info set_head(repository& r, const oid& id) {
  git_oid g = to_git(id);
  if (int rc = git_repository_set_head_detached(raw(r), &g); rc < 0) return last_error(rc, "detach HEAD");
  return {};
}

// A slot's files are written by this process, outside any sandbox, after
// untrusted commands had the slot: a directory of the slot may have become a
// link to anywhere. So paths are walked one component at a time from the
// slot's root with O_NOFOLLOW, and whatever is not a real directory on the way
// (a link, a file) is removed, never followed.
class fd_guard {
public:
  explicit fd_guard(int fd = -1) : fd_(fd) {}
  fd_guard(fd_guard&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  fd_guard& operator=(fd_guard&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

private:
  int fd_;
};

// Removes `name` in directory `dir` whatever it is, a directory tree included,
// without following links.
void remove_at(int dir, const char* name) {
  if (::unlinkat(dir, name, 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR && errno != EPERM) return;
  int sub = ::openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub < 0) return;
  if (DIR* d = ::fdopendir(sub)) {
    std::vector<std::string> names;
    while (auto* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    for (const auto& n : names) remove_at(::dirfd(d), n.c_str());
    ::closedir(d);
  } else {
    ::close(sub);
  }
  ::unlinkat(dir, name, AT_REMOVEDIR);
}

// The directory `rel` beneath `root` (a slot), opened without following a
// link; with `create`, made where missing and put in place of anything else.
result<fd_guard> open_dir_beneath(const fs::path& root, const fs::path& rel, bool create) {
  fd_guard dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir.get() < 0) return fail(error::io_error, fmt::format("git: open slot '{}': {}", root.string(), std::strerror(errno)));
  for (const auto& part : rel) {
    auto name = part.string();
    if (name.empty() || name == ".") continue;
    if (name == "..") return fail(error::invalid_argument, fmt::format("git: '{}' leaves the slot", rel.string()));
    int next = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && create && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)) {
      if (errno != ENOENT) remove_at(dir.get(), name.c_str());  // a file or a link where a directory goes
      if (::mkdirat(dir.get(), name.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(error::io_error, fmt::format("git: create '{}': {}", (root / rel).string(), std::strerror(errno)));
      next = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (next < 0) return fail(error::not_found, fmt::format("git: '{}': {}", (root / rel).string(), std::strerror(errno)));
    dir = fd_guard(next);
  }
  return dir;
}

error_info write_file(const fs::path& root, const std::string& rel, std::string_view content, file_mode mode) {
  fs::path path(rel);
  auto parent = open_dir_beneath(root, path.parent_path(), true);
  if (!parent) return parent.error();
  auto name = path.filename().string();
  // Whatever is in the way (a directory where a file goes, a link) belongs to
  // the old commit or to the agent: remove it.
  remove_at(parent->get(), name.c_str());
  if (mode == file_mode::link) {
    if (::symlinkat(std::string(content).c_str(), parent->get(), name.c_str()) != 0)
      return fail(error::io_error, fmt::format("git: create link '{}': {}", (root / rel).string(), std::strerror(errno)));
    return {};
  }
  if (mode == file_mode::commit) {
    ::mkdirat(parent->get(), name.c_str(), 0755);  // a submodule: an empty directory, as git leaves it
    return {};
  }
  int fd = ::openat(parent->get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                    mode == file_mode::blob_executable ? 0755 : 0644);
  if (fd < 0) return fail(error::io_error, fmt::format("git: write '{}': {}", (root / rel).string(), std::strerror(errno)));
  fd_guard file(fd);
  const char* p = content.data();
  std::size_t n = content.size();
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return fail(error::io_error, fmt::format("git: write '{}': {}", (root / rel).string(), std::strerror(errno)));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

// Removes a file (or whatever is there) and the directories it leaves empty,
// as a checkout would; never through a link.
void remove_file(const fs::path& root, const std::string& rel) {
  fs::path path(rel);
  for (;;) {
    auto parent = open_dir_beneath(root, path.parent_path(), false);
    if (!parent) return;
    auto name = path.filename().string();
    if (name.empty()) return;
    if (path == fs::path(rel)) remove_at(parent->get(), name.c_str());
    else if (::unlinkat(parent->get(), name.c_str(), AT_REMOVEDIR) != 0) return;  // not empty: stop
    path = path.parent_path();
    if (path.empty()) return;
  }
}

/// Resets a slot's files and index to its HEAD, removing untracked and
/// ignored files; cheap when nothing changed (one status scan).
// Puts the declared paths back as the slot's head has them (the cheap clean).
error_info restore_touched(slot& s) {
  auto& impl = repository_access::of(*s.repo);
  auto tree = s.repo->commit_tree(s.head);
  if (!tree) return tree.error();
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, raw(*s.repo)); rc < 0) return last_error(rc, "open the slot's index");
  handle<git_index, git_index_free> index(raw_index);
  for (const auto& path : *s.touched) {
    if (!check_relative_path(path).empty()) continue;  // never a path outside the slot
    auto e = s.repo->entry_at(*tree, path);
    if (!e) return e.error();
    if (!*e || (*e)->mode == file_mode::tree) {
      remove_file(s.path, path);
      git_index_remove_bypath(index.get(), path.c_str());
      if (*e) return fail(error::invalid_argument, fmt::format("git: '{}' is a directory in the slot's head", path));
      continue;
    }
    std::string content;
    if ((*e)->mode != file_mode::commit) {
      auto b = impl.lookup_blob((*e)->id);
      if (!b) return b.error();
      content.assign(static_cast<const char*>(git_blob_rawcontent(b->get())),
                     static_cast<std::size_t>(git_blob_rawsize(b->get())));
    }
    if (auto w = write_file(s.path, path, content, (*e)->mode)) return w;
    if ((*e)->mode != file_mode::commit)
      if (int rc = git_index_add_bypath(index.get(), path.c_str()); rc < 0)
        return last_error(rc, fmt::format("index '{}'", path));
  }
  s.index_dirty = true;
  return {};  // the index is written by the next prepare (see commit_all)
}

// Index and tracked files back to the slot's head (git reset --hard).
error_info reset_hard(slot& s) {
  auto c = repository_access::of(*s.repo).lookup_commit(s.head);
  if (!c) return c.error();
  git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
  co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED | GIT_CHECKOUT_REMOVE_IGNORED;
  if (int rc = git_reset(raw(*s.repo), reinterpret_cast<git_object*>(c->get()), GIT_RESET_HARD, &co); rc < 0)
    return last_error(rc, fmt::format("reset slot '{}'", s.path.string()));
  s.index_dirty = false;
  return {};
}

error_info clean(slot& s) {
  s.tainted = false;
  if (s.touched && !s.merging) {
    auto e = restore_touched(s);
    s.touched.reset();
    return e;
  }
  s.touched.reset();
  bool was_merging = s.merging.has_value();
  if (s.merging) {
    // Half a merge: forget it (MERGE_HEAD and friends); its files are put back below.
    git_repository_state_cleanup(raw(*s.repo));
    s.merging.reset();
  }
  git_status_options so = GIT_STATUS_OPTIONS_INIT;
  so.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  so.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS | GIT_STATUS_OPT_INCLUDE_IGNORED |
             GIT_STATUS_OPT_RECURSE_IGNORED_DIRS;
  git_status_list* list = nullptr;
  if (int rc = git_status_list_new(&list, raw(*s.repo), &so); rc < 0)
    return last_error(rc, fmt::format("status of slot '{}'", s.path.string()));
  std::size_t n = git_status_list_entrycount(list);
  std::set<std::string> tracked;
  // Untracked and ignored files go first, so a link that took a tracked
  // directory's place is gone before that directory's files are written.
  for (std::size_t i = 0; i < n; ++i) {
    const git_status_entry* e = git_status_byindex(list, i);
    if (e->status & (GIT_STATUS_WT_NEW | GIT_STATUS_IGNORED)) {
      const git_diff_delta* d = e->index_to_workdir;
      if (d && d->new_file.path && check_relative_path(d->new_file.path).empty())
        remove_file(s.path, d->new_file.path);  // and the directories it leaves empty
      // Untracked in the index but in the head (an index a kill cut short,
      // a staged deletion): the head's file is put back below, not lost.
      if (const git_diff_delta* h = e->head_to_index) {
        if (h->old_file.path) tracked.insert(h->old_file.path);
        if (h->new_file.path) tracked.insert(h->new_file.path);
      }
      continue;
    }
    for (const git_diff_delta* d : {e->head_to_index, e->index_to_workdir}) {
      if (!d) continue;
      if (d->old_file.path) tracked.insert(d->old_file.path);
      if (d->new_file.path) tracked.insert(d->new_file.path);
    }
  }
  git_status_list_free(list);
  if (tracked.empty() && !was_merging) return {};
  // The changed tracked files as the head has them, written by the pool
  // itself: a checkout would write through a link a command left where a
  // file was.
  s.touched = std::move(tracked);
  auto e = restore_touched(s);
  s.touched.reset();
  if (e) return e;
  if (was_merging) return reset_hard(s);  // the files already match: this clears the index's conflicts
  return {};
}

error_info write_index(slot& s) {
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, raw(*s.repo)); rc < 0) return last_error(rc, "open the slot's index");
  handle<git_index, git_index_free> index(raw_index);
  if (int rc = git_index_write(index.get()); rc < 0) return last_error(rc, "write the slot's index");
  s.index_dirty = false;
  return {};
}

/// Moves a clean slot from its head to `base`, writing only what differs.
error_info prepare(pool_state& st, slot& s, const oid& base) {
  if (s.head == base) {
    s.base = base;
    // The slot is lent with an index that git itself would agree with.
    if (s.index_dirty) return write_index(s);
    return {};
  }
  auto& impl = repository_access::of(*s.repo);
  auto from = impl.peel_tree(s.head);
  if (!from) return from.error();
  auto to = impl.peel_tree(base);
  if (!to) return to.error();
  repository::impl::change_map changes;
  if (auto e = impl.collect(from->get(), to->get(), "", changes)) return e;
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, raw(*s.repo)); rc < 0) return last_error(rc, "open the slot's index");
  handle<git_index, git_index_free> index(raw_index);
  // Deletions first, so a file can take the place of a directory it replaces.
  for (const auto& [path, c] : changes) {
    if (auto why = check_relative_path(path); !why.empty())
      return fail(error::corrupt, fmt::format("git: commit {} holds an unsafe path: {}", base.hex(), why));
    if (c.after) continue;
    remove_file(s.path, path);
    git_index_remove_bypath(index.get(), path.c_str());
  }
  for (const auto& [path, c] : changes) {
    if (!c.after) continue;
    std::string content;
    if (c.after->mode != file_mode::commit) {
      auto b = impl.lookup_blob(c.after->id);
      if (!b) return b.error();
      content.assign(static_cast<const char*>(git_blob_rawcontent(b->get())),
                     static_cast<std::size_t>(git_blob_rawsize(b->get())));
    }
    if (auto e = write_file(s.path, path, content, c.after->mode)) return e;
    if (c.after->mode != file_mode::commit)
      if (int rc = git_index_add_bypath(index.get(), path.c_str()); rc < 0)
        return last_error(rc, fmt::format("index '{}'", path));
  }
  if (int rc = git_index_write(index.get()); rc < 0) return last_error(rc, "write the slot's index");
  s.index_dirty = false;
  if (auto e = set_head(*s.repo, base)) return e;
  st.files_written += changes.size();
  s.head = base;
  s.base = base;
  return {};
}

fs::path admin_dir(const pool_state& st, const slot& s) { return st.common_dir / "worktrees" / s.name; }

// A small regular file's content, without following a link ("" if it is not
// one, or larger than 4 KiB).
std::string read_small(const fs::path& p) {
  fd_guard fd(::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return {};
  struct stat sb {};
  if (::fstat(fd.get(), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > 4096) return {};
  std::string out(static_cast<std::size_t>(sb.st_size), '\0');
  ssize_t n = ::read(fd.get(), out.data(), out.size());
  if (n < 0) return {};
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool is_real_directory(const fs::path& p) {
  struct stat sb {};
  return ::lstat(p.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode);
}

// A path as git writes it in a link file: one line, maybe with a trailing '/'.
std::string link_text(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// Whether the slot's git link and its admin directory are exactly what the
// pool made. Commands in the slot could have replaced `.git` (a new
// repository, core.worktree pointing outside, a link to the main repository's
// git directory): such a slot is made again, never opened through its `.git`.
bool link_intact(const pool_state& st, const slot& s) {
  auto admin = admin_dir(st, s);
  if (!is_real_directory(s.path) || !is_real_directory(admin)) return false;
  if (link_text(read_small(s.path / ".git")) != "gitdir: " + link_text(admin.string())) return false;
  if (link_text(read_small(admin / "gitdir")) != link_text((s.path / ".git").string())) return false;
  auto common = link_text(read_small(admin / "commondir"));
  if (common != "../.." && common != link_text(st.common_dir.string())) return false;
  // Per-worktree configuration (core.worktree, hooks, fsmonitor) is never the pool's.
  struct stat sb {};
  if (::lstat((admin / "config.worktree").c_str(), &sb) == 0) return false;
  return true;
}

// Opens a slot through its admin directory in the repository's git directory,
// with the slot as its working directory: nothing in the slot says where its
// repository is.
result<repository> open_slot(const pool_state& st, const slot& s) {
  auto r = repository::open(admin_dir(st, s), {.work_tree = s.path});
  if (!r) return r.error();
  if (link_text(fs::weakly_canonical(git_repository_commondir(raw(*r))).string()) != link_text(st.common_dir.string()))
    return fail(error::corrupt, fmt::format("git: slot '{}' does not belong to '{}'", s.path.string(), st.common_dir.string()));
  return r;
}

// Forgets a slot: its directory and its admin directory, without following
// anything in them (a prune would delete whatever the admin files name).
void forget(pool_state& st, slot& s) {
  std::error_code ec;
  s.repo.reset();
  fs::remove_all(admin_dir(st, s), ec);
  fs::remove_all(s.path, ec);
  s.created = false;
}

/// Makes the slot's worktree from scratch (the one full checkout).
error_info create(pool_state& st, slot& s, const oid& base) {
  git_repository* main = raw(*st.main);
  // A creation cut short (a kill -9 inside git_worktree_add) leaves an admin
  // directory lookup cannot read, and add then fails on "directory exists".
  forget(st, s);
  // The worktree starts at `base` through the branch git_worktree_add would
  // otherwise make from the repository's HEAD, which may be unborn ("master"
  // in a repository whose work is on "main"). It goes again below.
  git_oid start = to_git(base);
  git_commit* start_commit = nullptr;
  if (int rc = git_commit_lookup(&start_commit, main, &start); rc < 0)
    return last_error(rc, fmt::format("create worktree '{}': commit {}", s.path.string(), base.hex()));
  git_reference* start_ref = nullptr;
  int made = git_branch_create(&start_ref, main, s.name.c_str(), start_commit, 1);
  git_commit_free(start_commit);
  if (made < 0) return last_error(made, fmt::format("create worktree '{}': branch '{}'", s.path.string(), s.name));
  git_worktree_add_options o = GIT_WORKTREE_ADD_OPTIONS_INIT;
  o.checkout_options.checkout_strategy = GIT_CHECKOUT_FORCE;
  o.ref = start_ref;
  git_worktree* wt = nullptr;
  int added = git_worktree_add(&wt, main, s.name.c_str(), s.path.c_str(), &o);
  git_reference_free(start_ref);
  if (added < 0) {
    auto e = last_error(added, fmt::format("create worktree '{}'", s.path.string()));
    if (git_reference* b = nullptr; git_branch_lookup(&b, main, s.name.c_str(), GIT_BRANCH_LOCAL) == 0) {
      git_branch_delete(b);
      git_reference_free(b);
    }
    return e;
  }
  git_worktree_free(wt);
  ::chmod(s.path.c_str(), 0700);  // see acquire
  if (!link_intact(st, s))
    return fail(error::corrupt, fmt::format("git: the worktree made at '{}' does not link back as expected ('{}')",
                                            s.path.string(), admin_dir(st, s).string()));
  auto r = open_slot(st, s);
  if (!r) return r.error();
  s.repo.emplace(std::move(*r));
  auto head = s.repo->resolve("HEAD");
  if (!head) return head.error();
  if (auto e = set_head(*s.repo, *head)) return e;
  // The branch the worktree started on goes; slots run detached.
  git_reference* branch = nullptr;
  if (git_branch_lookup(&branch, main, s.name.c_str(), GIT_BRANCH_LOCAL) == 0) {
    git_branch_delete(branch);
    git_reference_free(branch);
  }
  s.head = *head;
  s.created = true;
  ++st.full_checkouts;
  return {};
}

// A stable short name for a slot directory, so pools with different slot
// directories on one repository never name (and so never reset or delete)
// each other's slots.
std::string root_tag(const fs::path& root) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : root.string()) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:08x}", static_cast<std::uint32_t>(h ^ (h >> 32)));
}

}  // namespace

// --- worktree ---

worktree::worktree(std::shared_ptr<pool_state> pool, slot* s) : pool_(std::move(pool)), slot_(s) {}
worktree::worktree(worktree&& o) noexcept : pool_(std::move(o.pool_)), slot_(std::exchange(o.slot_, nullptr)) {}
worktree& worktree::operator=(worktree&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::move(o.pool_);
    slot_ = std::exchange(o.slot_, nullptr);
  }
  return *this;
}
worktree::~worktree() { release(); }

const fs::path& worktree::path() const noexcept { return slot_->path; }
const fs::path& worktree::git_dir() const noexcept { return pool_->common_dir; }
fs::path worktree::admin_dir() const { return git::admin_dir(*pool_, *slot_); }
const oid& worktree::base() const noexcept { return slot_->base; }
const oid& worktree::head() const noexcept { return slot_->head; }

result<oid> worktree::commit_all(std::string_view message, const signature& author) {
  repository& r = *slot_->repo;
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, raw(r)); rc < 0) return last_error(rc, "open the slot's index");
  handle<git_index, git_index_free> index(raw_index);
  if (slot_->touched && !slot_->merging) {
    // Only the declared paths changed: stage those, without a look at the rest.
    for (const auto& path : *slot_->touched) {
      if (auto why = check_relative_path(path); !why.empty())
        return fail(error::invalid_argument, fmt::format("git: only_changed path refused: {}", why));
      std::error_code ec;
      auto st = fs::symlink_status(slot_->path / path, ec);
      int rc = fs::exists(st) ? git_index_add_bypath(index.get(), path.c_str())
                              : git_index_remove_bypath(index.get(), path.c_str());
      if (rc < 0) return last_error(rc, fmt::format("stage '{}'", path));
    }
    // The index stays in memory (the slot's repository keeps it) until the
    // next prepare writes it: writing 20,000 entries with their checksum is
    // most of a small commit's cost. A crash before then is a stale index on
    // disk, which the next open's full clean-up puts right.
  } else {
    char star[] = "*";
    char* patterns[] = {star};
    git_strarray spec{patterns, 1};
    if (int rc = git_index_add_all(index.get(), &spec, GIT_INDEX_ADD_DEFAULT, nullptr, nullptr); rc < 0)
      return last_error(rc, "stage the worktree's changes");
    if (int rc = git_index_update_all(index.get(), &spec, nullptr, nullptr); rc < 0)
      return last_error(rc, "stage the worktree's deletions");
  }
  if (!slot_->touched || slot_->merging) {
    if (int rc = git_index_write(index.get()); rc < 0) return last_error(rc, "write the slot's index");
    slot_->index_dirty = false;
  } else {
    slot_->index_dirty = true;
  }
  git_oid tree;
  if (int rc = git_index_write_tree(&tree, index.get()); rc < 0) return last_error(rc, "write the worktree's tree");
  auto head_tree = r.commit_tree(slot_->head);
  if (!head_tree) return head_tree.error();
  if (!slot_->merging && from_git(tree) == *head_tree) return slot_->head;
  std::vector<oid> parents{slot_->head};
  if (slot_->merging) parents.push_back(*slot_->merging);
  auto c = r.create_commit(from_git(tree), parents, message, author);
  if (!c) return c.error();
  if (auto e = set_head(r, *c)) return e;
  if (slot_->merging) {
    git_repository_state_cleanup(raw(r));
    slot_->merging.reset();
  }
  slot_->head = *c;
  return *c;
}

void worktree::only_changed(std::vector<std::string> paths) {
  if (slot_->tainted) return;  // something undeclared happened this lease: every file is looked at
  if (!slot_->touched) slot_->touched.emplace();
  slot_->touched->insert(std::make_move_iterator(paths.begin()), std::make_move_iterator(paths.end()));
}

void worktree::anything_changed() {
  slot_->touched.reset();
  slot_->tainted = true;
}

result<std::vector<std::string>> worktree::merge_in(const oid& other) {
  repository& r = *slot_->repo;
  if (slot_->merging)
    return fail(error::invalid_argument,
                fmt::format("git: slot '{}' is already merging {}; commit first", slot_->path.string(), slot_->merging->hex()));
  auto is_in = r.is_ancestor(other, slot_->head);
  if (!is_in) return is_in.error();
  if (*is_in) return std::vector<std::string>();  // already contains it
  git_oid g = to_git(other);
  git_annotated_commit* raw_ac = nullptr;
  if (int rc = git_annotated_commit_lookup(&raw_ac, raw(r), &g); rc < 0)
    return last_error(rc, fmt::format("find commit {} to merge", other.hex()));
  handle<git_annotated_commit, git_annotated_commit_free> ac(raw_ac);
  git_merge_options mo = GIT_MERGE_OPTIONS_INIT;
  git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
  co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_ALLOW_CONFLICTS;
  const git_annotated_commit* heads[] = {ac.get()};
  if (int rc = git_merge(raw(r), heads, 1, &mo, &co); rc < 0)
    return last_error(rc, fmt::format("merge {} into slot '{}'", other.hex(), slot_->path.string()));
  slot_->merging = other;
  slot_->touched.reset();
  slot_->tainted = true;
  git_index* raw_index = nullptr;
  if (int rc = git_repository_index(&raw_index, raw(r)); rc < 0) return last_error(rc, "open the slot's index");
  handle<git_index, git_index_free> index(raw_index);
  std::vector<std::string> conflicts;
  git_index_conflict_iterator* raw_it = nullptr;
  if (int rc = git_index_conflict_iterator_new(&raw_it, index.get()); rc < 0) return last_error(rc, "list conflicts");
  handle<git_index_conflict_iterator, git_index_conflict_iterator_free> it(raw_it);
  const git_index_entry *ancestor = nullptr, *ours = nullptr, *theirs = nullptr;
  while (git_index_conflict_next(&ancestor, &ours, &theirs, it.get()) == 0) {
    const git_index_entry* any = ours ? ours : theirs ? theirs : ancestor;
    if (any && any->path) conflicts.emplace_back(any->path);
  }
  return conflicts;
}

result<agentcore::diff> worktree::diff_from_base() { return slot_->repo->diff(slot_->base, slot_->head); }

void worktree::release() {
  if (!slot_) return;
  slot* s = std::exchange(slot_, nullptr);
  auto pool = std::move(pool_);
  // A slot whose git link was tampered with, or that cannot be cleaned, is
  // made again from scratch on its next use.
  if (!link_intact(*pool, *s) || clean(*s)) s->created = false;
  std::lock_guard lk(pool->mu);
  s->busy = false;
  pool->cv.notify_one();
}

// --- pool ---

worktree_pool::worktree_pool(std::shared_ptr<pool_state> s) : state_(std::move(s)) {}
worktree_pool::~worktree_pool() = default;

result<std::unique_ptr<worktree_pool>> worktree_pool::open(const fs::path& repository_path, worktree_pool_options options) {
  if (options.root.empty())
    return fail(error::invalid_argument, "git: worktree_pool_options::root is empty; name a directory for the slots");
  if (options.slots == 0) return fail(error::invalid_argument, "git: a worktree pool needs at least one slot");
  auto st = std::make_shared<pool_state>();
  st->repo_path = repository_path;
  st->options = options;
  auto main = repository::open(repository_path, {});
  if (!main) return main.error();
  st->main.emplace(std::move(*main));
  std::error_code ec;
  fs::create_directories(options.root, ec);
  if (ec)
    return fail(error::io_error, fmt::format("git: cannot create slot directory '{}': {}", options.root.string(), ec.message()));
  // The slots are this pool's alone: a second pool on the same directory (another
  // process, maybe on another repository) would reset worktrees under the first.
  st->root_lock = ::open((options.root / ".pool.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (st->root_lock < 0)
    return fail(error::io_error, fmt::format("git: cannot open '{}': {}", (options.root / ".pool.lock").string(),
                                             std::strerror(errno)));
  if (::flock(st->root_lock, LOCK_EX | LOCK_NB) != 0)
    return fail(error::in_use, fmt::format("git: another worktree pool (another agentcore process?) uses the slot "
                                           "directory '{}'; give each process its own (worktrees.root)",
                                           options.root.string()));
  st->common_dir = link_text(fs::weakly_canonical(git_repository_commondir(raw(*st->main)), ec).string());
  if (ec) return fail(error::io_error, fmt::format("git: cannot resolve the git directory of '{}': {}",
                                                   repository_path.string(), ec.message()));
  auto root = fs::weakly_canonical(fs::absolute(options.root), ec);
  if (ec) root = fs::absolute(options.root);
  auto tag = root_tag(root);
  for (std::size_t i = 0; i < options.slots; ++i) {
    auto s = std::make_unique<slot>();
    s->index = i;
    s->path = root / fmt::format("slot-{}", i);
    s->name = fmt::format("agentcore-{}-slot-{}", tag, i);
    // The slot's branch is this pool's alone too (its name carries the slot
    // directory's tag, and the pool holds that directory's lock): a lock
    // file of it in the repository is a killed run's, and would stop the
    // slot's branch from being made, moved or deleted ever again.
    for (const auto& lock : {st->common_dir / "refs" / "heads" / (s->name + ".lock"),
                             st->common_dir / "logs" / "refs" / "heads" / (s->name + ".lock")})
      fs::remove(lock, ec);
    ec.clear();
    // Slots of this directory from before names carried its tag.
    if (auto legacy = st->common_dir / "worktrees" / fmt::format("agentcore-slot-{}", i);
        link_text(read_small(legacy / "gitdir")) == link_text((s->path / ".git").string()))
      fs::remove_all(legacy, ec);
    // A slot left by an earlier run is reused, reset to its last commit, if
    // its git link is still the pool's; otherwise it is made again. The pool
    // is its slots' only user, so a lock file in the slot's git directory
    // (HEAD.lock, index.lock) is a dead run's.
    if (!link_intact(*st, *s)) {
      forget(*st, *s);
    } else {
      for (const auto& e : fs::directory_iterator(admin_dir(*st, *s), ec))
        if (e.path().extension() == ".lock") fs::remove(e.path(), ec);
      ec.clear();
      auto r = open_slot(*st, *s);
      if (r) {
        s->repo.emplace(std::move(*r));
        auto head = s->repo->resolve("HEAD");
        if (head) {
          s->head = *head;
          s->base = *head;
          s->created = !clean(*s);
          // What the clean-up put back goes into the index file now, not at
          // the slot's next use: a slot a kill left with a cut-short index is
          // clean on disk once the pool is open (git status agrees).
          if (s->created && s->index_dirty) s->created = !write_index(*s);
        }
      }
      if (!s->created) forget(*st, *s);
    }
    st->slots.push_back(std::move(s));
  }
  return std::unique_ptr<worktree_pool>(new worktree_pool(std::move(st)));
}

result<worktree> worktree_pool::acquire(const oid& base, std::chrono::milliseconds timeout) {
  auto& st = *state_;
  slot* s = nullptr;
  {
    std::unique_lock lk(st.mu);
    auto pick = [&]() -> slot* {
      slot* fresh = nullptr;
      for (auto& x : st.slots) {
        if (x->busy) continue;
        if (x->created) return x.get();  // prefer a made slot: no full checkout
        if (!fresh) fresh = x.get();
      }
      return fresh;
    };
    st.cv.wait_for(lk, timeout, [&] { return (s = pick()) != nullptr; });
    if (!s)
      return fail(error::too_many_attempts,
                  fmt::format("git: all {} worktree slots are busy; wait, or open the pool with more slots", st.slots.size()));
    s->busy = true;
    if (s->created && !link_intact(st, *s)) s->created = false;  // tampered with since: made again
    // Only the host's user may enter a slot: a command could have left a
    // set-user-id file in it (the sandbox runs nothing set-user-id, but the
    // host's other users could).
    if (s->created) ::chmod(s->path.c_str(), 0700);
    if (!s->created) {
      if (auto e = create(st, *s, base)) {
        s->busy = false;
        st.cv.notify_one();
        return e;
      }
    }
  }
  if (auto e = prepare(st, *s, base)) {
    // A half-moved slot is rebuilt next time rather than trusted.
    std::lock_guard lk(st.mu);
    s->created = false;
    s->busy = false;
    st.cv.notify_one();
    return e;
  }
  return worktree(state_, s);
}

const fs::path& worktree_pool::git_dir() const noexcept { return state_->common_dir; }

worktree_pool_stats worktree_pool::stats() const {
  std::lock_guard lk(state_->mu);
  worktree_pool_stats out;
  out.slots = state_->slots.size();
  for (auto& s : state_->slots) out.free += s->busy ? 0 : 1;
  out.full_checkouts = state_->full_checkouts;
  out.files_written = state_->files_written;
  return out;
}

}  // namespace agentcore::git

#include <agentcore/git/repository.hpp>

#include "git/libgit2.hpp"

#include <git2/sys/repository.h>
#include "git/loose_reader.hpp"
#include "git/repository_impl.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include <algorithm>

#include <ctime>
#include <mutex>
#include <thread>

namespace agentcore::git {

using namespace detail;

// --- errors, ids, JSON ---

namespace {
class git_category_impl final : public boost::system::error_category {
public:
  const char* name() const noexcept override { return "git"; }
  std::string message(int ev) const override {
    switch (ev) {
      case GIT_ENOTFOUND: return "object or reference not found";
      case GIT_EEXISTS: return "object or reference already exists";
      case GIT_EAMBIGUOUS: return "ambiguous short id";
      case GIT_EBAREREPO: return "operation not allowed on a bare repository";
      case GIT_EUNBORNBRANCH: return "HEAD points at a branch with no commits";
      case GIT_ELOCKED: return "lock file in use";
      case GIT_EMODIFIED: return "reference changed meanwhile";
      case GIT_EINVALIDSPEC: return "invalid revision or reference name";
      case GIT_ECONFLICT: return "checkout conflict";
      default: return fmt::format("libgit2 error {}", ev);
    }
  }
};
}  // namespace

const boost::system::error_category& git_category() noexcept {
  static const git_category_impl c;
  return c;
}

error_info detail::last_error(int rc, std::string_view what) {
  const git_error* e = git_error_last();
  std::string msg = e && e->message ? e->message : git_category().message(rc);
  return error_info(error_code(rc, git_category()), fmt::format("git: {}: {}", what, msg));
}

detail::library::library() {
  // The first initialisation turns fsync on: durable by default. It also turns
  // off libgit2's strict object creation, which looks up every entry of every
  // tree written to check it exists: agentcore writes trees only from entries
  // it has just read or written, and those lookups were most of a merge's cost.
  //
  // One initialisation is held for the life of the process: when libgit2
  // shuts down (its count back at zero) it deletes its thread-local key, and
  // every thread that had used it (a blocking pool's) leaks its state on exit.
  static const bool process_wide = [] {
    git_libgit2_init();
    git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1);
    // libgit2 caches small trees and commits up to 256 MiB by default, across
    // every repository of the process: in a long run every merge's new trees
    // pile up there and the process grows by kilobytes per task until the
    // cap. agentcore reads what it needs per operation; a small cache keeps
    // what is hot (main's trees) and stops the growth early.
    git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, static_cast<ssize_t>(16) << 20);
    return true;
  }();
  (void)process_wide;
  git_libgit2_init();
  git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0);
}
detail::library::~library() { git_libgit2_shutdown(); }

void set_object_cache_limit(std::size_t bytes) {
  detail::library lib;
  git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, static_cast<ssize_t>(bytes));
}

result<oid> oid::from_hex(std::string_view hex) {
  if (hex.size() != 40)
    return fail(error::invalid_argument, fmt::format("git: '{}' is not a 40-digit object id", hex));
  oid o;
  for (std::size_t i = 0; i < 20; ++i) {
    auto nib = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nib(hex[2 * i]), lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(error::invalid_argument, fmt::format("git: '{}' is not a hex object id", hex));
    o.bytes[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return o;
}

std::string oid::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(40, '0');
  for (std::size_t i = 0; i < 20; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

bool oid::is_zero() const noexcept {
  for (auto b : bytes)
    if (b) return false;
  return true;
}

std::string_view to_string(conflict_kind k) noexcept {
  switch (k) {
    case conflict_kind::content: return "content";
    case conflict_kind::add_add: return "add_add";
    case conflict_kind::modify_delete: return "modify_delete";
    case conflict_kind::rename: return "rename";
    case conflict_kind::directory_file: return "directory_file";
    case conflict_kind::mode: return "mode";
  }
  return "unknown";
}

void tag_invoke(json::value_from_tag, json::value& v, const oid& id) { v = id.hex(); }
void tag_invoke(json::value_from_tag, json::value& v, const merge_conflict& c) {
  v = {{"path", c.path}, {"kind", to_string(c.kind)}, {"detail", c.detail}};
}
void tag_invoke(json::value_from_tag, json::value& v, const merge_result& r) {
  json::array cs;
  for (const auto& c : r.conflicts) cs.push_back(json::value_from(c));
  v = {{"clean", r.clean()}, {"tree", r.tree ? json::value(r.tree->hex()) : json::value(nullptr)},
       {"conflicts", std::move(cs)}};
}

// --- repository ---

namespace {
// Reads the configuration once, at open: libgit2 otherwise stats every
// configuration file (repository, global, system) again on each read, which
// happens several times per object and ref written.
error_info use_config_snapshot(repository::impl& p) {
  git_config* snap = nullptr;
  if (int rc = git_repository_config_snapshot(&snap, p.repo.get()); rc < 0) return last_error(rc, "read configuration");
  int rc = git_repository_set_config(p.repo.get(), snap);
  git_config_free(snap);
  if (rc < 0) return last_error(rc, "read configuration");
  return {};
}

void apply_options(const repository_options& o) {
  if (o.fsync) {
    git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, *o.fsync ? 1 : 0);
    detail::set_fsync_default(*o.fsync);
  }
}
}  // namespace

result<repository> repository::open(const std::filesystem::path& path, repository_options options) {
  auto p = std::make_unique<impl>();
  apply_options(options);
  git_repository* r = nullptr;
  if (int rc = git_repository_open_ext(&r, path.c_str(), GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr); rc < 0)
    return last_error(rc, fmt::format("open repository '{}'", path.string()));
  p->repo.reset(r);
  p->options = options;
  if (!options.work_tree.empty()) {
    // Only when it differs: libgit2 1.5 leaks the path when asked to set the
    // working directory it already has.
    auto bare = [](std::string s) {
      while (s.size() > 1 && s.back() == '/') s.pop_back();
      return s;
    };
    const char* current = git_repository_workdir(r);
    if (!current || bare(current) != bare(options.work_tree.string()))
      if (int rc = git_repository_set_workdir(r, options.work_tree.c_str(), 0); rc < 0)
        return last_error(rc, fmt::format("set the working directory of '{}' to '{}'", path.string(),
                                          options.work_tree.string()));
  }
  if (auto e = use_config_snapshot(*p)) return e;
  if (auto e = detail::add_loose_reader(p->repo.get(), std::filesystem::path(git_repository_commondir(r)) / "objects"))
    return e;
  return repository(std::move(p));
}

result<repository> repository::init(const std::filesystem::path& path, bool bare, repository_options options) {
  auto p = std::make_unique<impl>();
  apply_options(options);
  git_repository* r = nullptr;
  if (int rc = git_repository_init(&r, path.c_str(), bare ? 1 : 0); rc < 0)
    return last_error(rc, fmt::format("init repository '{}'", path.string()));
  p->repo.reset(r);
  p->options = options;
  if (auto e = detail::add_loose_reader(p->repo.get(), std::filesystem::path(git_repository_commondir(r)) / "objects"))
    return e;
  return repository(std::move(p));
}

repository::repository(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
repository::repository(repository&&) noexcept = default;
repository& repository::operator=(repository&&) noexcept = default;
repository::~repository() = default;

std::filesystem::path repository::git_dir() const { return git_repository_path(impl_->repo.get()); }
std::filesystem::path repository::workdir() const {
  const char* w = git_repository_workdir(impl_->repo.get());
  return w ? std::filesystem::path(w) : std::filesystem::path();
}

result<oid> repository::resolve(std::string_view revision) {
  git_object* obj = nullptr;
  std::string rev(revision);
  if (int rc = git_revparse_single(&obj, impl_->repo.get(), rev.c_str()); rc < 0)
    return last_error(rc, fmt::format("resolve '{}'", revision));
  object_ptr o(obj);
  git_object* peeled = nullptr;
  if (int rc = git_object_peel(&peeled, o.get(), GIT_OBJECT_COMMIT); rc < 0)
    return last_error(rc, fmt::format("'{}' is not a commit", revision));
  object_ptr c(peeled);
  return from_git(*git_object_id(c.get()));
}

result<std::optional<oid>> repository::ref_target(std::string_view refname) {
  git_oid out;
  std::string name(refname);
  int rc = git_reference_name_to_id(&out, impl_->repo.get(), name.c_str());
  if (rc == GIT_ENOTFOUND) return std::optional<oid>();
  if (rc < 0) return last_error(rc, fmt::format("read ref '{}'", refname));
  return std::optional<oid>(from_git(out));
}

result<oid> repository::commit_tree(const oid& commit) {
  auto c = impl_->lookup_commit(commit);
  if (!c) return c.error();
  return from_git(*git_commit_tree_id(c->get()));
}

result<std::vector<oid>> repository::commit_parents(const oid& commit) {
  auto c = impl_->lookup_commit(commit);
  if (!c) return c.error();
  std::vector<oid> out;
  for (unsigned i = 0; i < git_commit_parentcount(c->get()); ++i) out.push_back(from_git(*git_commit_parent_id(c->get(), i)));
  return out;
}

result<std::string> repository::commit_message(const oid& commit) {
  auto c = impl_->lookup_commit(commit);
  if (!c) return c.error();
  const char* m = git_commit_message(c->get());
  return std::string(m ? m : "");
}

result<oid> repository::write_blob(std::string_view content) { return impl_->write_blob(content); }

result<std::string> repository::read_blob(const oid& blob) {
  auto b = impl_->lookup_blob(blob);
  if (!b) return b.error();
  return std::string(static_cast<const char*>(git_blob_rawcontent(b->get())),
                     static_cast<std::size_t>(git_blob_rawsize(b->get())));
}

result<std::optional<tree_entry>> repository::entry_at(const oid& tree, std::string_view path) {
  auto t = impl_->lookup_tree(tree);
  if (!t) return t.error();
  git_tree_entry* e = nullptr;
  std::string p(path);
  int rc = git_tree_entry_bypath(&e, t->get(), p.c_str());
  if (rc == GIT_ENOTFOUND) return std::optional<tree_entry>();
  if (rc < 0) return last_error(rc, fmt::format("look up '{}'", path));
  tree_entry out{from_git(*git_tree_entry_id(e)), static_cast<file_mode>(git_tree_entry_filemode(e))};
  git_tree_entry_free(e);
  return std::optional<tree_entry>(out);
}

result<oid> repository::edit_tree(std::optional<oid> base, const std::map<std::string, std::optional<tree_entry>>& changes) {
  std::vector<merge_conflict> conflicts;
  auto r = impl_->rebuild(base, changes, conflicts);
  if (!r) return r.error();
  if (!conflicts.empty())
    return fail(error::invalid_argument, fmt::format("git: edit_tree: {} ({})", conflicts.front().detail, conflicts.front().path));
  if (!*r) return impl_->empty_tree();
  return **r;
}

result<oid> repository::create_commit(const oid& tree, const std::vector<oid>& parents, std::string_view message,
                                      const signature& author, const std::optional<signature>& committer) {
  // The tree and the parents must exist (libgit2's strict object creation is
  // off, so nothing else checks), but need not be read: the commit names them
  // by id, and a tree just written by a merge is not read back.
  odb_ptr odb;
  auto must_exist = [&](const oid& id, std::string_view what) -> error_info {
    if (impl_->known.contains(id)) return {};
    if (!odb) {
      git_odb* raw = nullptr;
      if (int rc = git_repository_odb(&raw, impl_->repo.get()); rc < 0) return last_error(rc, "open object database");
      odb.reset(raw);
    }
    git_oid g = to_git(id);
    if (!git_odb_exists(odb.get(), &g))
      return fail(error::not_found, fmt::format("git: create commit: its {} {} is not in the repository", what, id.hex()));
    impl_->remember(id);
    return {};
  };
  if (auto e = must_exist(tree, "tree")) return e;
  for (const auto& p : parents)
    if (auto e = must_exist(p, "parent")) return e;
  auto make_sig = [](const signature& s) -> result<signature_ptr> {
    git_signature* g = nullptr;
    std::int64_t when = s.time;
    int offset = s.offset_minutes;
    if (when == 0) {  // now, in local time (localtime_r reads the zone once, git_signature_now on every call)
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      when = t;
      offset = static_cast<int>(tm.tm_gmtoff / 60);
    }
    if (int rc = git_signature_new(&g, s.name.c_str(), s.email.c_str(), when, offset); rc < 0)
      return last_error(rc, fmt::format("signature '{} <{}>'", s.name, s.email));
    return signature_ptr(g);
  };
  auto a = make_sig(author);
  if (!a) return a.error();
  auto c = make_sig(committer.value_or(author));
  if (!c) return c.error();
  // The commit object as git and libgit2 write it.
  auto line = [](std::string_view header, const git_signature* s) {
    int offset = s->when.offset;
    char sign = (offset < 0 || s->when.sign == '-') ? '-' : '+';
    if (offset < 0) offset = -offset;
    return fmt::format("{} {} <{}> {} {}{:02}{:02}\n", header, s->name, s->email, static_cast<std::uint64_t>(s->when.time),
                       sign, offset / 60, offset % 60);
  };
  std::string body = fmt::format("tree {}\n", tree.hex());
  for (const auto& p : parents) body += fmt::format("parent {}\n", p.hex());
  body += line("author", a->get());
  body += line("committer", c->get());
  body += '\n';
  body += message;
  auto id = impl_->write_object(GIT_OBJECT_COMMIT, body);
  if (!id) return error_info(id.error().code(), fmt::format("git: create commit: {}", id.error().message()));
  return id;
}

// --- remotes ---

namespace {

struct strarray_of {
  std::vector<char*> ptrs;
  git_strarray arr{};
  explicit strarray_of(const std::vector<std::string>& v) {
    for (const auto& x : v) ptrs.push_back(const_cast<char*>(x.c_str()));
    arr.strings = ptrs.data();
    arr.count = ptrs.size();
  }
};

using remote_ptr = std::unique_ptr<git_remote, decltype(&git_remote_free)>;

result<remote_ptr> anonymous_remote(git_repository* repo, const std::string& url) {
  git_remote* r = nullptr;
  if (int rc = git_remote_create_anonymous(&r, repo, url.c_str()); rc < 0)
    return last_error(rc, fmt::format("use '{}' as a remote", url));
  return remote_ptr(r, git_remote_free);
}

struct push_refusals {
  std::vector<std::string> refused;  // "ref: why"
};

int on_push_update(const char* refname, const char* status, void* payload) {
  if (status) static_cast<push_refusals*>(payload)->refused.push_back(fmt::format("'{}': {}", refname, status));
  return 0;
}

}  // namespace

result<void> repository::fetch(std::string_view remote, const std::vector<std::string>& refspecs) {
  std::string url(remote);
  auto r = anonymous_remote(impl_->repo.get(), url);
  if (!r) return r.error();
  strarray_of specs(refspecs);
  git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
  opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  opts.update_fetchhead = 0;
  if (int rc = git_remote_fetch(r->get(), &specs.arr, &opts, "agentcore: fetch"); rc < 0)
    return last_error(rc, fmt::format("fetch from '{}'", url));
  return {};
}

result<void> repository::push(std::string_view remote, const std::vector<std::string>& refspecs) {
  std::string url(remote);
  auto r = anonymous_remote(impl_->repo.get(), url);
  if (!r) return r.error();
  strarray_of specs(refspecs);
  push_refusals refusals;
  git_push_options opts = GIT_PUSH_OPTIONS_INIT;
  opts.callbacks.push_update_reference = on_push_update;
  opts.callbacks.payload = &refusals;
  int rc = git_remote_push(r->get(), &specs.arr, &opts);
  if (rc < 0) {
    // A local transport reports a non-fast-forward as a failed push, not per ref.
    auto e = last_error(rc, fmt::format("push to '{}'", url));
    if (rc == GIT_ENONFASTFORWARD || e.message().find("fast-forward") != std::string::npos)
      return fail(error::already_exists,
                  fmt::format("git: push to '{}' refused: a ref there moved to a commit this repository's history "
                              "does not contain ({}); fetch and start from it",
                              url, e.message()));
    return e;
  }
  if (!refusals.refused.empty()) {
    std::string all;
    for (const auto& x : refusals.refused) all += (all.empty() ? "" : "; ") + x;
    return fail(error::already_exists, fmt::format("git: push to '{}' refused {}; fetch and start from the remote's "
                                                   "refs",
                                                   url, all));
  }
  return {};
}

result<advance_result> repository::advance(std::string_view refname, std::optional<oid> expected, const oid& target,
                                           std::string_view log_message) {
  std::string name(refname), log(log_message);
  git_oid t = to_git(target);
  git_reference* ref = nullptr;
  int rc;
  auto started = std::chrono::steady_clock::now();
  for (;;) {
    if (expected) {
      git_oid e = to_git(*expected);
      rc = git_reference_create_matching(&ref, impl_->repo.get(), name.c_str(), &t, 1, &e, log.c_str());
    } else {
      rc = git_reference_create(&ref, impl_->repo.get(), name.c_str(), &t, 0, log.c_str());
    }
    if (rc != GIT_ELOCKED) break;
    // Another process is moving the ref, or one died doing it and left its
    // lock. A live writer holds it for milliseconds: a lock older than
    // stale_lock_age is a dead one's, and is removed.
    // The ref's lock, or its reflog's.
    auto lock = git_dir() / (name + ".lock");
    bool removed = false;
    for (const auto& candidate : {lock, git_dir() / "logs" / (name + ".lock")}) {
      std::error_code ec;
      auto mtime = std::filesystem::last_write_time(candidate, ec);
      if (!ec && std::filesystem::file_time_type::clock::now() - mtime > impl_->options.stale_lock_age) {
        std::filesystem::remove(candidate, ec);
        removed = true;
      }
    }
    if (removed) continue;
    if (std::chrono::steady_clock::now() - started > impl_->options.stale_lock_age + std::chrono::seconds(1))
      return last_error(rc, fmt::format("move '{}' (its lock file '{}' stays)", refname, lock.string()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (rc == 0) {
    git_reference_free(ref);
    return advance_result{true, target};
  }
  if (rc == GIT_EMODIFIED || rc == GIT_EEXISTS || (expected && rc == GIT_ENOTFOUND)) {
    auto now = ref_target(refname);
    if (!now) return now.error();
    return advance_result{false, *now};
  }
  return last_error(rc, fmt::format("move '{}' to {}", refname, target.hex()));
}

result<std::optional<oid>> repository::merge_base(const oid& a, const oid& b) {
  git_oid out, ga = to_git(a), gb = to_git(b);
  int rc = git_merge_base(&out, impl_->repo.get(), &ga, &gb);
  if (rc == GIT_ENOTFOUND) return std::optional<oid>();
  if (rc < 0) return last_error(rc, fmt::format("merge base of {} and {}", a.hex(), b.hex()));
  return std::optional<oid>(from_git(out));
}

result<bool> repository::is_ancestor(const oid& ancestor, const oid& descendant) {
  if (ancestor == descendant) return true;
  git_oid a = to_git(ancestor), d = to_git(descendant);
  // A commit this repository does not have is reachable from none of its
  // commits (another clone's commit that was never fetched here): no, not an
  // error. A missing descendant stays an error.
  {
    git_odb* raw = nullptr;
    if (int rc = git_repository_odb(&raw, impl_->repo.get()); rc < 0)
      return result<bool>(boost::system::in_place_error, last_error(rc, "open the object database"));
    odb_ptr odb(raw);
    if (!git_odb_exists(odb.get(), &a)) return false;  // (it looks again after a refresh of the packs)
  }
  // The commits reachable from `ancestor` and not from `descendant` (git's
  // `rev-list ancestor ^descendant`): none when it is an ancestor. Not
  // git_graph_descendant_of: its merge-base walk, to say no, can walk a whole
  // history of commits made in the same second (a swarm's), which it did
  // on a gate's every submission (up to 1.5 s on 80,000 commits); this walk
  // goes little further than the commits between the two.
  auto failed = [&](int rc) {
    return result<bool>(boost::system::in_place_error,
                        last_error(rc, fmt::format("is {} an ancestor of {}", ancestor.hex(), descendant.hex())));
  };
  git_revwalk* raw = nullptr;
  if (int rc = git_revwalk_new(&raw, impl_->repo.get()); rc < 0) return failed(rc);
  revwalk_ptr walk(raw);
  if (int rc = git_revwalk_push(walk.get(), &a); rc < 0) return failed(rc);
  if (int rc = git_revwalk_hide(walk.get(), &d); rc < 0) return failed(rc);
  git_oid first;
  int rc = git_revwalk_next(&first, walk.get());
  if (rc == GIT_ITEROVER) return true;
  if (rc < 0) return failed(rc);
  return false;
}

result<std::vector<std::string>> repository::list_files(const oid& commit_or_tree) {
  auto t = impl_->peel_tree(commit_or_tree);
  if (!t) return t.error();
  std::vector<std::string> out;
  auto cb = [](const char* root, const git_tree_entry* e, void* payload) -> int {
    if (git_tree_entry_type(e) == GIT_OBJECT_TREE) return 0;
    static_cast<std::vector<std::string>*>(payload)->push_back(std::string(root) + git_tree_entry_name(e));
    return 0;
  };
  if (int rc = git_tree_walk(t->get(), GIT_TREEWALK_PRE, cb, &out); rc < 0)
    return last_error(rc, fmt::format("list the files of {}", commit_or_tree.hex()));
  std::sort(out.begin(), out.end());
  return out;
}

result<bool> repository::is_ignored(std::string_view path) {
  int ignored = 0;
  std::string p(path);
  int rc = git_ignore_path_is_ignored(&ignored, impl_->repo.get(), p.c_str());
  if (rc < 0)
    return result<bool>(boost::system::in_place_error, last_error(rc, fmt::format("is '{}' ignored", p)));
  return ignored == 1;
}

result<agentcore::diff> repository::diff(const oid& from, const oid& to, diff_options options) {
  auto a = impl_->peel_tree(from);
  if (!a) return a.error();
  auto b = impl_->peel_tree(to);
  if (!b) return b.error();
  // libgit2 walks both trees whole, reading every subtree (a one-file change
  // in a 20,000-file repository read some 400 trees). The changed paths come
  // first from a walk that never enters a subtree both sides share; libgit2
  // then diffs those paths alone (exact paths, no pattern matching).
  repository::impl::change_map changed;
  if (auto e = impl_->collect(a->get(), b->get(), "", changed)) return e;
  if (changed.empty()) return agentcore::diff{};
  std::vector<char*> paths;
  paths.reserve(changed.size());
  for (auto& [path, c] : changed) paths.push_back(const_cast<char*>(path.c_str()));
  git_diff* d = nullptr;
  git_diff_options o = GIT_DIFF_OPTIONS_INIT;
  o.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH;
  o.pathspec = {paths.data(), paths.size()};
  if (int rc = git_diff_tree_to_tree(&d, impl_->repo.get(), a->get(), b->get(), &o); rc < 0)
    return last_error(rc, "diff trees");
  diff_ptr dp(d);
  if (options.find_renames) {
    git_diff_find_options f = GIT_DIFF_FIND_OPTIONS_INIT;
    f.flags = GIT_DIFF_FIND_RENAMES;
    f.rename_threshold = options.rename_threshold;
    if (int rc = git_diff_find_similar(d, &f); rc < 0) return last_error(rc, "find renames");
  }
  agentcore::diff out;
  odb_ptr odb;  // opened for the first size the check needs
  for (std::size_t i = 0; i < git_diff_num_deltas(d); ++i) {
    git_patch* p = nullptr;
    if (int rc = git_patch_from_diff(&p, d, i); rc < 0) return last_error(rc, "diff a file");
    patch_ptr pp(p);
    const git_diff_delta* delta = git_diff_get_delta(d, i);
    file_change f;
    f.path = delta->new_file.path ? delta->new_file.path : "";
    f.old_mode = delta->old_file.mode;
    f.new_mode = delta->new_file.mode;
    switch (delta->status) {
      case GIT_DELTA_ADDED: f.status = change_status::added; break;
      case GIT_DELTA_DELETED:
        f.status = change_status::deleted;
        f.path = delta->old_file.path;
        break;
      case GIT_DELTA_RENAMED: f.status = change_status::renamed; break;
      case GIT_DELTA_COPIED: f.status = change_status::copied; break;
      case GIT_DELTA_TYPECHANGE: f.status = change_status::type_changed; break;
      default: f.status = change_status::modified; break;
    }
    if (f.status == change_status::renamed || f.status == change_status::copied)
      f.old_path = delta->old_file.path;
    f.binary = (delta->flags & GIT_DIFF_FLAG_BINARY) != 0;
    std::size_t context = 0, adds = 0, dels = 0;
    if (pp && !f.binary) git_patch_line_stats(&context, &adds, &dels, p);
    f.additions = adds;
    f.deletions = dels;
    // What the contract check needs beyond lines: the bytes of new content,
    // and where a link points. A gitlink names a commit of another
    // repository: nothing of it is here to read.
    const git_diff_file& nf = delta->new_file;
    if (f.status != change_status::deleted && nf.mode != GIT_FILEMODE_COMMIT) {
      bool new_content = f.status == change_status::added || f.status == change_status::copied ||
                         !git_oid_equal(&nf.id, &delta->old_file.id);
      if (new_content) {
        if (!odb) {
          git_odb* raw = nullptr;
          if (int rc = git_repository_odb(&raw, impl_->repo.get()); rc < 0) return last_error(rc, "open object database");
          odb.reset(raw);
        }
        std::size_t size = 0;
        git_object_t type = GIT_OBJECT_INVALID;
        if (int rc = git_odb_read_header(&size, &type, odb.get(), &nf.id); rc < 0)
          return last_error(rc, fmt::format("read the size of '{}'", f.path));
        f.added_bytes = size;
      }
      if (nf.mode == GIT_FILEMODE_LINK) {
        auto b = impl_->lookup_blob(from_git(nf.id));
        if (!b) return b.error();
        auto n = std::min<std::size_t>(static_cast<std::size_t>(git_blob_rawsize(b->get())), max_link_target + 1);
        f.link_target.assign(static_cast<const char*>(git_blob_rawcontent(b->get())), n);
      }
    }
    out.files.push_back(std::move(f));
  }
  return out;
}

result<merge_result> repository::merge(const oid& base, const oid& ours, const oid& theirs) {
  return impl_->merge(base, ours, theirs);
}

result<merge_result> repository::revert(const oid& commit, const oid& onto) {
  auto parents = commit_parents(commit);
  if (!parents) return parents.error();
  if (parents->size() != 1)
    return fail(error::invalid_argument, fmt::format("git: revert of {}: it has {} parents; only commits with one "
                                                     "parent can be reverted",
                                                     commit.hex(), parents->size()));
  // Taking a change out is merging its parent onto `onto`, with the change as the base.
  return impl_->merge(commit, onto, parents->front());
}

}  // namespace agentcore::git

// The `gate` area of agentcore-bench: what the merge gate pays to land a
// one-file change on a large repository (merge in memory, write the merge
// commit, move main by compare-and-swap), against git's CLI and libgit2's own
// merge doing the same work, and how that cost grows with the repository.
//
// Every iteration merges a change commit no earlier iteration has seen, so the
// trees and the commit it writes are new objects: a repeated merge would find
// them already in the object database and skip the writes. main is put back
// (untimed) after each iteration, so each one starts from the same main.
// agentcore is handed the base B, as the gate knows each task's base; git
// merge-tree and git_merge_commits find it themselves (one commit back here).
//
// A merge writes a handful of files (a tree or two, the commit, the ref's lock
// file), so where the scratch directory lives matters: on a file system where
// creating a file costs a millisecond, that is most of every figure but
// libgit2's. --dir chooses it.
//
// On the 20,000-file repository the same run also times what surrounds a merge
// in the gate: moving a reused worktree slot between two commits ten files
// apart (against `git worktree add`, which checks out every file), and the
// merge queue itself (memory store, no checks) landing a few hundred one-file
// changes, one at a time and in batches of 16.
#include "harness.hpp"

#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/store/memory_store.hpp>

#include <fcntl.h>
#include <fmt/format.h>
#include <git2.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

extern char** environ;

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;
using git::oid;

const git::signature bench_sig{.name = "agentcore-bench", .email = "bench@agentcore.invalid"};
constexpr const char* main_ref = "refs/heads/main";
constexpr std::size_t top_dirs = 30;
constexpr std::size_t files_per_dir = 20;

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double ms_since(steady::time_point t0) { return seconds_since(t0) * 1000; }

// ---- the repository ---------------------------------------------------------------

// A monorepo-like layout: `leaves` package directories spread over 30
// top-level directories, each package's sources in a `src/` leaf of 20 files:
// "d07/pkg0123/src/f05.txt". Files are four short lines, unique to their path.
std::string file_path(std::size_t leaf, std::size_t file) {
  return fmt::format("d{:02}/pkg{:04}/src/f{:02}.txt", leaf % top_dirs, leaf, file);
}
std::string file_text(const std::string& path) {
  return fmt::format("// {}\n#include \"common.h\"\nint value() {{ return {}; }}\n// end\n", path,
                     std::hash<std::string>{}(path) % 100000);
}

struct edit {
  std::string path;
  std::string text;  ///< the file's new content
};

struct scenario {
  fs::path dir;
  std::size_t files = 0;
  std::size_t leaves = 0;
  oid base;            ///< B: every file
  oid unrelated_blob;  ///< a file no merge reads, for warming a handle up
  oid main;            ///< B + `main_edit`; refs/heads/main points here between iterations
  edit main_edit;
  std::vector<oid> changes;  ///< B + `change_edits[i]`, each used by one iteration only
  std::vector<edit> change_edits;
  std::size_t next = 0;
  double generate_s = 0;

  std::pair<oid, const edit*> take_change() {
    if (next == changes.size())
      throw failure(fmt::format("gate: scenario at '{}' ran out of its {} prepared change commits", dir.string(),
                                changes.size()));
    ++next;
    return {changes[next - 1], &change_edits[next - 1]};
  }
};

// B + one edit, as a commit whose parent is B. `tag` makes the content unique.
oid commit_edit(git::repository& repo, const oid& base, const oid& base_tree, edit& e, std::string_view tag) {
  e.text = file_text(e.path) + fmt::format("// edited: {}\n", tag);
  auto blob = check(repo.write_blob(e.text), "gate: write blob");
  auto tree =
      check(repo.edit_tree(base_tree, {{e.path, git::tree_entry{blob, git::file_mode::blob}}}), "gate: edit tree");
  return check(repo.create_commit(tree, {base}, fmt::format("{}: edit {}", tag, e.path), bench_sig),
               "gate: create commit");
}

// Builds the repository with agentcore's own API: every blob, then the whole
// tree in one edit_tree, then B. Only that much is `generate_s`; main and the
// change commits (one file each) come after.
scenario generate(const fs::path& dir, std::size_t leaves, std::size_t changes) {
  scenario s;
  s.dir = dir;
  s.leaves = leaves;
  s.files = leaves * files_per_dir;
  fs::remove_all(dir);
  auto t0 = steady::now();
  auto repo = check(git::repository::init(dir, false, {.fsync = false}), fmt::format("gate: init '{}'", dir.string()));
  std::map<std::string, std::optional<git::tree_entry>> all;
  for (std::size_t leaf = 0; leaf < leaves; ++leaf)
    for (std::size_t f = 0; f < files_per_dir; ++f) {
      auto path = file_path(leaf, f);
      auto blob = check(repo.write_blob(file_text(path)), "gate: write blob");
      all.emplace(std::move(path), git::tree_entry{blob, git::file_mode::blob});
    }
  auto tree = check(repo.edit_tree(std::nullopt, all), "gate: write the base tree");
  s.unrelated_blob = all.begin()->second->id;
  s.base = check(repo.create_commit(tree, {}, "base", bench_sig), "gate: create base commit");
  s.generate_s = seconds_since(t0);
  // Write back what generation left dirty before anything is timed, so that
  // the merges do not queue behind 100,000 files' writeback.
  auto t_sync = steady::now();
  if (int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    ::syncfs(fd);
    ::close(fd);
  }
  fmt::print(stderr, "  generated {} files in {:.2f} s, synced in {:.2f} s\n", s.files, s.generate_s,
             seconds_since(t_sync));

  // main edits a file a third of the way in; each change edits a file in
  // another package, spread over the top-level directories.
  std::size_t main_leaf = leaves / 3;
  s.main_edit.path = file_path(main_leaf, 7);
  s.main = commit_edit(repo, s.base, tree, s.main_edit, "main");
  check(repo.advance(main_ref, std::nullopt, s.main, "bench: main"), "gate: create refs/heads/main");
  for (std::size_t i = 0; i < changes; ++i) {
    std::size_t leaf = (leaves * 2 / 3 + i * 37) % leaves;
    if (leaf == main_leaf) leaf = (leaf + 1) % leaves;
    edit e{file_path(leaf, 12), {}};
    s.changes.push_back(commit_edit(repo, s.base, tree, e, fmt::format("change {}", i)));
    s.change_edits.push_back(std::move(e));
  }
  return s;
}

// ---- git as processes -------------------------------------------------------------

// The environment git runs with: ours, plus the identity commit-tree needs.
class git_env {
public:
  git_env() {
    const std::vector<std::string> ours = {
        "GIT_AUTHOR_NAME=agentcore-bench", "GIT_AUTHOR_EMAIL=bench@agentcore.invalid",
        "GIT_COMMITTER_NAME=agentcore-bench", "GIT_COMMITTER_EMAIL=bench@agentcore.invalid"};
    for (char** e = environ; *e; ++e) {
      std::string_view kv = *e;
      bool replaced = std::any_of(ours.begin(), ours.end(), [&](const std::string& o) {
        return kv.substr(0, kv.find('=') + 1) == std::string_view(o).substr(0, o.find('=') + 1);
      });
      if (!replaced) strings_.emplace_back(kv);
    }
    strings_.insert(strings_.end(), ours.begin(), ours.end());
    for (auto& s : strings_) ptrs_.push_back(s.data());
    ptrs_.push_back(nullptr);
  }
  char** get() { return ptrs_.data(); }

private:
  std::vector<std::string> strings_;
  std::vector<char*> ptrs_;
};

struct git_output {
  int exit_code = 0;
  std::string out;  ///< stdout; stderr goes to ours
};

// Runs `git -C dir args...` and waits for it.
git_output run_git(git_env& env, const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv_s = {"git", "-C", dir.string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string cmd = fmt::format("git {}", fmt::join(args, " "));

  int fds[2];
  if (::pipe(fds) != 0) throw failure(fmt::format("gate: pipe for '{}': {}", cmd, std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "git", &fa, nullptr, argv.data(), env.get());
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw failure(fmt::format("gate: cannot run '{}': {}; the git CLI comparison needs git (2.38 or later) on PATH",
                              cmd, std::strerror(rc)));
  }
  git_output r;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0)
      r.out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// The first line of a git command's output that must succeed.
std::string git_line(git_env& env, const fs::path& dir, const std::vector<std::string>& args) {
  auto r = run_git(env, dir, args);
  if (r.exit_code != 0)
    throw failure(fmt::format("gate: 'git {}' in '{}' exited with {}; output: {}", fmt::join(args, " "), dir.string(),
                              r.exit_code, r.out));
  return r.out.substr(0, r.out.find('\n'));
}

// ---- libgit2 directly ---------------------------------------------------------------

[[noreturn]] void libgit2_fail(int rc, std::string_view what) {
  const git_error* e = git_error_last();
  throw failure(fmt::format("gate: libgit2: {} failed: {} (code {})", what, e && e->message ? e->message : "?", rc));
}
void lg(int rc, std::string_view what) {
  if (rc < 0) libgit2_fail(rc, what);
}

struct libgit2_init {
  libgit2_init() { git_libgit2_init(); }
  ~libgit2_init() { git_libgit2_shutdown(); }
  libgit2_init(const libgit2_init&) = delete;
  libgit2_init& operator=(const libgit2_init&) = delete;
};

template <class T, void (*Free)(T*)>
struct lg_ptr {
  T* p = nullptr;
  lg_ptr() = default;
  lg_ptr(const lg_ptr&) = delete;
  lg_ptr& operator=(const lg_ptr&) = delete;
  ~lg_ptr() {
    if (p) Free(p);
  }
};

git_oid to_lg(const oid& o) {
  git_oid g;
  std::memcpy(g.id, o.bytes.data(), 20);
  return g;
}
oid from_lg(const git_oid& g) {
  oid o;
  std::memcpy(o.bytes.data(), g.id, 20);
  return o;
}

// What a libgit2 user writes for the same job: git_merge_commits (which finds
// the merge base itself) into an index, the index's trees written to the odb,
// the commit, and the ref moved only if it still points at main.
// Returns the merged tree.
oid libgit2_merge(git_repository* repo, const oid& main, const oid& change, const std::string& message) {
  git_oid ours_id = to_lg(main), theirs_id = to_lg(change);
  lg_ptr<git_commit, git_commit_free> ours, theirs;
  lg(git_commit_lookup(&ours.p, repo, &ours_id), "look up main");
  lg(git_commit_lookup(&theirs.p, repo, &theirs_id), "look up change");
  lg_ptr<git_index, git_index_free> index;
  git_merge_options opts = GIT_MERGE_OPTIONS_INIT;
  lg(git_merge_commits(&index.p, repo, ours.p, theirs.p, &opts), "git_merge_commits");
  if (git_index_has_conflicts(index.p))
    throw failure("gate: libgit2: git_merge_commits found conflicts in a clean merge");
  git_oid tree_id;
  lg(git_index_write_tree_to(&tree_id, index.p, repo), "git_index_write_tree_to");
  lg_ptr<git_tree, git_tree_free> tree;
  lg(git_tree_lookup(&tree.p, repo, &tree_id), "look up the merged tree");
  lg_ptr<git_signature, git_signature_free> sig;
  lg(git_signature_now(&sig.p, bench_sig.name.c_str(), bench_sig.email.c_str()), "signature");
  const git_commit* parents[] = {ours.p, theirs.p};
  git_oid commit_id;
  lg(git_commit_create(&commit_id, repo, nullptr, sig.p, sig.p, nullptr, message.c_str(), tree.p, 2, parents),
     "git_commit_create");
  lg_ptr<git_reference, git_reference_free> ref;
  lg(git_reference_create_matching(&ref.p, repo, main_ref, &commit_id, 1, &ours_id, "gate: merge"),
     "git_reference_create_matching");
  return from_lg(tree_id);
}

// ---- timing -----------------------------------------------------------------------

struct timings {
  double median_ms = 0;
  double first_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
};

timings summarize(const std::vector<double>& ms) {
  return {median_of(ms), ms.front(), *std::min_element(ms.begin(), ms.end()), *std::max_element(ms.begin(), ms.end())};
}

// Each iteration opens its repository afresh (untimed), and warms the handle
// (config, object database, refs) on objects the merge does not read: the
// timed work then starts with libgit2's object cache empty, as in a gate where
// every merge meets a main that has just moved and a base it has not read. In
// one long-lived handle, iterations after the first would find B's and main's
// trees already parsed: on tmpfs that made a merge about a third faster.
void warm_up(git::repository& repo, const scenario& s) {
  check(repo.ref_target(main_ref), "gate: warm up: read refs/heads/main");
  check(repo.read_blob(s.unrelated_blob), "gate: warm up: read a blob");
}

// agentcore's gate path, `iterations` times on fresh change commits.
timings agentcore_merges(scenario& s, int iterations, bool fsync) {
  std::vector<double> ms;
  for (int i = 0; i < iterations; ++i) {
    auto repo = check(git::repository::open(s.dir, {.fsync = fsync}), "gate: open");
    warm_up(repo, s);
    auto [change, e] = s.take_change();
    std::string message = fmt::format("Merge {}", change.hex());
    auto t0 = steady::now();
    auto m = check(repo.merge(s.base, s.main, change), "gate: merge");
    if (!m.clean())
      throw failure(fmt::format("gate: merging {} reported {} conflict(s) in a clean merge, first at '{}'",
                                change.hex(), m.conflicts.size(), m.conflicts.front().path));
    auto c = check(repo.create_commit(*m.tree, {s.main, change}, message, bench_sig), "gate: create merge commit");
    auto r = check(repo.advance(main_ref, s.main, c, "gate: merge"), "gate: advance main");
    ms.push_back(ms_since(t0));
    if (!r.advanced) throw failure("gate: refs/heads/main had moved before the merge commit could advance it");
    check(repo.advance(main_ref, c, s.main, "bench: reset"), "gate: reset main");
  }
  return summarize(ms);
}

// The same job as three git processes, as a script driving git would do it.
timings git_cli_merges(scenario& s, int iterations) {
  git_env env;
  std::vector<double> ms;
  std::string main_hex = s.main.hex();
  for (int i = 0; i < iterations; ++i) {
    auto [change, e] = s.take_change();
    std::string change_hex = change.hex();
    auto t0 = steady::now();
    auto tree = git_line(env, s.dir, {"merge-tree", "--write-tree", "main", change_hex});
    auto commit =
        git_line(env, s.dir, {"commit-tree", tree, "-p", "main", "-p", change_hex, "-m", "Merge " + change_hex});
    git_line(env, s.dir, {"update-ref", "-m", "gate: merge", main_ref, commit, main_hex});
    ms.push_back(ms_since(t0));
    git_line(env, s.dir, {"update-ref", "-m", "bench: reset", main_ref, main_hex, commit});
  }
  return summarize(ms);
}

// libgit2 under the same rules as agentcore_merges: a fresh, warmed handle per
// iteration and no fsync.
timings libgit2_merges(scenario& s, int iterations) {
  std::vector<double> ms;
  for (int i = 0; i < iterations; ++i) {
    lg_ptr<git_repository, git_repository_free> repo;
    lg(git_repository_open(&repo.p, s.dir.c_str()), "open");
    // agentcore's open sets this process-wide switch; set it here rather than
    // inherit whatever the last open chose.
    git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 0);
    git_oid warm = to_lg(s.unrelated_blob), ref_id;
    lg(git_reference_name_to_id(&ref_id, repo.p, main_ref), "warm up: read refs/heads/main");
    lg_ptr<git_blob, git_blob_free> blob;
    lg(git_blob_lookup(&blob.p, repo.p, &warm), "warm up: read a blob");
    auto [change, e] = s.take_change();
    std::string message = "Merge " + change.hex();
    auto t0 = steady::now();
    libgit2_merge(repo.p, s.main, change, message);
    ms.push_back(ms_since(t0));
    git_oid back = to_lg(s.main);
    lg_ptr<git_reference, git_reference_free> ref;
    lg(git_reference_create(&ref.p, repo.p, main_ref, &back, 1, "bench: reset"), "reset main");
  }
  return summarize(ms);
}

// ---- checking the merge ---------------------------------------------------------------

// Once per scenario, untimed: agentcore's merged tree has both edits, and is
// the very tree git merge-tree (and libgit2) make of the same commits.
void verify(scenario& s) {
  auto [change, e] = s.take_change();
  auto repo = check(git::repository::open(s.dir, {.fsync = false}), "gate: open");
  auto m = check(repo.merge(s.base, s.main, change), "gate: merge");
  if (!m.clean())
    throw failure(
        fmt::format("gate: verify: merging {} into main in '{}' reported {} conflict(s), first at '{}'; the "
                    "two commits edit different files and must merge cleanly",
                    change.hex(), s.dir.string(), m.conflicts.size(), m.conflicts.front().path));
  for (const edit* want : {static_cast<const edit*>(&s.main_edit), e}) {
    auto entry = check(repo.entry_at(*m.tree, want->path), "gate: verify: entry_at");
    if (!entry) throw failure(fmt::format("gate: verify: the merged tree {} has no '{}'", m.tree->hex(), want->path));
    auto text = check(repo.read_blob(entry->id), "gate: verify: read_blob");
    if (text != want->text)
      throw failure(fmt::format("gate: verify: '{}' in the merged tree {} has {:?}; expected the edit {:?}", want->path,
                                m.tree->hex(), text, want->text));
  }
  git_env env;
  auto r = run_git(env, s.dir, {"merge-tree", "--write-tree", s.main.hex(), change.hex()});
  std::string git_tree = r.out.substr(0, r.out.find('\n'));
  if (r.exit_code != 0)
    throw failure(
        fmt::format("gate: verify: 'git merge-tree --write-tree {} {}' in '{}' exited with {} (git 2.38 or "
                    "later is needed); output: {}",
                    s.main.hex(), change.hex(), s.dir.string(), r.exit_code, r.out));
  if (git_tree != m.tree->hex())
    throw failure(
        fmt::format("gate: verify: agentcore merged main {} and {} in '{}' to tree {}, but 'git merge-tree "
                    "--write-tree' gives {}: the merge is wrong",
                    s.main.hex(), change.hex(), s.dir.string(), m.tree->hex(), git_tree));
  libgit2_init lib;
  lg_ptr<git_repository, git_repository_free> lrepo;
  lg(git_repository_open(&lrepo.p, s.dir.c_str()), "open");
  git_oid ours_id = to_lg(s.main), theirs_id = to_lg(change);
  lg_ptr<git_commit, git_commit_free> ours, theirs;
  lg(git_commit_lookup(&ours.p, lrepo.p, &ours_id), "look up main");
  lg(git_commit_lookup(&theirs.p, lrepo.p, &theirs_id), "look up change");
  lg_ptr<git_index, git_index_free> index;
  lg(git_merge_commits(&index.p, lrepo.p, ours.p, theirs.p, nullptr), "git_merge_commits");
  git_oid tree_id;
  lg(git_index_write_tree_to(&tree_id, index.p, lrepo.p), "git_index_write_tree_to");
  if (from_lg(tree_id) != *m.tree)
    throw failure(fmt::format("gate: verify: libgit2's git_merge_commits gives tree {} where agentcore and git give {}",
                              from_lg(tree_id).hex(), m.tree->hex()));
  fmt::print(stderr, "  verified {} files: merged tree {} has both edits, equals git merge-tree and libgit2\n", s.files,
             m.tree->hex());
}

// ---- worktree slots ---------------------------------------------------------------

constexpr std::size_t moved_files = 10;

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw failure(fmt::format("gate: cannot read '{}'", file.string()));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Two commits ten files apart, for moving a slot back and forth.
struct slot_commits {
  oid a;                      ///< main's tip (B + main's edit)
  oid b;                      ///< a + `b_edits`
  std::vector<edit> b_edits;  ///< ten files, in ten packages under ten top-level directories
};

// Untimed. Worktrees (the pool's, which libgit2 makes from HEAD, and git's)
// need HEAD on a real branch: refs/heads/main exists since generate(), but
// libgit2's init left HEAD at an unborn refs/heads/master.
slot_commits make_slot_commits(scenario& s, git_env& env) {
  auto repo = check(git::repository::open(s.dir, {.fsync = false}), "gate: open");
  auto tip = check(repo.ref_target(main_ref), "gate: read refs/heads/main");
  if (!tip || *tip != s.main)
    throw failure(fmt::format("gate: worktrees: refs/heads/main in '{}' is at {}, not at main {}", s.dir.string(),
                              tip ? tip->hex() : "(nothing)", s.main.hex()));
  git_line(env, s.dir, {"symbolic-ref", "HEAD", main_ref});
  slot_commits w;
  w.a = s.main;
  auto a_tree = check(repo.commit_tree(w.a), "gate: worktrees: tree of main");
  std::map<std::string, std::optional<git::tree_entry>> changes;
  for (std::size_t i = 0; i < moved_files; ++i) {
    // File 3 of packages a tenth of the repository apart: neither main's edit
    // (file 7) nor the merge changes' (file 12).
    edit e{file_path((i * (s.leaves / moved_files + 1) + 5) % s.leaves, 3), {}};
    e.text = file_text(e.path) + "// worktree: commit b\n";
    auto blob = check(repo.write_blob(e.text), "gate: write blob");
    changes.emplace(e.path, git::tree_entry{blob, git::file_mode::blob});
    w.b_edits.push_back(std::move(e));
  }
  if (changes.size() != moved_files)
    throw failure(fmt::format("gate: worktrees: {} leaves give only {} distinct files to move, not {}", s.leaves,
                              changes.size(), moved_files));
  auto tree = check(repo.edit_tree(a_tree, changes), "gate: edit tree");
  w.b = check(repo.create_commit(tree, {w.a}, "worktree: ten files", bench_sig), "gate: create commit");
  return w;
}

// The files a slot moved must hold what `at` says (b's edits, or a's originals).
void check_slot_files(const fs::path& root, const slot_commits& w, bool at_b) {
  for (const auto& e : w.b_edits) {
    std::string want = at_b ? e.text : file_text(e.path);
    auto got = read_text(root / e.path);
    if (got != want)
      throw failure(fmt::format("gate: worktrees: '{}' in '{}' holds {:?}; commit {} has {:?}", e.path, root.string(),
                                got, at_b ? w.b.hex() : w.a.hex(), want));
  }
}

struct slot_timings {
  double first_checkout_ms = 0;  ///< the first acquire: the slot's one full checkout
  timings prepare;               ///< acquire() of a reused slot, ten files from its last commit
  timings release;               ///< release(): the status scan that cleans the slot
};

// One slot, checked out once, then acquired alternately at b and a: every
// timed acquire moves it across exactly ten files.
slot_timings slot_prepares(const scenario& s, const slot_commits& w, const fs::path& root, int iterations) {
  auto pool = check(git::worktree_pool::open(s.dir, {.root = root, .slots = 1}), "gate: open the worktree pool");
  slot_timings out;
  auto t0 = steady::now();
  auto first = check(pool->acquire(w.a), "gate: worktrees: first acquire");
  out.first_checkout_ms = ms_since(t0);
  check_slot_files(first.path(), w, false);
  first.release();
  std::vector<double> prep, rel;
  for (int i = 0; i < iterations; ++i) {
    bool at_b = i % 2 == 0;
    const oid& target = at_b ? w.b : w.a;
    auto before = pool->stats();
    auto t = steady::now();
    auto wt = check(pool->acquire(target), "gate: worktrees: acquire");
    prep.push_back(ms_since(t));
    auto after = pool->stats();
    if (after.full_checkouts != 1 || after.files_written - before.files_written != moved_files || wt.head() != target)
      throw failure(
          fmt::format("gate: worktrees: acquire({}) made {} full checkout(s) in all and wrote {} file(s), "
                      "and left the slot at {}; expected 1, {} and the commit asked for",
                      target.hex(), after.full_checkouts, after.files_written - before.files_written, wt.head().hex(),
                      moved_files));
    if (i < 2) check_slot_files(wt.path(), w, at_b);
    t = steady::now();
    wt.release();
    rel.push_back(ms_since(t));
  }
  pool.reset();
  fs::remove_all(root);  // its registration goes with the next `git worktree prune`, or with the repository
  out.prepare = summarize(prep);
  out.release = summarize(rel);
  return out;
}

// The peer: a new worktree of the 20,000 files as git makes it, in a fresh
// directory each time; removed and pruned untimed.
timings git_worktree_adds(git_env& env, const scenario& s, const slot_commits& w, const fs::path& scratch,
                          int iterations) {
  std::vector<double> ms;
  for (int i = 0; i < iterations; ++i) {
    auto dir = scratch / fmt::format("git-worktree-{}", i);
    auto t0 = steady::now();
    git_line(env, s.dir, {"worktree", "add", "--quiet", "--detach", dir.string(), w.b.hex()});
    ms.push_back(ms_since(t0));
    if (i == 0) check_slot_files(dir, w, true);
    fs::remove_all(dir);
    git_line(env, s.dir, {"worktree", "prune"});
  }
  return summarize(ms);
}

// ---- the merge queue ----------------------------------------------------------------

// `n` one-file changes, each a commit on main's tip adding a file of its own,
// submitted with no fast checks (so no worktree) to a gate with no deep
// checks, on a memory store: what is timed is run_until_empty(), that is the
// queue's own cost per change (store reads and writes, verdict JSON) on top of
// the in-memory merge, the merge commit and the compare-and-swap of main.
// Returns changes landed per second; verifies every verdict and main's tree.
double queue_merges(const scenario& s, gate::policy mode, std::size_t n, std::string_view tag, const fs::path& root) {
  auto repo = check(git::repository::open(s.dir, {.fsync = false}), "gate: open");
  auto base = check(repo.ref_target(main_ref), "gate: read refs/heads/main");
  if (!base) throw failure(fmt::format("gate: queue: '{}' has no refs/heads/main", s.dir.string()));
  auto base_tree = check(repo.commit_tree(*base), "gate: queue: tree of main");
  std::vector<edit> edits;
  std::vector<gate::change> changes;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t leaf = (i * 37 + 11) % s.leaves;
    edit e{fmt::format("d{:02}/pkg{:04}/src/q-{}-{:04}.txt", leaf % top_dirs, leaf, tag, i), {}};
    e.text = file_text(e.path);
    auto blob = check(repo.write_blob(e.text), "gate: write blob");
    auto tree =
        check(repo.edit_tree(base_tree, {{e.path, git::tree_entry{blob, git::file_mode::blob}}}), "gate: edit tree");
    auto head = check(repo.create_commit(tree, {*base}, fmt::format("{} {}: add {}", tag, i, e.path), bench_sig),
                      "gate: create commit");
    changes.push_back({.id = fmt::format("{}-{:04}", tag, i), .base = *base, .head = head});
    edits.push_back(std::move(e));
  }

  auto mem = store::memory_store::create();
  auto pool = check(git::worktree_pool::open(s.dir, {.root = root, .slots = 2}), "gate: open the worktree pool");
  auto g = check(gate::merge_gate::open(s.dir, *mem, *pool, {.mode = mode, .batch_size = 16, .deep_checks = {}}),
                 "gate: open the merge gate");
  for (const auto& c : changes) {
    auto v = check(g->submit(c), fmt::format("gate: queue: submit '{}'", c.id));
    if (v.kind != gate::verdict_kind::queued)
      throw failure(
          fmt::format("gate: queue: submitting '{}' gave '{}' ({}), not queued", c.id, to_string(v.kind), v.detail));
  }

  auto t0 = steady::now();
  auto made = check(g->run_until_empty(), "gate: queue: run_until_empty");
  double seconds = seconds_since(t0);

  std::size_t merged = 0;
  for (const auto& c : changes) {
    auto v = check(g->verdict(c.id), fmt::format("gate: queue: verdict of '{}'", c.id));
    if (!v) throw failure(fmt::format("gate: queue ({}): change '{}' has no verdict after run_until_empty", tag, c.id));
    if (v->kind != gate::verdict_kind::merged)
      throw failure(fmt::format("gate: queue ({}): change '{}' ended '{}' ({}), not merged", tag, c.id,
                                to_string(v->kind), v->detail));
    ++merged;
  }
  auto tip = check(repo.ref_target(main_ref), "gate: read refs/heads/main");
  auto tip_tree = check(repo.commit_tree(tip.value()), "gate: queue: tree of main");
  for (const auto& e : edits) {
    auto entry = check(repo.entry_at(tip_tree, e.path), "gate: queue: entry_at");
    if (!entry || check(repo.read_blob(entry->id), "gate: queue: read_blob") != e.text)
      throw failure(
          fmt::format("gate: queue ({}): main {} lacks '{}' (or holds other content) after all {} changes "
                      "were reported merged",
                      tag, tip->hex(), e.path, n));
  }
  if (made.size() != n)
    throw failure(
        fmt::format("gate: queue ({}): run_until_empty returned {} verdicts for {} changes", tag, made.size(), n));
  fmt::print(stderr, "  queue ({}): {} changes merged, main {} has all {} files\n", tag, merged, tip->hex(), n);
  g.reset();
  pool.reset();
  fs::remove_all(root);
  return static_cast<double>(n) / seconds;
}

// Removes a scenario's repository now rather than with the scratch directory:
// a --runs 3 run would otherwise keep 360,000 loose objects on disk.
void remove_repo(const scenario& s) {
  auto t0 = steady::now();
  fs::remove_all(s.dir);
  fmt::print(stderr, "  removed '{}' in {:.2f} s\n", s.dir.string(), seconds_since(t0));
}

}  // namespace

std::vector<figure> run_gate(const run_options& o) {
  // --quick: a tenth of the sizes (2,000 and 10,000 files), a few iterations.
  const std::size_t small_leaves = o.quick ? 100 : 1000, large_leaves = o.quick ? 500 : 5000;
  const int iters = o.quick ? 5 : 20, fsync_iters = o.quick ? 3 : 10, peer_iters = o.quick ? 3 : 10;
  const std::size_t queue_changes = o.quick ? 40 : 200;
  const auto at_least = [](double v) { return bound{true, v}; };
  const auto at_most = [](double v) { return bound{false, v}; };
  // Keeps libgit2 initialised between the per-iteration repositories, so
  // that each open does not reload TLS certificates (untimed, but slow). It
  // also means agentcore's first-initialisation default (fsync on) never runs
  // here: every init and open below states its fsync, so none relies on it.
  libgit2_init lib;
  std::vector<figure> out;
  auto phase = steady::now();
  auto progress = [&phase](std::string_view what, double v) {
    fmt::print(stderr, "  {:<34} {:>12.3f}   ({:.1f} s)\n", what, v, seconds_since(phase));
    phase = steady::now();
  };
  auto report = [&](std::string_view what, const timings& t) {
    fmt::print(stderr, "  {:<34} {:>12.3f}   first {:.3f}, min {:.3f}, max {:.3f} ms ({:.1f} s)\n", what, t.median_ms,
               t.first_ms, t.min_ms, t.max_ms, seconds_since(phase));
    phase = steady::now();
  };

  auto small = generate(o.dir / "repo-20k", small_leaves, 1 + iters + fsync_iters + 2 * peer_iters);
  progress(fmt::format("generate_s_20k ({} files)", small.files), small.generate_s);
  verify(small);
  auto ac = agentcore_merges(small, iters, false);
  report("agentcore_merge_ms_20k", ac);
  auto ac_fsync = agentcore_merges(small, fsync_iters, true);
  report("agentcore_merge_ms_20k_fsync", ac_fsync);
  auto cli = git_cli_merges(small, peer_iters);
  report("git_cli_merge_ms_20k", cli);
  auto l2 = libgit2_merges(small, peer_iters);
  report("libgit2_merge_commits_ms_20k", l2);

  // Worktree slots and the queue, on the same 20,000 files. The pool and the
  // gate open the repository with default options, which leave libgit2's
  // process-wide fsync as it is: this open turns it off first (the fsync
  // merges above turned it on), so that index, object and ref writes are not
  // fsynced, like git's defaults (git worktree add does not fsync its index).
  check(git::repository::open(small.dir, {.fsync = false}), "gate: open");
  git_env env;
  auto commits = make_slot_commits(small, env);
  auto slots = slot_prepares(small, commits, o.dir / "slots", iters);
  progress("worktree_first_checkout_ms", slots.first_checkout_ms);
  report("worktree_prepare_ms", slots.prepare);
  report("worktree_release_ms", slots.release);
  auto wt_add = git_worktree_adds(env, small, commits, o.dir, peer_iters);
  report("git_worktree_add_ms", wt_add);
  auto queue_serial = queue_merges(small, gate::policy::serial, queue_changes, "serial", o.dir / "queue-slots");
  progress("queue_merges_per_s", queue_serial);
  auto queue_batch = queue_merges(small, gate::policy::batch, queue_changes, "batch", o.dir / "queue-slots");
  progress("queue_merges_per_s_batch", queue_batch);
  remove_repo(small);

  auto large = generate(o.dir / "repo-100k", large_leaves, 1 + iters);
  progress(fmt::format("generate_s_100k ({} files)", large.files), large.generate_s);
  verify(large);
  auto ac_large = agentcore_merges(large, iters, false);
  report("agentcore_merge_ms_100k", ac_large);
  remove_repo(large);

  out.push_back({"generate_s_20k", small.generate_s, 2, std::nullopt});
  out.push_back({"generate_s_100k", large.generate_s, 2, std::nullopt});
  out.push_back({"agentcore_merge_ms_20k", ac.median_ms, 3, std::nullopt});
  out.push_back({"agentcore_merge_ms_20k_fsync", ac_fsync.median_ms, 3, std::nullopt});
  out.push_back({"agentcore_merge_ms_100k", ac_large.median_ms, 3, std::nullopt});
  out.push_back({"git_cli_merge_ms_20k", cli.median_ms, 2, std::nullopt});
  out.push_back({"libgit2_merge_commits_ms_20k", l2.median_ms, 2, std::nullopt});
  out.push_back({"speedup_vs_git_cli", cli.median_ms / ac.median_ms, 1, at_least(20),
                 std::pair{"git_cli_merge_ms_20k", "agentcore_merge_ms_20k"}});
  out.push_back({"speedup_vs_libgit2_merge_commits", l2.median_ms / ac.median_ms, 1, at_least(50),
                 std::pair{"libgit2_merge_commits_ms_20k", "agentcore_merge_ms_20k"}});
  out.push_back({"size_ratio_100k_vs_20k", ac_large.median_ms / ac.median_ms, 2, at_most(1.5),
                 std::pair{"agentcore_merge_ms_100k", "agentcore_merge_ms_20k"}});
  out.push_back({"worktree_first_checkout_ms", slots.first_checkout_ms, 1, std::nullopt});
  out.push_back({"worktree_prepare_ms", slots.prepare.median_ms, 3, std::nullopt});
  out.push_back({"worktree_release_ms", slots.release.median_ms, 3, std::nullopt});
  out.push_back({"git_worktree_add_ms", wt_add.median_ms, 1, std::nullopt});
  out.push_back({"worktree_prepare_speedup", wt_add.median_ms / slots.prepare.median_ms, 1, at_least(20),
                 std::pair{"git_worktree_add_ms", "worktree_prepare_ms"}});
  out.push_back({"queue_merges_per_s", queue_serial, 0, at_least(500)});
  out.push_back({"queue_merges_per_s_batch", queue_batch, 0, std::nullopt});
  return out;
}

}  // namespace agentcore::bench

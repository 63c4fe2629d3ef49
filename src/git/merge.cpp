// In-memory three-way merge whose cost follows the changes, not the tree.
//
// The common case first: walk base, ours and theirs together; a directory (or
// file) that only one side changed is taken from that side whole, without
// reading it; only directories both sides changed are read, and only files
// both sides changed are merged. That is exact as long as no file both sides
// touched was deleted by either (the only way a rename on one side can meet a
// change on the other) and no path is a file on one side and a directory on
// another. Otherwise, or if anything conflicts, the general merge below runs:
//
// 1. Diff base->ours and base->theirs by walking the three trees together and
//    descending only where subtree ids differ: unchanged directories are never
//    read. The result is two maps of changed file paths.
// 2. Pair deletes with adds on each side (exact id, then content similarity)
//    to find renames, so a rename on one side meets the other side's edit.
// 3. Decide each path changed by either side; merge file contents (libgit2's
//    xdiff file merge) only where both sides changed the same file.
// 4. Apply the decisions to ours' tree, rewriting only the directories on the
//    changed paths.
#include "git/repository_impl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <set>
#include <unordered_map>

namespace agentcore::git {

using namespace detail;

namespace {

using change = repository::impl::change;
using change_map = repository::impl::change_map;

bool is_tree_mode(git_filemode_t m) { return m == GIT_FILEMODE_TREE; }
bool is_file(const tree_entry& e) { return e.mode == file_mode::blob || e.mode == file_mode::blob_executable; }

tree_entry entry_of(const git_tree_entry* e) {
  return {from_git(*git_tree_entry_id(e)), static_cast<file_mode>(git_tree_entry_filemode(e))};
}

// A tree's entries sorted by plain name (git's own order sorts a directory
// as "name/", which would misalign a file and a directory of one name).
using named = std::pair<std::string_view, const git_tree_entry*>;
std::vector<named> sorted_entries(const git_tree* t) {
  std::vector<named> v;
  if (!t) return v;
  std::size_t n = git_tree_entrycount(t);
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto* e = git_tree_entry_byindex(t, i);
    v.emplace_back(git_tree_entry_name(e), e);
  }
  std::sort(v.begin(), v.end(), [](const named& l, const named& r) { return l.first < r.first; });
  return v;
}

bool same_entry(const git_tree_entry* x, const git_tree_entry* y) {
  if (!x || !y) return !x && !y;
  return git_oid_equal(git_tree_entry_id(x), git_tree_entry_id(y)) &&
         git_tree_entry_filemode(x) == git_tree_entry_filemode(y);
}

std::string first_segment(const std::string& path, std::string& rest) {
  auto slash = path.find('/');
  if (slash == std::string::npos) {
    rest.clear();
    return path;
  }
  rest = path.substr(slash + 1);
  return path.substr(0, slash);
}

}  // namespace

result<commit_ptr> repository::impl::lookup_commit(const oid& id) {
  git_commit* c = nullptr;
  git_oid g = to_git(id);
  if (int rc = git_commit_lookup(&c, repo.get(), &g); rc < 0) return last_error(rc, fmt::format("read commit {}", id.hex()));
  remember(id);
  return commit_ptr(c);
}

result<tree_ptr> repository::impl::lookup_tree(const oid& id) {
  git_tree* t = nullptr;
  git_oid g = to_git(id);
  if (int rc = git_tree_lookup(&t, repo.get(), &g); rc < 0) return last_error(rc, fmt::format("read tree {}", id.hex()));
  remember(id);
  return tree_ptr(t);
}

result<blob_ptr> repository::impl::lookup_blob(const oid& id) {
  git_blob* b = nullptr;
  git_oid g = to_git(id);
  if (int rc = git_blob_lookup(&b, repo.get(), &g); rc < 0) return last_error(rc, fmt::format("read blob {}", id.hex()));
  return blob_ptr(b);
}

result<tree_ptr> repository::impl::peel_tree(const oid& id) {
  git_object* o = nullptr;
  git_oid g = to_git(id);
  if (int rc = git_object_lookup(&o, repo.get(), &g, GIT_OBJECT_ANY); rc < 0)
    return last_error(rc, fmt::format("read object {}", id.hex()));
  object_ptr obj(o);
  git_object* t = nullptr;
  if (int rc = git_object_peel(&t, obj.get(), GIT_OBJECT_TREE); rc < 0)
    return last_error(rc, fmt::format("{} is neither a commit nor a tree", id.hex()));
  remember(id);
  remember(from_git(*git_object_id(t)));
  return tree_ptr(reinterpret_cast<git_tree*>(t));
}

result<oid> repository::impl::write_object(git_object_t type, std::string_view data) {
  if (!writer.is_open())
    if (auto e = writer.open(std::filesystem::path(git_repository_commondir(repo.get())) / "objects")) return e;
  // Written only if the repository lacks it: the object's id is looked up
  // first (the packs as they are known, without a rescan).
  git_odb* raw_odb = nullptr;
  if (int rc = git_repository_odb(&raw_odb, repo.get()); rc < 0) return last_error(rc, "open the object database");
  odb_ptr odb(raw_odb);
  auto present = [&](const oid& id) {
    if (known.contains(id)) return true;
    git_oid g = to_git(id);
    return git_odb_exists_ext(odb.get(), &g, GIT_ODB_LOOKUP_NO_REFRESH) == 1;
  };
  auto id = writer.write(type, data, options.fsync.value_or(detail::fsync_default()), present);
  if (id) remember(*id);
  return id;
}

result<oid> repository::impl::write_tree(git_treebuilder* builder, std::string_view what) {
  std::vector<detail::raw_entry> entries;
  entries.reserve(git_treebuilder_entrycount(builder));
  git_treebuilder_filter(
      builder,
      [](const git_tree_entry* e, void* payload) -> int {
        static_cast<std::vector<detail::raw_entry>*>(payload)->push_back(
            {git_tree_entry_name(e), from_git(*git_tree_entry_id(e)), static_cast<unsigned>(git_tree_entry_filemode(e))});
        return 0;  // keep it: this only lists the entries
      },
      &entries);
  auto id = write_object(GIT_OBJECT_TREE, detail::serialize_tree(std::move(entries)));
  if (!id) return error_info(id.error().code(), fmt::format("{} (writing tree '{}')", id.error().message(), what));
  return id;
}

result<oid> repository::impl::write_blob(std::string_view content) { return write_object(GIT_OBJECT_BLOB, content); }

result<oid> repository::impl::empty_tree() {
  git_treebuilder* b = nullptr;
  if (int rc = git_treebuilder_new(&b, repo.get(), nullptr); rc < 0) return last_error(rc, "new tree");
  builder_ptr bp(b);
  return write_tree(b, "/");
}

result<std::optional<oid>> repository::impl::rebuild(std::optional<oid> tree,
                                                     const std::map<std::string, std::optional<tree_entry>>& changes,
                                                     std::vector<merge_conflict>& conflicts, const std::string& prefix,
                                                     const reuse_map* reuse) {
  tree_ptr t;
  if (tree) {
    auto r = lookup_tree(*tree);
    if (!r) return r.error();
    t = std::move(*r);
  }
  git_treebuilder* raw = nullptr;
  if (int rc = git_treebuilder_new(&raw, repo.get(), t.get()); rc < 0) return last_error(rc, "new tree");
  builder_ptr b(raw);

  struct group {
    bool has_direct = false;
    std::optional<tree_entry> direct;  // nullopt with has_direct: delete
    std::map<std::string, std::optional<tree_entry>> nested;
  };
  std::map<std::string, group> groups;
  for (const auto& [path, value] : changes) {
    std::string rest;
    std::string name = first_segment(path, rest);
    auto& g = groups[name];
    if (rest.empty()) {
      g.has_direct = true;
      g.direct = value;
    } else {
      g.nested.emplace(std::move(rest), value);
    }
  }
  for (auto& [name, g] : groups) {
    std::string full = prefix + name;
    const git_tree_entry* existing = git_treebuilder_get(b.get(), name.c_str());
    bool existing_tree = existing && is_tree_mode(git_tree_entry_filemode(existing));
    bool existing_file = existing && !existing_tree;
    bool direct_file = g.has_direct && g.direct.has_value();
    auto insert = [&](const oid& id, git_filemode_t mode) -> error_info {
      git_oid gid = to_git(id);
      if (int rc = git_treebuilder_insert(nullptr, b.get(), name.c_str(), &gid, mode); rc < 0)
        return last_error(rc, fmt::format("put '{}' in a tree", full));
      return {};
    };
    auto remove = [&]() -> error_info {
      if (!git_treebuilder_get(b.get(), name.c_str())) return {};
      if (int rc = git_treebuilder_remove(b.get(), name.c_str()); rc < 0)
        return last_error(rc, fmt::format("remove '{}' from a tree", full));
      return {};
    };
    if (!g.nested.empty()) {
      if (existing_file && !(g.has_direct && !g.direct)) {
        conflicts.push_back({full, conflict_kind::directory_file,
                             fmt::format("'{}' is a file on one side and a directory on the other", full)});
        continue;
      }
      if (reuse && !direct_file) {
        if (auto known = reuse->find(full + "/"); known != reuse->end()) {
          if (auto e = known->second ? insert(*known->second, GIT_FILEMODE_TREE) : remove()) return e;
          continue;
        }
      }
      std::optional<oid> sub;
      if (existing_tree) sub = from_git(*git_tree_entry_id(existing));
      auto child = rebuild(sub, g.nested, conflicts, full + "/", reuse);
      if (!child) return child.error();
      if (direct_file) {
        if (*child) {
          conflicts.push_back({full, conflict_kind::directory_file,
                               fmt::format("'{}' is a file on one side and a directory on the other", full)});
          continue;
        }
        if (auto e = insert(g.direct->id, static_cast<git_filemode_t>(g.direct->mode))) return e;
      } else if (*child) {
        if (auto e = insert(**child, GIT_FILEMODE_TREE)) return e;
      } else {
        if (auto e = remove()) return e;
      }
    } else if (direct_file) {
      if (existing_tree && g.direct->mode != file_mode::tree) {
        conflicts.push_back({full, conflict_kind::directory_file,
                             fmt::format("'{}' is a directory on one side and a file on the other", full)});
        continue;
      }
      if (auto e = insert(g.direct->id, static_cast<git_filemode_t>(g.direct->mode))) return e;
    } else {
      if (auto e = remove()) return e;
    }
  }
  if (git_treebuilder_entrycount(b.get()) == 0) return std::optional<oid>();
  auto out = write_tree(b.get(), prefix.empty() ? "/" : prefix);
  if (!out) return out.error();
  return std::optional<oid>(*out);
}

namespace {

class merger {
public:
  explicit merger(repository::impl& r) : r_(r) {}

  // Step 2: renames on one side: old path -> new path, by git's rules
  // (diffcore-rename as merge-ort drives it):
  // - empty files are never paired (git: rename_empty is off for merges);
  // - identical contents first, a link only with a link, a file with a file,
  //   the same basename preferred;
  // - then, for sources the other side touched (a rename no change of the
  //   other side meets makes no difference to the merge), regular files only,
  //   by git's measure of similarity (chunks of up to 64 bytes ending at a
  //   newline, CR of CRLF ignored in text): first the basename pass (below),
  //   then the best pairs at least 50% similar, within git's merge rename
  //   limit (7000).
  result<std::map<std::string, std::string>> renames(const change_map& side, const change_map& other,
                                                     const git_tree* side_tree) {
    static const oid empty_blob = oid::from_hex("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391").value();
    auto candidate = [&](const std::optional<tree_entry>& e) {
      return e && (is_file(*e) || e->mode == file_mode::link) && e->id != empty_blob;
    };
    std::vector<const change_map::value_type*> sources, dests;
    for (const auto& kv : side) {
      if (candidate(kv.second.before) && !kv.second.after) sources.push_back(&kv);
      if (!kv.second.before && candidate(kv.second.after)) dests.push_back(&kv);
    }
    std::map<std::string, std::string> out;
    if (sources.empty() || dests.empty()) return out;
    auto is_link = [](const tree_entry& e) { return e.mode == file_mode::link; };
    std::vector<bool> src_used(sources.size()), dst_used(dests.size());
    // Identical contents.
    std::multimap<oid, std::size_t> by_id;
    for (std::size_t i = 0; i < sources.size(); ++i) by_id.emplace(sources[i]->second.before->id, i);
    for (std::size_t d = 0; d < dests.size(); ++d) {
      const auto& after = *dests[d]->second.after;
      auto [lo, hi] = by_id.equal_range(after.id);
      std::optional<std::size_t> best;
      for (auto it = lo; it != hi; ++it) {
        std::size_t i = it->second;
        if (src_used[i] || is_link(*sources[i]->second.before) != is_link(after)) continue;
        if (!best || (basename_of(sources[i]->first) == basename_of(dests[d]->first) &&
                      basename_of(sources[*best]->first) != basename_of(dests[d]->first)))
          best = i;
      }
      if (!best) continue;
      src_used[*best] = dst_used[d] = true;
      out[sources[*best]->first] = dests[d]->first;
    }
    if (auto e = basename_matches(sources, dests, src_used, dst_used, other, side_tree, out)) return e;
    // Similar contents: relevant regular files only.
    std::vector<std::size_t> srcs, dsts;
    for (std::size_t i = 0; i < sources.size(); ++i)
      if (!src_used[i] && is_file(*sources[i]->second.before) && other.contains(sources[i]->first)) srcs.push_back(i);
    for (std::size_t d = 0; d < dests.size(); ++d)
      if (!dst_used[d] && is_file(*dests[d]->second.after)) dsts.push_back(d);
    constexpr std::uint64_t rename_limit = 7000;
    if (srcs.empty() || dsts.empty() || static_cast<std::uint64_t>(srcs.size()) * dsts.size() > rename_limit * rename_limit)
      return out;
    struct scored {
      int score;
      bool same_name;
      std::size_t dst, src;
    };
    std::vector<scored> pairs;
    for (std::size_t d : dsts) {
      std::vector<scored> mine;  // git keeps the best four sources of each destination
      for (std::size_t i : srcs) {
        auto sc = rename_score(sources[i]->second.before->id, dests[d]->second.after->id);
        if (!sc) return sc.error();
        if (*sc < min_rename_score) continue;
        mine.push_back({*sc, basename_of(sources[i]->first) == basename_of(dests[d]->first), d, i});
      }
      std::sort(mine.begin(), mine.end(), [](const scored& a, const scored& b) {
        return std::tie(b.score, b.same_name, a.src) < std::tie(a.score, a.same_name, b.src);
      });
      if (mine.size() > 4) mine.resize(4);
      pairs.insert(pairs.end(), mine.begin(), mine.end());
    }
    std::sort(pairs.begin(), pairs.end(), [](const scored& a, const scored& b) {
      return std::tie(b.score, b.same_name, a.dst, a.src) < std::tie(a.score, a.same_name, b.dst, b.src);
    });
    for (const auto& p : pairs) {
      if (src_used[p.src] || dst_used[p.dst]) continue;
      src_used[p.src] = dst_used[p.dst] = true;
      out[sources[p.src]->first] = dests[p.dst]->first;
    }
    return out;
  }

  using entries = std::vector<const change_map::value_type*>;
  static std::string_view basename_of(std::string_view p) { return p.substr(p.rfind('/') + 1); }
  static std::string_view dirname_of(std::string_view p) {
    auto slash = p.rfind('/');
    return slash == std::string_view::npos ? std::string_view() : p.substr(0, slash);
  }

  // git's hint for a basename that is not unique (diffcore-rename's
  // dir_rename_guess): for each directory this side removed, the directory
  // most of its exactly renamed files went to (a tie: the first by name).
  static std::map<std::string, std::string, std::less<>> rename_guesses(const std::map<std::string, std::string>& exact,
                                                                       const git_tree* side) {
    std::map<std::string, std::map<std::string, int>, std::less<>> counts;
    std::map<std::string, bool, std::less<>> removed;
    for (const auto& [from, to] : exact) {
      auto dir = dirname_of(from);
      if (dir.empty()) continue;
      auto known = removed.find(dir);
      if (known == removed.end()) {
        git_tree_entry* kept = nullptr;
        bool gone = !side || git_tree_entry_bypath(&kept, side, std::string(dir).c_str()) != 0;
        if (kept) git_tree_entry_free(kept);
        known = removed.emplace(std::string(dir), gone).first;
      }
      if (known->second) ++counts[std::string(dir)][std::string(dirname_of(to))];
    }
    std::map<std::string, std::string, std::less<>> out;
    for (const auto& [dir, to] : counts) {
      auto best = std::max_element(to.begin(), to.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
      out.emplace(dir, best->first);
    }
    return out;
  }

  // git's basename pass (diffcore-rename's find_basename_matches), between
  // the exact renames and the matrix: a source the other side touched is
  // paired with the destination of its basename when that basename is unique
  // among the remaining sources (all of them, touched or not) and among the
  // remaining destinations, or else with the file of its basename in the
  // directory rename_guesses() names for its own, if they are at least 75%
  // similar; such a pair is made before, and so instead of, a better-scored
  // one of another name.
  error_info basename_matches(const entries& sources, const entries& dests, std::vector<bool>& src_used,
                              std::vector<bool>& dst_used, const change_map& other, const git_tree* side,
                              std::map<std::string, std::string>& out) {
    constexpr int min_basename_score = min_rename_score + (max_rename_score - min_rename_score) / 2;
    constexpr std::ptrdiff_t shared = -1;  // the basename is not unique
    std::unordered_map<std::string_view, std::ptrdiff_t> src_base, dst_base;
    std::unordered_map<std::string_view, std::size_t> dst_at;
    auto note = [](auto& by_base, std::string_view base, std::size_t i) {
      auto [it, fresh] = by_base.try_emplace(base, static_cast<std::ptrdiff_t>(i));
      if (!fresh) it->second = shared;
    };
    for (std::size_t i = 0; i < sources.size(); ++i)
      if (!src_used[i]) note(src_base, basename_of(sources[i]->first), i);
    for (std::size_t d = 0; d < dests.size(); ++d)
      if (!dst_used[d]) {
        note(dst_base, basename_of(dests[d]->first), d);
        dst_at.emplace(dests[d]->first, d);
      }
    const auto guesses = rename_guesses(out, side);
    for (std::size_t i = 0; i < sources.size(); ++i) {
      if (src_used[i] || !other.contains(sources[i]->first)) continue;
      auto base = basename_of(sources[i]->first);
      auto named = dst_base.find(base);
      if (named == dst_base.end()) continue;
      std::ptrdiff_t d = named->second;
      if (d == shared || src_base[base] == shared) {
        d = shared;
        if (auto g = guesses.find(dirname_of(sources[i]->first)); g != guesses.end())
          if (auto at = dst_at.find(g->second + "/" + std::string(base)); at != dst_at.end())
            d = static_cast<std::ptrdiff_t>(at->second);
      }
      if (d == shared || dst_used[d]) continue;
      const auto& from = *sources[i]->second.before;
      const auto& to = *dests[d]->second.after;
      if (!is_file(from) || !is_file(to)) continue;  // git scores other kinds 0
      auto sc = rename_score(from.id, to.id);
      if (!sc) return sc.error();
      if (*sc < min_basename_score) continue;
      src_used[i] = dst_used[d] = true;
      out[sources[i]->first] = dests[d]->first;
    }
    return {};
  }

  // Directories one side renamed (git's directory-rename detection): a
  // directory counts as renamed to where most of its files went, when that
  // side kept nothing of it. old dir -> new dir ("" never: the top).
  std::map<std::string, std::string> directory_renames(const std::map<std::string, std::string>& renamed,
                                                       const git_tree* side) {
    std::map<std::string, std::map<std::string, int>> votes;
    for (const auto& [from, to] : renamed) {
      auto fs = from.rfind('/'), ts = to.rfind('/');
      if (fs == std::string::npos || ts == std::string::npos) continue;
      std::string_view a = std::string_view(from).substr(0, fs), b = std::string_view(to).substr(0, ts);
      // Strip the trailing directories both paths share.
      while (!a.empty() && !b.empty()) {
        auto as = a.rfind('/'), bs = b.rfind('/');
        auto an = as == std::string_view::npos ? a : a.substr(as + 1);
        auto bn = bs == std::string_view::npos ? b : b.substr(bs + 1);
        if (an != bn || as == std::string_view::npos || bs == std::string_view::npos) break;
        a = a.substr(0, as);
        b = b.substr(0, bs);
      }
      if (a.empty() || b.empty() || a == b) continue;
      ++votes[std::string(a)][std::string(b)];
    }
    std::map<std::string, std::string> out;
    for (const auto& [dir, to] : votes) {
      git_tree_entry* kept = nullptr;
      if (side && git_tree_entry_bypath(&kept, side, dir.c_str()) == 0) {
        git_tree_entry_free(kept);
        continue;  // the side kept something of it: not renamed
      }
      int best = 0;
      bool tie = false;
      std::string where;
      for (const auto& [d, n] : to) {
        if (n > best) {
          best = n;
          where = d;
          tie = false;
        } else if (n == best) {
          tie = true;
        }
      }
      if (!tie) out[dir] = where;
    }
    return out;
  }

  // Where git's directory-rename rule moves a path the other side made new:
  // into the renamed directory, when its own directory was there in base
  // (a directory new on that side is left where it is) and it or a parent
  // is one the other side renamed. nullopt: it stays.
  static std::optional<std::string> relocated(const std::string& path, const std::map<std::string, std::string>& dir_renames,
                                              const git_tree* base) {
    if (dir_renames.empty()) return std::nullopt;
    auto parent = path.rfind('/');
    if (parent == std::string::npos) return std::nullopt;
    git_tree_entry* there = nullptr;
    if (!base || git_tree_entry_bypath(&there, base, path.substr(0, parent).c_str()) != 0) return std::nullopt;
    bool is_dir = git_tree_entry_type(there) == GIT_OBJECT_TREE;
    git_tree_entry_free(there);
    if (!is_dir) return std::nullopt;
    for (auto cut = parent; cut != std::string::npos && cut > 0; cut = path.rfind('/', cut - 1)) {
      auto it = dir_renames.find(path.substr(0, cut));
      if (it != dir_renames.end()) return it->second + path.substr(cut);
    }
    return std::nullopt;
  }

  // A path the other side made new (added, or a rename's destination) that
  // git would move into a directory this side renamed: git calls it a
  // conflict (its default, merge.directoryRenames=conflict), at the path it
  // suggests.
  static void directory_rename_conflicts(const std::map<std::string, std::string>& dir_renames, const change_map& other,
                                         const git_tree* base, std::vector<merge_conflict>& conflicts) {
    if (dir_renames.empty()) return;
    for (const auto& [path, c] : other) {
      if (c.before || !c.after) continue;
      auto moved = relocated(path, dir_renames, base);
      if (!moved) continue;
      conflicts.push_back({*moved, conflict_kind::rename,
                           fmt::format("'{}' was made inside a directory the other side renamed: it perhaps belongs "
                                       "at '{}'",
                                       path, *moved)});
    }
  }

  // Step 3: a file both sides changed. nullopt with no conflict added: deleted.
  result<std::optional<tree_entry>> merge_file(const std::string& path, const std::optional<tree_entry>& base,
                                               const tree_entry& ours, const tree_entry& theirs, conflict_kind kind,
                                               std::vector<merge_conflict>& conflicts) {
    // Modes: take the side that changed it; both changed it differently is a conflict.
    file_mode mode = ours.mode;
    if (ours.mode != theirs.mode) {
      if (base && base->mode == ours.mode) mode = theirs.mode;
      else if (base && base->mode == theirs.mode) mode = ours.mode;
      else if (is_file(ours) && is_file(theirs) && !base) mode = ours.mode == theirs.mode ? ours.mode : file_mode::blob;
      else {
        conflicts.push_back({path, conflict_kind::mode, "both sides changed the file mode differently"});
        return std::optional<tree_entry>();
      }
      if (!base && ours.mode != theirs.mode) {
        conflicts.push_back({path, kind, "both sides added the path with different modes"});
        return std::optional<tree_entry>();
      }
    }
    if (ours.id == theirs.id) return std::optional<tree_entry>(tree_entry{ours.id, mode});
    if (base && base->id == ours.id) return std::optional<tree_entry>(tree_entry{theirs.id, mode});
    if (base && base->id == theirs.id) return std::optional<tree_entry>(tree_entry{ours.id, mode});
    if (!is_file(ours) || !is_file(theirs) || (base && !is_file(*base))) {
      conflicts.push_back({path, kind, "both sides changed a link or submodule differently"});
      return std::optional<tree_entry>();
    }
    std::string base_text;
    if (base) {
      auto b = content(base->id);
      if (!b) return b.error();
      base_text = std::move(*b);
    }
    auto o = content(ours.id);
    if (!o) return o.error();
    auto t = content(theirs.id);
    if (!t) return t.error();
    git_merge_file_input in_base = GIT_MERGE_FILE_INPUT_INIT, in_ours = GIT_MERGE_FILE_INPUT_INIT,
                         in_theirs = GIT_MERGE_FILE_INPUT_INIT;
    in_base.ptr = base_text.data();
    in_base.size = base_text.size();
    in_base.path = path.c_str();
    in_ours.ptr = o->data();
    in_ours.size = o->size();
    in_ours.path = path.c_str();
    in_ours.mode = static_cast<unsigned>(ours.mode);
    in_theirs.ptr = t->data();
    in_theirs.size = t->size();
    in_theirs.path = path.c_str();
    in_theirs.mode = static_cast<unsigned>(theirs.mode);
    git_merge_file_result res{};
    git_merge_file_options opts = GIT_MERGE_FILE_OPTIONS_INIT;
    if (int rc = git_merge_file(&res, base ? &in_base : nullptr, &in_ours, &in_theirs, &opts); rc < 0)
      return last_error(rc, fmt::format("merge '{}'", path));
    bool clean = res.automergeable != 0;
    std::string merged = clean ? std::string(res.ptr, res.len) : std::string();
    git_merge_file_result_free(&res);
    if (!clean) {
      conflicts.push_back({path, kind,
                           kind == conflict_kind::add_add ? "both sides added the path with different contents"
                                                          : "both sides changed the same lines"});
      return std::optional<tree_entry>();
    }
    auto id = r_.write_blob(merged);
    if (!id) return id.error();
    return std::optional<tree_entry>(tree_entry{*id, mode});
  }

  result<merge_result> run(const oid& base_id, const oid& ours_id, const oid& theirs_id) {
    auto bt = r_.peel_tree(base_id);
    if (!bt) return bt.error();
    auto ot = r_.peel_tree(ours_id);
    if (!ot) return ot.error();
    auto tt = r_.peel_tree(theirs_id);
    if (!tt) return tt.error();
    oid b = from_git(*git_tree_id(bt->get())), o = from_git(*git_tree_id(ot->get())),
        t = from_git(*git_tree_id(tt->get()));
    merge_result out;
    if (o == t || b == t) {
      out.tree = o;
      return out;
    }
    if (b == o) {
      out.tree = t;
      return out;
    }
    {
      std::vector<merge_conflict> ignored;
      auto fast = trivial(bt->get(), ot->get(), tt->get(), "", ignored);
      if (!fast) return fast.error();
      if (fast->exact) {
        if (fast->tree) out.tree = *fast->tree;
        else {
          auto e = r_.empty_tree();
          if (!e) return e.error();
          out.tree = *e;
        }
        return out;
      }
    }
    change_map O, T;
    repository::impl::dir_map O_dirs, T_dirs;
    if (auto e = r_.collect(bt->get(), ot->get(), "", O, &O_dirs)) return e;
    if (auto e = r_.collect(bt->get(), tt->get(), "", T, &T_dirs)) return e;
    auto rn_o = renames(O, T, ot->get());
    if (!rn_o) return rn_o.error();
    auto rn_t = renames(T, O, tt->get());
    if (!rn_t) return rn_t.error();

    std::map<std::string, std::optional<tree_entry>> result;  // changes to ours' tree
    std::set<std::string> done_o, done_t;                     // paths whose change a rename consumed
    auto& conflicts = out.conflicts;
    auto dirs_o = directory_renames(*rn_o, ot->get()), dirs_t = directory_renames(*rn_t, tt->get());
    directory_rename_conflicts(dirs_o, T, bt->get(), conflicts);
    directory_rename_conflicts(dirs_t, O, bt->get(), conflicts);
    // A path as git names it in a conflict: moved by the other side's directory renames.
    auto named = [&](const std::string& path, const std::map<std::string, std::string>& other_dirs) {
      return relocated(path, other_dirs, bt->get()).value_or(path);
    };

    // Renames on ours: a -> nb. Theirs' change at a follows the file to nb.
    for (const auto& [a, nb] : *rn_o) {
      auto it = T.find(a);
      if (it == T.end()) continue;  // theirs left a alone: ours' delete + add stand
      done_t.insert(a);
      const change& ta = it->second;
      auto rt = rn_t->find(a);
      if (rt != rn_t->end()) {  // both renamed a
        done_t.insert(rt->second);
        if (rt->second != nb) {
          conflicts.push_back({a, conflict_kind::rename,
                               fmt::format("'{}' was renamed differently on each side: '{}' and '{}'", a, nb, rt->second)});
          conflicts.push_back({named(nb, dirs_t), conflict_kind::rename,
                               fmt::format("'{}' was renamed to '{}' on one side and to '{}' on the other", a, nb,
                                           rt->second)});
          conflicts.push_back({named(rt->second, dirs_o), conflict_kind::rename,
                               fmt::format("'{}' was renamed to '{}' on one side and to '{}' on the other", a,
                                           rt->second, nb)});
          continue;
        }
        auto m = merge_file(nb, ta.before, *O[nb].after, *T[nb].after, conflict_kind::content, conflicts);
        if (!m) return m.error();
        if (*m && !(**m == *O[nb].after)) result[nb] = *m;
        continue;
      }
      if (!ta.after) {
        conflicts.push_back({nb, conflict_kind::rename, fmt::format("'{}' was renamed to '{}' on one side and deleted on "
                                                                    "the other", a, nb)});
        continue;
      }
      if (T.contains(nb) && !done_t.contains(nb)) {
        done_t.insert(nb);
        conflicts.push_back({nb, conflict_kind::rename, fmt::format("'{}' was renamed to '{}' on one side; the other "
                                                                    "added '{}'", a, nb, nb)});
        continue;
      }
      auto m = merge_file(nb, ta.before, *O[nb].after, *ta.after, conflict_kind::content, conflicts);
      if (!m) return m.error();
      if (*m && !(**m == *O[nb].after)) result[nb] = *m;
    }
    // Renames on theirs: a -> nb. Ours' change at a follows the file to nb.
    for (const auto& [a, nb] : *rn_t) {
      if (done_t.contains(a)) continue;  // handled with ours' renames
      auto it = O.find(a);
      if (it == O.end()) continue;  // ours left a alone: theirs' delete + add apply below
      done_t.insert(a);
      done_t.insert(nb);
      done_o.insert(a);
      const change& oa = it->second;
      if (!oa.after) {
        conflicts.push_back({nb, conflict_kind::rename, fmt::format("'{}' was renamed to '{}' on one side and deleted on "
                                                                    "the other", a, nb)});
        continue;
      }
      if (O.contains(nb)) {
        done_o.insert(nb);
        conflicts.push_back({nb, conflict_kind::rename, fmt::format("'{}' was renamed to '{}' on one side; the other "
                                                                    "added '{}'", a, nb, nb)});
        continue;
      }
      auto m = merge_file(nb, oa.before, *oa.after, *T[nb].after, conflict_kind::content, conflicts);
      if (!m) return m.error();
      result[a] = std::nullopt;
      if (*m) result[nb] = *m;
    }
    // Every other path theirs changed.
    for (const auto& [p, tc] : T) {
      if (done_t.contains(p)) continue;
      auto it = O.find(p);
      if (it == O.end() || done_o.contains(p)) {
        result[p] = tc.after;  // ours has base's version here: take theirs'
        continue;
      }
      const change& oc = it->second;
      if (oc.after == tc.after) continue;  // the same change on both sides
      if (oc.after && tc.after) {
        auto m = merge_file(p, tc.before, *oc.after, *tc.after,
                            tc.before ? conflict_kind::content : conflict_kind::add_add, conflicts);
        if (!m) return m.error();
        if (*m && !(**m == *oc.after)) result[p] = *m;
      } else {
        conflicts.push_back({p, conflict_kind::modify_delete,
                             oc.after ? "changed on one side, deleted on the other (ours changed it)"
                                      : "changed on one side, deleted on the other (theirs changed it)"});
      }
    }
    if (conflicts.empty()) {
      auto reuse = reusable(O_dirs, T_dirs, T, result);
      auto tree = r_.rebuild(o, result, conflicts, {}, &reuse);
      if (!tree) return tree.error();
      if (conflicts.empty()) {
        if (*tree) out.tree = **tree;
        else {
          auto e = r_.empty_tree();
          if (!e) return e.error();
          out.tree = *e;
        }
      }
    }
    std::sort(conflicts.begin(), conflicts.end(), [](const auto& x, const auto& y) { return x.path < y.path; });
    conflicts.erase(std::unique(conflicts.begin(), conflicts.end(),
                                [](const auto& x, const auto& y) { return x.path == y.path; }),
                    conflicts.end());
    if (!conflicts.empty()) out.tree.reset();
    return out;
  }

private:
  struct walked {
    bool exact = false;        ///< false: the general merge must decide
    std::optional<oid> tree;  ///< the merged directory; nullopt: empty
  };

  // The common case (see the top of the file): one directory of the three
  // trees. Not exact at the first deletion of a file both sides touched, the
  // first file/directory mix, or the first conflict.
  result<walked> trivial(const git_tree* b, const git_tree* o, const git_tree* t, const std::string& prefix,
                         std::vector<merge_conflict>& conflicts) {
    auto eb = sorted_entries(b), eo = sorted_entries(o), et = sorted_entries(t);
    std::size_t ib = 0, io = 0, it = 0;
    builder_ptr builder;  // made from ours' directory at the first change to it
    auto edit = [&](const std::string& name, const std::optional<tree_entry>& entry) -> error_info {
      if (!builder) {
        git_treebuilder* raw = nullptr;
        if (int rc = git_treebuilder_new(&raw, r_.repo.get(), o); rc < 0) return last_error(rc, "new tree");
        builder.reset(raw);
      }
      if (!entry) {
        if (git_treebuilder_get(builder.get(), name.c_str()))
          if (int rc = git_treebuilder_remove(builder.get(), name.c_str()); rc < 0)
            return last_error(rc, fmt::format("remove '{}{}' from a tree", prefix, name));
        return {};
      }
      git_oid gid = to_git(entry->id);
      if (int rc = git_treebuilder_insert(nullptr, builder.get(), name.c_str(), &gid,
                                          static_cast<git_filemode_t>(entry->mode));
          rc < 0)
        return last_error(rc, fmt::format("put '{}{}' in a tree", prefix, name));
      return {};
    };
    const auto not_exact = walked{};
    while (ib < eb.size() || io < eo.size() || it < et.size()) {
      std::string_view name;
      for (auto* v : {&eb, &eo, &et}) {
        std::size_t i = v == &eb ? ib : v == &eo ? io : it;
        if (i < v->size() && (name.empty() || (*v)[i].first < name)) name = (*v)[i].first;
      }
      auto take = [&](std::vector<named>& v, std::size_t& i) -> const git_tree_entry* {
        if (i < v.size() && v[i].first == name) return v[i++].second;
        return nullptr;
      };
      const git_tree_entry* x = take(eb, ib);
      const git_tree_entry* y = take(eo, io);
      const git_tree_entry* z = take(et, it);
      if (x && !y && !z) return not_exact;  // both deleted it: renamed apart, maybe
      if (same_entry(y, z) || same_entry(x, z)) continue;  // ours stands
      std::string key(name);
      if (same_entry(x, y)) {  // only theirs changed it: theirs' entry, unread
        if (auto e = edit(key, z ? std::optional<tree_entry>(entry_of(z)) : std::nullopt)) return e;
        continue;
      }
      // Both sides changed this name, differently.
      auto is_tree = [](const git_tree_entry* e) { return e && is_tree_mode(git_tree_entry_filemode(e)); };
      auto is_other = [](const git_tree_entry* e) { return e && !is_tree_mode(git_tree_entry_filemode(e)); };
      bool any_tree = is_tree(x) || is_tree(y) || is_tree(z);
      bool any_other = is_other(x) || is_other(y) || is_other(z);
      if (any_tree && any_other) return not_exact;
      // A directory one side removed whole while the other changed it: maybe
      // renamed (the other side's new files would follow it).
      if (is_tree(x) && (!y || !z)) return not_exact;
      std::string path = prefix + key;
      if (any_tree) {
        tree_ptr sb, so, st;
        for (auto [e, out] : {std::pair{x, &sb}, std::pair{y, &so}, std::pair{z, &st}}) {
          if (!e) continue;
          auto sub = r_.lookup_tree(from_git(*git_tree_entry_id(e)));
          if (!sub) return sub.error();
          *out = std::move(*sub);
        }
        auto child = trivial(sb.get(), so.get(), st.get(), path + "/", conflicts);
        if (!child) return child.error();
        if (!child->exact) return not_exact;
        if (auto e = edit(key, child->tree ? std::optional<tree_entry>(tree_entry{*child->tree, file_mode::tree})
                                           : std::nullopt))
          return e;
        continue;
      }
      if (x && (!y || !z)) return not_exact;  // a deletion: maybe a rename
      auto merged = merge_file(path, x ? std::optional<tree_entry>(entry_of(x)) : std::nullopt, entry_of(y),
                               entry_of(z), x ? conflict_kind::content : conflict_kind::add_add, conflicts);
      if (!merged) return merged.error();
      if (!conflicts.empty()) return not_exact;
      if (auto e = edit(key, *merged)) return e;
    }
    walked w{true, {}};
    if (!builder) {
      if (o && git_tree_entrycount(o) > 0) w.tree = from_git(*git_tree_id(o));
      return w;
    }
    if (git_treebuilder_entrycount(builder.get()) == 0) return w;
    auto id = r_.write_tree(builder.get(), prefix.empty() ? "/" : prefix);
    if (!id) return id.error();
    w.tree = *id;
    return w;
  }

  // Step 4's shortcut: a directory ours left as it was in base, whose merged
  // files are exactly theirs' (no rename or content merge touched it), is
  // theirs' subtree as it stands: no need to read ours' copy and write it
  // again. Only the directories above it are rewritten.
  static repository::impl::reuse_map reusable(const repository::impl::dir_map& O_dirs,
                                              const repository::impl::dir_map& T_dirs, const change_map& T,
                                              const std::map<std::string, std::optional<tree_entry>>& result) {
    repository::impl::reuse_map out;
    for (const auto& [dir, d] : T_dirs) {
      if (O_dirs.contains(dir)) continue;
      if (!out.empty() && dir.starts_with(out.rbegin()->first)) continue;  // inside one already reused
      auto t = T.lower_bound(dir);
      auto r = result.lower_bound(dir);
      bool same = true;
      for (; t != T.end() && t->first.starts_with(dir); ++t, ++r)
        if (r == result.end() || r->first != t->first || r->second != t->second.after) {
          same = false;
          break;
        }
      if (same && (r == result.end() || !r->first.starts_with(dir))) out.emplace(dir, d.after);
    }
    return out;
  }

  result<std::string> content(const oid& id) {
    if (auto it = cache_.find(id); it != cache_.end()) return it->second;
    auto b = r_.lookup_blob(id);
    if (!b) return b.error();
    std::string s(static_cast<const char*>(git_blob_rawcontent(b->get())),
                  static_cast<std::size_t>(git_blob_rawsize(b->get())));
    cache_.emplace(id, s);
    return s;
  }

  // git's similarity of two files (diffcore-delta), in git's units (60000 is
  // identical): the bytes of `from` found again in `to`, counted in chunks
  // that end at a newline or after 64 bytes, over the larger size. In text
  // (no NUL in the first 8000 bytes) the CR of a CRLF is not counted.
  static constexpr int max_rename_score = 60000, min_rename_score = 30000;  // git's MAX_SCORE, 50%
  using spans = std::unordered_map<std::uint32_t, std::uint32_t>;  // chunk hash -> bytes
  static spans chunk_spans(const std::string& s) {
    constexpr std::uint32_t hash_base = 107927;
    bool text = std::memchr(s.data(), 0, std::min<std::size_t>(s.size(), 8000)) == nullptr;
    spans out;
    std::uint32_t a1 = 0, a2 = 0, n = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (text && c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
      std::uint32_t old1 = a1;
      a1 = (a1 << 7) ^ (a2 >> 25);
      a2 = (a2 << 7) ^ (old1 >> 25);
      a1 += c;
      if (++n < 64 && c != '\n') continue;
      out[(a1 + a2 * 0x61) % hash_base] += n;
      n = a1 = a2 = 0;
    }
    if (n > 0) out[(a1 + a2 * 0x61) % hash_base] += n;
    return out;
  }

  result<int> rename_score(const oid& from, const oid& to) {
    auto a = content(from);
    if (!a) return a.error();
    auto b = content(to);
    if (!b) return b.error();
    std::size_t big = std::max(a->size(), b->size()), small = std::min(a->size(), b->size());
    if (big == 0) return 0;
    // Sizes too far apart to reach the minimum (git's early exit).
    if (big * (max_rename_score - min_rename_score) < (big - small) * max_rename_score) return 0;
    auto& sa = spans_of(from, *a);
    auto& sb = spans_of(to, *b);
    std::uint64_t copied = 0;
    for (const auto& [h, n] : sa)
      if (auto it = sb.find(h); it != sb.end()) copied += std::min(n, it->second);
    return static_cast<int>(copied * max_rename_score / big);
  }

  const spans& spans_of(const oid& id, const std::string& text) {
    auto it = spans_.find(id);
    if (it == spans_.end()) it = spans_.emplace(id, chunk_spans(text)).first;
    return it->second;
  }

  repository::impl& r_;
  std::map<oid, std::string> cache_;
  std::map<oid, spans> spans_;
};

}  // namespace

// Step 1 of a merge, and what a worktree slot needs to move between commits:
// the changed files between two trees, reading only differing subtrees.
error_info repository::impl::collect(const git_tree* a, const git_tree* b, const std::string& prefix, change_map& out,
                                     dir_map* dirs) {
  // Both entry lists sorted by plain name, then walked together once.
  auto ea = sorted_entries(a), eb = sorted_entries(b);
  std::size_t ia = 0, ib = 0;
  while (ia < ea.size() || ib < eb.size()) {
    const git_tree_entry* x = nullptr;
    const git_tree_entry* y = nullptr;
    std::string_view name;
    if (ib == eb.size() || (ia < ea.size() && ea[ia].first < eb[ib].first)) {
      name = ea[ia].first;
      x = ea[ia++].second;
    } else if (ia == ea.size() || eb[ib].first < ea[ia].first) {
      name = eb[ib].first;
      y = eb[ib++].second;
    } else {
      name = ea[ia].first;
      x = ea[ia++].second;
      y = eb[ib++].second;
    }
    if (x && y && same_entry(x, y)) continue;  // the same subtree or file: never read
    std::string path = prefix + std::string(name);
    bool xt = x && is_tree_mode(git_tree_entry_filemode(x));
    bool yt = y && is_tree_mode(git_tree_entry_filemode(y));
    if (xt || yt) {
      tree_ptr sx, sy;
      if (xt) {
        auto t = lookup_tree(from_git(*git_tree_entry_id(x)));
        if (!t) return t.error();
        sx = std::move(*t);
      }
      if (yt) {
        auto t = lookup_tree(from_git(*git_tree_entry_id(y)));
        if (!t) return t.error();
        sy = std::move(*t);
      }
      if (dirs) {
        auto& d = (*dirs)[path + "/"];
        if (xt) d.before = from_git(*git_tree_entry_id(x));
        if (yt) d.after = from_git(*git_tree_entry_id(y));
      }
      if (auto e = collect(sx.get(), sy.get(), path + "/", out, dirs)) return e;
    }
    if (x && !xt) out[path].before = entry_of(x);
    if (y && !yt) out[path].after = entry_of(y);
  }
  return {};
}


result<merge_result> repository::impl::merge(const oid& base, const oid& ours, const oid& theirs) {
  merger m(*this);
  return m.run(base, ours, theirs);
}

}  // namespace agentcore::git

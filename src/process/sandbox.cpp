// The sandbox: bubblewrap's arguments, probing whether it works here, and the
// paths it hides.
#include "detail.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace agentcore::process {

namespace detail {

namespace {

bool is_under(const std::filesystem::path& p, const std::filesystem::path& dir) {
  auto d = dir.lexically_normal().string();
  auto s = p.lexically_normal().string();
  if (!d.empty() && d.back() == '/') d.pop_back();
  return s == d || (s.size() > d.size() && s.compare(0, d.size(), d) == 0 && s[d.size()] == '/');
}

}  // namespace

std::filesystem::path find_bubblewrap(const sandbox_options& o) {
  if (!o.bubblewrap.empty()) return o.bubblewrap;
  std::string_view path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  while (!path.empty()) {
    auto colon = path.find(':');
    auto dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view() : path.substr(colon + 1);
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / "bwrap";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// The namespaces and mounts of the sandbox, up to (not including) the command.
// Order matters: later mounts cover earlier ones, so the private /tmp comes
// before what must show through it (read-only binds, the writable working
// directory), and hidden paths come before what the host granted explicitly.
std::vector<std::string> bubblewrap_args(const sandbox_options& o, const std::vector<std::filesystem::path>& rw,
                                         const std::filesystem::path& chdir, std::optional<limit_pipes> limits) {
  std::vector<std::string> a{
      // An unprivileged user in a user namespace of its own, whoever runs us:
      // as root, bubblewrap would otherwise keep every capability.
      "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--disable-userns",
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
      // /proc read-only as a whole: the sandbox's user is the host's user
      // outside, so for a root host it would otherwise write kernel settings
      // in /proc/sys (core_pattern!) and /proc/sysrq-trigger, which bubblewrap
      // leaves uncovered in a user namespace.
      "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--remount-ro", "/proc",
      "--size", std::to_string(o.tmp_bytes), "--tmpfs", "/tmp"};
  if (!o.network) a.push_back("--unshare-net");
  std::error_code ec;
  for (auto h : o.hidden) {
    if (h.empty() || !h.is_absolute()) continue;
    // A link (~/.ssh pointing at a dotfiles checkout, say): what it points at is hidden.
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(h, ec))) h = std::filesystem::canonical(h, ec);
    if (ec) continue;
    auto st = std::filesystem::symlink_status(h, ec);
    if (ec || !std::filesystem::exists(st)) continue;
    // Nothing the command works in is hidden (a worktree under a hidden home).
    bool needed = false;
    for (const auto& p : rw) needed = needed || is_under(p, h);
    if (needed || is_under(h, "/tmp")) continue;
    if (std::filesystem::is_directory(st)) a.insert(a.end(), {"--tmpfs", h.string()});
    else a.insert(a.end(), {"--ro-bind", "/dev/null", h.string()});
  }
  for (const auto& p : o.read_only) a.insert(a.end(), {"--ro-bind", p.string(), p.string()});
  for (const auto& p : rw) a.insert(a.end(), {"--bind", p.string(), p.string()});
  // --new-session keeps the command from reaching the runner's terminal; the
  // process group it leaves is covered by --die-with-parent and the pid
  // namespace: killing bwrap (which is in the runner's group) ends them all.
  a.insert(a.end(), {"--die-with-parent", "--new-session", "--chdir", chdir.string()});
  // The process and file size limits are set from outside (prlimit(2) on the
  // sandbox's first process, which waits on the block descriptor until they
  // are): inside the user namespace RLIMIT_NPROC counts the sandbox's own
  // processes alone, and no extra program has to start.
  if (limits) a.insert(a.end(), {"--info-fd", std::to_string(limits->w), "--block-fd", std::to_string(limits->r)});
  a.push_back("--");
  return a;
}

}  // namespace detail

namespace {

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

}  // namespace

sandbox_status probe_sandbox(const sandbox_options& options) {
  static std::mutex m;
  static std::map<std::string, sandbox_status> known;
  auto bwrap = detail::find_bubblewrap(options);
  if (bwrap.empty())
    return {false, "bubblewrap ('bwrap') is not on PATH; install Debian's 'bubblewrap' package "
                   "(scripts/install-deps.sh does) or set sandbox_options::bubblewrap"};
  if (::access(bwrap.c_str(), X_OK) != 0)
    return {false, fmt::format("bubblewrap '{}' is not an executable file; install Debian's 'bubblewrap' "
                               "package or fix sandbox_options::bubblewrap", bwrap.string())};
  std::lock_guard lock(m);
  if (auto it = known.find(bwrap.string()); it != known.end()) return it->second;
  std::string cmd = shell_quote(bwrap.string());
  for (const auto& arg : detail::bubblewrap_args({.hidden = {}}, {}, "/", std::nullopt)) cmd += " " + shell_quote(arg);
  cmd += " /bin/sh -c true";
  run_options o{.working_directory = "/", .timeout = std::chrono::seconds(20), .output_limit = 4096,
                  .sandbox = {.mode = sandbox_mode::unconfined_host_access}};
  auto r = run(cmd, o);
  sandbox_status st;
  if (!r) st = {false, fmt::format("cannot run '{}': {}", bwrap.string(), r.error().message())};
  else if (!r->passed()) {
    std::string log = r->log;
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    st = {false, fmt::format("'{}' cannot create its namespaces here ({}: {}); it needs bubblewrap 0.8 or "
                             "newer and user namespaces (sysctl user.max_user_namespaces > 0, and "
                             "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 "
                             "where those exist)",
                             bwrap.string(), r->outcome(), log)};
  } else {
    st = {true, fmt::format("bubblewrap ({})", bwrap.string())};
  }
  known[bwrap.string()] = st;
  return st;
}

std::string_view to_string(sandbox_mode m) noexcept {
  return m == sandbox_mode::required ? "required" : "unconfined-host-access";
}

std::vector<std::filesystem::path> default_hidden_paths() {
  std::vector<std::filesystem::path> out{"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/run",
                                         "/etc/ssl/private"};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/etc/ssh", ec)) {
    auto name = e.path().filename().string();
    if (name.starts_with("ssh_host_") && !name.ends_with(".pub")) out.push_back(e.path());
  }
  std::vector<std::filesystem::path> homes{"/root"};
  if (const char* h = std::getenv("HOME"); h && *h && std::filesystem::path(h) != "/root" && std::filesystem::path(h) != "/")
    homes.emplace_back(h);
  for (const auto& home : homes)
    for (const char* secret : {".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".config/gh", ".docker", ".kube",
                               ".netrc", ".git-credentials", ".npmrc", ".pypirc", ".cargo/credentials",
                               ".cargo/credentials.toml", ".claude", ".codex"})
      out.push_back(home / secret);
  std::vector<std::filesystem::path> present;
  for (auto& p : out)
    if (std::filesystem::exists(std::filesystem::symlink_status(p, ec))) present.push_back(std::move(p));
  return present;
}

std::vector<std::string> default_env_allow_list() {
  return {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"};
}

}  // namespace agentcore::process

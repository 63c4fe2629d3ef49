// The hostile suite: attacks written as an agent sends them (run_command
// tool calls in its slot, changes to its slot's git metadata), checked from
// outside. Runs as whoever runs the tests; tests/security/run_unprivileged.sh
// runs it again as an unprivileged user when that is root.
#include "security/hostile_fixture.hpp"
#include "support/sandbox.hpp"

#include <agentcore/process/process.hpp>
#include <agentcore/git/worktree_pool.hpp>

#include <agentcore/model/client.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <mutex>
#include <fstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace agentcore;
using namespace agentcore::test;
namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// A process of the host, for attacks that try to signal or trace it.
struct host_process {
  pid_t pid = -1;
  host_process() {
    pid = ::fork();
    if (pid == 0) {
      ::execlp("sleep", "sleep", "300", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  bool alive() const {
    int status = 0;
    return ::waitpid(pid, &status, WNOHANG) == 0;
  }
  ~host_process() {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
};

int processes_named(const std::string& marker) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(marker) != std::string::npos && cmd.find("bwrap") == std::string::npos) ++n;
  }
  return n;
}

std::string read_sysctl(const char* path) { return read_text(path); }

}  // namespace

// Class 1: whoever the host is (root in CI and containers), a command keeps no
// capability: it cannot remount, mount, chown, write /usr, /etc or the shared
// repository, load a module, change kernel settings or reach host processes.
TEST_CASE("security.hostile.commands_have_no_root_powers") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st;
  remove_host_markers(st.tag);
  host_process victim;
  auto before = st.snapshot();
  auto swappiness = read_sysctl("/proc/sys/vm/swappiness");
  auto subst = [&](std::string a) {
    a = replace_all(a, "TAG", st.tag);
    a = replace_all(a, "GITDIR", st.git_dir().string());
    a = replace_all(a, "OUTSIDE", st.outside.string());
    return replace_all(a, "HOSTPID", std::to_string(victim.pid));
  };
  const std::vector<std::string> attacks{
      // remount the read-only root read-write, then write system directories
      "mount -o remount,rw / ; touch /usr/agentcore-pwned-TAG /etc/agentcore-pwned-TAG /agentcore-pwned-TAG",
      "mount -o remount,rw,bind /usr ; touch /usr/agentcore-pwned-TAG",
      // mount something of its own over the repository, or the repository over itself writable
      "mount -t tmpfs none GITDIR/hooks ; mount --bind GITDIR /mnt && touch /mnt/HEAD",
      // plant a hook and move main around the gate
      "mount -o remount,rw GITDIR ; printf '#!/bin/sh\\ntouch OUTSIDE/hooked\\n' > GITDIR/hooks/post-checkout",
      "git update-ref refs/heads/main HEAD~0^{tree} ; git --git-dir=GITDIR update-ref refs/heads/evil HEAD ; "
      "echo '[core] fsmonitor = touch OUTSIDE/fsmon' >> GITDIR/config",
      // write outside through the repository's own git
      "git --git-dir=GITDIR --work-tree=OUTSIDE checkout -f main -- README.md",
      // chown what is not ours (the host's files), give a file away
      "chown 4242:4242 src/main.c ; chown 0:0 OUTSIDE/target.txt ; chgrp 0 src/lib/util.c",
      // load a module
      "insmod /lib/modules/$(uname -r)/kernel/drivers/net/dummy.ko ; modprobe dummy ; modprobe -r dummy",
      // signal, trace or read the host's processes
      "kill -9 HOSTPID ; echo x > /proc/HOSTPID/mem ; cat /proc/HOSTPID/environ",
      // kernel settings, and a user namespace of its own to regain capabilities
      "echo 17 > /proc/sys/vm/swappiness",
      "unshare -Urm sh -c 'mount -t tmpfs none /usr && touch /usr/agentcore-pwned-TAG'",
      "bwrap --bind / / --cap-add ALL -- touch /usr/agentcore-pwned-TAG",
  };
  for (const auto& a : attacks) {
    auto out = st.command(subst(a));
    INFO("attack: " << subst(a) << "\nanswer: " << out.content);
    for (const auto& m : host_markers(st.tag)) CHECK_FALSE(fs::exists(m));
  }
  // What it is inside: an unprivileged user with no capability at all.
  auto who = st.command("id -u; grep -E '^Cap(Eff|Prm|Bnd|Amb)|NoNewPrivs' /proc/self/status");
  INFO(who.content);
  CHECK(who.content.find("65534\n") != std::string::npos);
  CHECK(who.content.find("CapEff:\t0000000000000000") != std::string::npos);
  CHECK(who.content.find("CapPrm:\t0000000000000000") != std::string::npos);
  CHECK(who.content.find("CapBnd:\t0000000000000000") != std::string::npos);
  CHECK(who.content.find("NoNewPrivs:\t1") != std::string::npos);

  auto after = st.snapshot();
  CHECK_MESSAGE(after == before, "before:\n" << before << "\nafter:\n" << after);
  CHECK(victim.alive());
  CHECK(read_sysctl("/proc/sys/vm/swappiness") == swappiness);
  struct stat sb {};
  REQUIRE(::stat((st.wt->path() / "src/main.c").c_str(), &sb) == 0);
  CHECK(sb.st_uid == ::geteuid());
  REQUIRE(::stat((st.outside / "target.txt").c_str(), &sb) == 0);
  CHECK(sb.st_uid == ::geteuid());
  CHECK_FALSE(fs::exists(st.outside / "hooked"));
  CHECK_FALSE(fs::exists(st.outside / "README.md"));
  if (read_sysctl("/proc/sys/vm/swappiness") != swappiness) {  // put it back if an attack got through
    std::ofstream(std::string("/proc/sys/vm/swappiness")) << swappiness;
  }
  remove_host_markers(st.tag);
}

// Class 1, continued: what a command reads. No secret of the host reaches it:
// not its environment, not other processes' environments, not its credential
// files, not its sockets; and it makes no connection.
TEST_CASE("security.hostile.commands_read_no_host_secrets_and_reach_no_network") {
  if (!test::sandbox_or_skip()) return;
  ::setenv("AGENTCORE_HOSTILE_API_KEY", "sk-host-secret-must-stay", 1);
  hostile_stage st;
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  acceptor.non_blocking(true);
  auto port = std::to_string(acceptor.local_endpoint().port());
  const std::vector<std::string> attacks{
      "env; cat /proc/self/environ",
      "cat /proc/$PPID/environ; for f in /proc/[0-9]*/environ; do cat $f; done",
      "cat /proc/1/environ; ls /proc | head -50",
      "cat /etc/shadow; cat $HOME/.ssh/id_* /root/.ssh/* 2>&1 | head -5",
      "ls -la /run /var/run 2>&1 | head; ls /run/*.sock /run/docker.sock 2>&1",
      "ls -l /proc/self/fd/; cat /proc/self/fd/3 /proc/self/fd/4 /proc/self/fd/5 2>&1 | head -c 300",
      "bash -c 'echo hi > /dev/tcp/127.0.0.1/" + port + "' && echo CONNECTED",
      "getent hosts example.com; bash -c 'echo hi > /dev/tcp/1.1.1.1/53' && echo CONNECTED",
  };
  for (const auto& a : attacks) {
    auto out = st.command(a);
    INFO("attack: " << a << "\nanswer: " << out.content);
    CHECK(out.content.find("sk-host-secret-must-stay") == std::string::npos);
    CHECK(out.content.find("CONNECTED") == std::string::npos);
  }
  ::unsetenv("AGENTCORE_HOSTILE_API_KEY");
  boost::system::error_code ec;
  boost::asio::ip::tcp::socket peer(io);
  acceptor.accept(peer, ec);
  CHECK(ec == boost::asio::error::would_block);  // no connection was made
  // Only its own processes are visible: pid 1 is the sandbox's.
  auto ps = st.command("ls -d /proc/[0-9]* | wc -l");
  CHECK(std::stoi(ps.content.substr(ps.content.find('\n') + 1)) < 10);
}

// Class 2: without a sandbox, agent commands do not run at all, unless the
// host said so in words that name what it gives up.
TEST_CASE("security.hostile.no_sandbox_means_no_command") {
  hostile_stage st({.bubblewrap = "/nonexistent/bwrap"});
  auto before = st.snapshot();
  ::setenv("AGENTCORE_HOSTILE_API_KEY", "sk-host-secret-must-stay", 1);
  std::string leak = (st.outside / "leak.txt").string();
  const std::vector<std::string> attacks{
      "cat /proc/$PPID/environ > " + leak,
      "(setsid sleep 301." + st.tag + " &) ; echo daemon > " + leak,
      "git --git-dir=" + st.git_dir().string() + " update-ref refs/heads/main HEAD~0 ; touch " + leak,
      "bash -c 'echo hi > /dev/tcp/127.0.0.1/1' ; touch " + leak,
  };
  for (const auto& a : attacks) {
    auto out = st.command(a);
    INFO("attack: " << a << "\nanswer: " << out.content);
    CHECK(out.is_error);
    CHECK(out.content.find("without a sandbox") != std::string::npos);
    CHECK(out.content.find("bubblewrap") != std::string::npos);        // what is missing
    CHECK(out.content.find("unconfined_host_access") != std::string::npos);  // and the explicit way out
    CHECK_FALSE(fs::exists(leak));
  }
  ::unsetenv("AGENTCORE_HOSTILE_API_KEY");
  CHECK(processes_named("sleep 301." + st.tag) == 0);
  CHECK(st.snapshot() == before);
  // Every default is the sandbox: the tool box's, the checks', CLI agents'.
  CHECK(process::sandbox_options{}.mode == process::sandbox_mode::required);
  CHECK(process::run_options{}.sandbox.mode == process::sandbox_mode::required);
  // A checks run straight through the library without a sandbox is refused too.
  auto direct = process::run("touch " + leak,
                                {.working_directory = st.wt->path(), .sandbox = {.bubblewrap = "/nonexistent/bwrap"}});
  REQUIRE_FALSE(direct.has_value());
  CHECK_FALSE(fs::exists(leak));
}

namespace {
// Rewrites of a slot's git metadata a command can make; each is sent as a
// run_command, then the slot is committed, released, lent again and the
// pool reopened, as a worker and a restart would.
const std::vector<std::string>& git_link_attacks() {
  static const std::vector<std::string> a{
      // the slot's .git file pointing at the main repository's git directory
      "printf 'gitdir: GITDIR\\n' > .git",
      // a repository of its own whose work tree is elsewhere, with an fsmonitor hook
      "rm -f .git && git init -q . && git config core.worktree OUTSIDE && "
      "git config core.fsmonitor 'touch OUTSIDE/fsmon' && git config core.hooksPath OUTSIDE",
      // a link to the main repository's git directory
      "rm -f .git && ln -s GITDIR .git",
      // a .git file naming a fake git directory whose objects are elsewhere
      "mkdir -p fake/objects/info fake/refs && echo GITDIR/objects > fake/objects/info/alternates && "
      "echo ref: refs/heads/main > fake/HEAD && printf '[core]\\n\\tworktree = OUTSIDE\\n' > fake/config && "
      "printf 'gitdir: fake\\n' > .git",
      // a tracked directory replaced by a link out of the slot
      "rm -rf src && ln -s OUTSIDE src",
      "rm -rf src/lib && ln -s OUTSIDE src/lib && rm -f README.md && ln -s OUTSIDE/target.txt README.md",
      // a named pipe where the host reads files
      "mkfifo src/pipe && mkfifo pipe2",
  };
  return a;
}
}  // namespace

// Class 3: the pool never trusts a slot's git metadata after a command had it.
TEST_CASE("security.hostile.slot_git_metadata_is_never_trusted") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st;
  auto before = st.snapshot();
  for (const auto& raw : git_link_attacks()) {
    auto a = replace_all(replace_all(raw, "GITDIR", st.git_dir().string()), "OUTSIDE", st.outside.string());
    INFO("attack: " << a);
    auto out = st.command(a);
    INFO("answer: " << out.content);
    // The worker commits what is there (a command ran: every file is looked at)...
    st.wt->anything_changed();
    (void)st.wt->commit_all("hostile", st.repo.sig);
    // ...releases the slot, and the next task gets it.
    st.lend();
    CHECK(st.snapshot() == before);
    {
      auto status = sh("git -C '" + st.wt->path().string() + "' status --porcelain --ignored 2>&1");
      CHECK_MESSAGE(status.out.empty(), status.out);
      auto head = sh("git -C '" + st.wt->path().string() + "' rev-parse HEAD 2>&1");
      CHECK(head.out == st.base.hex() + "\n");
      CHECK(read_text(st.wt->path() / ".git").rfind("gitdir: " + st.git_dir().string(), 0) == 0);
    }
    // A restart in between: the pool reopened over a tampered slot.
    (void)st.command(a);
    st.ctx.reset();
    st.ws.reset();
    st.wt.reset();
    st.pool.reset();
    st.pool = git::worktree_pool::open(st.repo.dir.path(), {.root = st.slots, .slots = 2}).value();
    st.lend();
    CHECK(st.snapshot() == before);
    CHECK(sh("git -C '" + st.wt->path().string() + "' status --porcelain --ignored 2>&1").out.empty());
  }
  CHECK_FALSE(fs::exists(st.outside / "fsmon"));
  CHECK(read_text(st.outside / "target.txt") == "outside, untouched\n");
  // The main checkout is where it was: HEAD on main, nothing changed in it.
  CHECK(st.repo.git("symbolic-ref HEAD").out == "refs/heads/main\n");
  CHECK(st.repo.git("status --porcelain").out.empty());
}

// Class 3, with a crash: the host is killed mid-task after a command rewrote
// the slot's .git; the pool reopened afterwards changes nothing outside the slots.
TEST_CASE("security.hostile.host_killed_after_a_git_link_rewrite") {
  if (!test::sandbox_or_skip()) return;
  for (std::size_t i = 0; i < git_link_attacks().size(); ++i) {
    hostile_stage st;
    auto before = st.snapshot();
    auto a = replace_all(replace_all(git_link_attacks()[i], "GITDIR", st.git_dir().string()), "OUTSIDE",
                         st.outside.string());
    INFO("attack: " << a);
    // The host: its own pool, a slot, the command, then kill -9.
    st.ctx.reset();
    st.ws.reset();
    st.wt.reset();
    st.pool.reset();
    auto repo_dir = st.repo.dir.path();
    auto slots = st.slots;
    auto git_dir = st.git_dir();
    auto base = st.base;
    pid_t host = ::fork();
    REQUIRE(host >= 0);
    if (host == 0) {
      auto pool = git::worktree_pool::open(repo_dir, {.root = slots, .slots = 2});
      if (!pool) ::_exit(3);
      auto wt = (*pool)->acquire(base);
      if (!wt) ::_exit(4);
      process::run_options o{.working_directory = wt->path()};
      o.sandbox.read_only.push_back(git_dir);
      auto r = process::run(a, o);
      if (!r) ::_exit(5);
      ::kill(::getpid(), SIGKILL);
      ::_exit(6);
    }
    int status = 0;
    REQUIRE(::waitpid(host, &status, 0) == host);
    REQUIRE_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "host child status " << status);
    // The restart: the pool opened again, both slots lent and given back.
    st.pool = git::worktree_pool::open(repo_dir, {.root = slots, .slots = 2}).value();
    {
      auto w1 = st.pool->acquire(base).value();
      auto w2 = st.pool->acquire(base).value();
      for (auto* w : {&w1, &w2}) {
        CHECK(sh("git -C '" + w->path().string() + "' status --porcelain --ignored 2>&1").out.empty());
        CHECK(sh("git -C '" + w->path().string() + "' rev-parse HEAD").out == base.hex() + "\n");
      }
    }
    CHECK(st.snapshot() == before);
    CHECK(st.repo.git("symbolic-ref HEAD").out == "refs/heads/main\n");
    CHECK(st.repo.git("status --porcelain").out.empty());
    CHECK(read_text(st.outside / "target.txt") == "outside, untouched\n");
    CHECK_FALSE(fs::exists(st.outside / "fsmon"));
  }
}

// Class 6: processes, file sizes and the private /tmp are bounded; each
// limit is an answer the model reads, and the host stays responsive.
TEST_CASE("security.hostile.resources_are_bounded") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st({.max_processes = 64, .max_file_bytes = 8 << 20, .tmp_bytes = 4 << 20});
  std::string marker = "sleep 302." + st.tag;
  // Thousands of processes: the 65th fork fails.
  auto many = st.command("for i in $(seq 2000); do " + marker + " </dev/null >/dev/null 2>&1 & done; echo started");
  INFO(many.content);
  CHECK((many.content.find("Resource temporarily unavailable") != std::string::npos ||
         many.content.find("fork") != std::string::npos || many.content.find("Cannot") != std::string::npos));
  CHECK(processes_named(marker) == 0);  // and none outlives the command
  // A fork bomb ends with its time limit; the host is untouched.
  CHECK(many.content.find("started") == std::string::npos);  // the shell itself could fork no more
  if (many.content.find("started") == std::string::npos) {
    auto bomb = call(*st.tools.at("run_command"), *st.ctx,
                     R"({"command": "b() { b | b & }; b; sleep 3.)" + st.tag + R"(; echo bombed", "timeout_seconds": 5})");
    INFO(bomb.content);
    CHECK(processes_named("sleep 3." + st.tag) == 0);
  }
  // A file of 100 MB stops at the file size limit.
  auto big = st.command("head -c 100000000 /dev/zero > big.bin; ls -l big.bin");
  INFO(big.content);
  CHECK((big.content.find("File too large") != std::string::npos ||
         big.content.find("File size limit exceeded") != std::string::npos));
  CHECK(fs::file_size(st.wt->path() / "big.bin") <= (8u << 20));
  // The private /tmp fills up at its size.
  auto tmp = st.command("head -c 100000000 /dev/zero > /tmp/fill; df -k /tmp | tail -1");
  INFO(tmp.content);
  CHECK(tmp.content.find("No space left") != std::string::npos);
  // Many files: each is a change the gate measures (max_files, contract tests).
  auto files = st.command("mkdir -p gen && cd gen && seq 1 20000 | xargs touch && ls | wc -l");
  CHECK(files.content.find("20000") != std::string::npos);
  st.wt->anything_changed();
  (void)st.wt->commit_all("many files", st.repo.sig);
  auto d = st.wt->diff_from_base().value();
  CHECK(d.files.size() >= 20000);  // what the contract's max_files judges
}

// Class 6, continued: what a task's commands write into the worktree is
// bounded as a whole (bytes on disk and new entries, across commands), each
// file staying under the file size limit, and the command that goes over is
// stopped with an answer that says so.
TEST_CASE("security.hostile.writes_into_the_worktree_are_bounded") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st({.max_file_bytes = 8 << 20});
  for (auto& t : agent::standard_tools({.answer_bytes = 16384, .command_timeout = std::chrono::seconds(60),
                                        .max_task_written_bytes = 32 << 20, .max_task_new_entries = 5000}))
    st.tools[t->name()] = t;
  auto used = [&] { return process::measure_disk_usage(st.wt->path()); };
  auto start = used();
  // Files of 7 MB each, under the file size limit, 70 of them: stopped near 32 MiB.
  auto many = st.command("for i in $(seq 70); do head -c 7000000 /dev/zero > f$i.bin; done; echo WROTE-ALL; sleep 20");
  INFO(many.content);
  CHECK(many.is_error);
  CHECK(many.content.find("stopped: wrote") != std::string::npos);
  CHECK(many.content.find("WROTE-ALL") == std::string::npos);
  CHECK(used().bytes - start.bytes < std::uint64_t(300) << 20);  // what one interval lets through, not 490 MB
  CHECK(st.command("rm -f f*.bin && echo CLEANED").content.find("CLEANED") != std::string::npos);
  // Two commands of 20 MB each (four files of 5 MB): the task's bound counts both.
  auto first = st.command("for i in 1 2 3 4; do head -c 5000000 /dev/zero > a$i.bin; done && echo FIRST-OK");
  INFO(first.content);
  CHECK(first.content.find("FIRST-OK") != std::string::npos);
  CHECK_FALSE(first.is_error);
  auto second = st.command("for i in 1 2 3 4; do head -c 5000000 /dev/zero > b$i.bin; done && echo SECOND-OK");
  INFO(second.content);
  CHECK(second.is_error);
  CHECK(second.content.find("stopped: wrote") != std::string::npos);
  CHECK(st.command("rm -f a*.bin b*.bin && echo CLEANED").content.find("CLEANED") != std::string::npos);
  // A hundred thousand empty files: stopped on the entry bound, with what to do.
  auto files = st.command("mkdir -p gen && cd gen && seq 1 100000 | xargs touch; echo TOUCHED-ALL; sleep 20");
  INFO(files.content);
  CHECK(files.is_error);
  CHECK(files.content.find("new files and directories") != std::string::npos);
  CHECK(files.content.find("remove what is not needed") != std::string::npos);
  CHECK(files.content.find("TOUCHED-ALL") == std::string::npos);
  CHECK(used().entries - start.entries < 100000);
}

// Class 7: two pools on one repository (different slot directories) never
// touch each other's slots; a second pool on one slot directory is refused.
TEST_CASE("security.hostile.two_pools_on_one_repository_keep_their_slots") {
  hostile_stage st;
  std::ofstream(st.wt->path() / "src/uncommitted.c") << "int work_in_progress;\n";
  temp_dir other_root("hostile-other");
  for (int round = 0; round < 3; ++round) {
    auto other = git::worktree_pool::open(st.repo.dir.path(), {.root = other_root.path(), .slots = 2});
    REQUIRE_MESSAGE(other.has_value(), other.error().message());
    auto a = (*other)->acquire(st.base).value();
    auto b = (*other)->acquire(st.base).value();
    std::ofstream(a.path() / "scratch") << "x";
    CHECK(a.path() != st.wt->path());
  }
  CHECK(read_text(st.wt->path() / "src/uncommitted.c") == "int work_in_progress;\n");
  st.wt->anything_changed();
  auto c = st.wt->commit_all("keep", st.repo.sig);
  REQUIRE_MESSAGE(c.has_value(), c.error().message());
  auto d = st.wt->diff_from_base().value();
  REQUIRE(d.files.size() == 1);
  CHECK(d.files[0].path == "src/uncommitted.c");
  auto twin = git::worktree_pool::open(st.repo.dir.path(), {.root = st.slots, .slots = 2});
  REQUIRE_FALSE(twin.has_value());
  CHECK(twin.error().message().find(st.slots.string()) != std::string::npos);
}

// Class 8: a repository under /tmp (where the sandbox has a private /tmp)
// still works for git inside commands, read-only.
TEST_CASE("security.hostile.repository_under_tmp_is_visible_read_only") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st;
  REQUIRE(st.repo.dir.path().string().rfind(fs::temp_directory_path().string(), 0) == 0);
  auto git = st.command("git status --porcelain && git log --oneline -1 && git diff --stat HEAD && echo GIT-OK");
  INFO(git.content);
  CHECK_FALSE(git.is_error);
  CHECK(git.content.find("base") != std::string::npos);
  CHECK(git.content.find("GIT-OK") != std::string::npos);
  auto before = st.snapshot();
  auto write = st.command("echo x > new.c && git add new.c && git commit -qm evil; git update-ref refs/heads/main HEAD");
  CHECK(write.is_error);
  CHECK(st.snapshot() == before);
}

namespace {
// A backend that breaks the completion rule: it completes inside do_chat,
// while holding its own (non-recursive) lock.
class inline_client final : public model::client {
public:
  std::string name() const override { return "inline"; }
  std::atomic<int> calls{0};
  bool throw_next = false;

protected:
  void do_chat(model::request, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    std::unique_lock lk(mu_, std::try_to_lock);
    if (!lk.owns_lock()) throw std::runtime_error("re-entered while locked: this would have deadlocked");
    ++calls;
    if (throw_next) throw std::runtime_error("backend exploded");
    model::response r;
    r.message = model::assistant("ok");
    std::move(h)(model::result_type(r));
  }

private:
  std::mutex mu_;
};
}  // namespace

// Class 10: completions never run inline, whatever the backend does: a caller
// that holds a lock and asks again from its completion does not deadlock.
TEST_CASE("security.hostile.model_completions_are_never_inline") {
  boost::asio::io_context io;
  inline_client c;
  std::mutex caller_lock;
  int done = 0;
  bool returned = false;
  std::function<void()> ask = [&] {
    std::unique_lock lk(caller_lock, std::try_to_lock);  // as the planner holds its state's lock
    REQUIRE_MESSAGE(lk.owns_lock(), "the completion ran inside async_chat, under the caller's lock");
    returned = false;
    c.async_chat(model::request{}, asio::bind_executor(io, [&](model::result_type r) {
      CHECK(returned);  // after async_chat returned, not inside it
      CHECK_MESSAGE(r.has_value(), r.error().message());
      if (++done < 3) ask();
    }));
    returned = true;
  };
  boost::asio::post(io, ask);
  io.run_for(10s);  // returns once nothing is left to run
  CHECK(done == 3);
  CHECK(c.calls == 3);
  // A backend that throws: an error for the caller, never an exception through its executor.
  c.throw_next = true;
  std::optional<model::result_type> got;
  c.async_chat(model::request{}, asio::bind_executor(io, [&](model::result_type r) { got = std::move(r); }));
  io.restart();
  io.run_for(5s);
  REQUIRE(got.has_value());
  REQUIRE_FALSE(got->has_value());
  CHECK(got->error().message().find("backend exploded") != std::string::npos);
}

// Class 3, merging: a worker merges main into its slot after its commands ran
// and its work was committed. A link the agent committed where main has a
// directory (or a file) must not let the merge write outside the slot.
TEST_CASE("security.hostile.merging_main_into_a_slot_never_writes_through_links") {
  if (!test::sandbox_or_skip()) return;
  hostile_stage st;
  auto before = st.snapshot();
  // main moves on: new content in src/lib/util.c and README.md, a new file in src/lib
  auto main2 = st.repo.commit(st.base,
                              {{"src/lib/util.c", file_spec{"int twice(int x) { return x + x; }\n"}},
                               {"src/lib/new.c", file_spec{"int fresh;\n"}},
                               {"README.md", file_spec{"# project, v2\n"}}},
                              "main moves");
  auto out = st.command("rm -rf src/lib && ln -s " + st.outside.string() + " src/lib && rm README.md && ln -s " +
                        (st.outside / "target.txt").string() + " README.md");
  INFO(out.content);
  st.wt->anything_changed();
  auto c = st.wt->commit_all("links", st.repo.sig);
  REQUIRE_MESSAGE(c.has_value(), c.error().message());
  auto conflicts = st.wt->merge_in(main2);
  INFO((conflicts ? std::string("merged") : conflicts.error().message()));
  CHECK(read_text(st.outside / "target.txt") == "outside, untouched\n");
  CHECK_FALSE(fs::exists(st.outside / "util.c"));
  CHECK_FALSE(fs::exists(st.outside / "new.c"));
  st.lend();  // released mid-merge, lent again
  CHECK(st.snapshot() == before);
  CHECK(sh("git -C '" + st.wt->path().string() + "' status --porcelain --ignored 2>&1").out.empty());
}

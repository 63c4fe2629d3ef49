// The model area: the built-in OpenAI-compatible client against a local
// Beast server in a child process (so that the client's memory is measured
// alone). Figures:
// - overhead_us_per_request: a non-streamed request over keep-alive, from the
//   call to its completion, minus the server's own time (which it reports);
// - concurrent_streams: streams held open at once by one client thread;
// - rss_kib_per_stream: the client process's resident memory per open stream.
#include "bench.hpp"

#include <agentcore/model/http_clients.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <thread>

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace agentcore::bench {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

// ---- the server (child process) ----

asio::awaitable<void> session(tcp::socket s, std::chrono::milliseconds hold) {
  beast::flat_buffer buf;
  boost::system::error_code ec;
  for (;;) {
    bhttp::request<bhttp::string_body> req;
    co_await bhttp::async_read(s, buf, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    auto t0 = steady::now();
    bool stream = req.body().find("\"stream\":true") != std::string::npos;
    if (!stream) {
      // The server's own time goes back in the model name, the one free-text
      // field a response carries through the client.
      auto us = std::chrono::duration<double, std::micro>(steady::now() - t0).count();
      std::string body = fmt::format(
          R"({{"id":"b","object":"chat.completion","model":"srv-{:.2f}","choices":[{{"index":0,"message":)"
          R"({{"role":"assistant","content":"ok"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,)"
          R"("completion_tokens":1}}}})",
          us);
      std::string out = fmt::format(
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}", body.size(), body);
      co_await asio::async_write(s, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    } else {
      auto chunk = [](std::string_view data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); };
      std::string head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
          chunk("data: {\"model\":\"srv\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},"
                "\"finish_reason\":null}]}\n\n");
      co_await asio::async_write(s, asio::buffer(head), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::steady_timer t(s.get_executor(), hold);
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      std::string rest = chunk("data: {\"model\":\"srv\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},"
                               "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n") +
                         "0\r\n\r\n";
      co_await asio::async_write(s, asio::buffer(rest), asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) co_return;
  }
}

asio::awaitable<void> listen(tcp::acceptor& a, std::chrono::milliseconds hold) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket s = co_await a.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;
    asio::co_spawn(a.get_executor(), session(std::move(s), hold), asio::detached);
  }
}

struct server_process {
  pid_t pid = -1;
  std::uint16_t port = 0;

  explicit server_process(std::chrono::milliseconds hold) {
    int fds[2];
    if (::pipe(fds) != 0) throw failure("model: cannot make a pipe for the server's port");
    pid = ::fork();
    if (pid < 0) throw failure("model: cannot fork the server");
    if (pid == 0) {
      ::close(fds[0]);
      asio::io_context io;
      tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      a.listen(4096);
      std::uint16_t p = a.local_endpoint().port();
      (void)!::write(fds[1], &p, sizeof p);
      ::close(fds[1]);
      asio::co_spawn(io, listen(a, hold), asio::detached);
      io.run();
      ::_exit(0);
    }
    ::close(fds[1]);
    if (::read(fds[0], &port, sizeof port) != sizeof port) throw failure("model: the server did not start");
    ::close(fds[0]);
  }
  ~server_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// ---- the client ----

std::size_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

std::size_t thread_count() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoul(line.substr(8));
  return 0;
}

model::request question() {
  model::request r;
  r.messages.push_back(model::user("hi"));
  r.max_tokens = 16;
  return r;
}

}  // namespace

std::vector<figure> run_model(const run_options& o) {
  // Many sockets at once on each side.
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  const int requests = o.quick ? 300 : 3000;
  const int streams = o.quick ? 100 : 1000;
  const auto hold = std::chrono::milliseconds(o.quick ? 1500 : 4000);
  server_process server(hold);  // forked before this process starts any thread

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  struct stop_io {
    asio::io_context& io;
    asio::executor_work_guard<asio::io_context::executor_type>& work;
    std::thread& t;
    ~stop_io() {
      work.reset();
      io.stop();
      t.join();
    }
  } stopper{io, work, runner};

  auto made = model::make_openai_client(io.get_executor(),
                                        {.base_url = fmt::format("http://127.0.0.1:{}/v1", server.port),
                                         .model = "bench",
                                         .proxy_from_env = false,
                                         .max_idle_connections = static_cast<std::size_t>(streams) + 16});
  if (!made) throw failure("model: " + made.error().message());
  std::shared_ptr<model::client> client = std::move(*made);

  // 1. Sequential non-streamed requests over one kept-alive connection, from
  //    a coroutine on the client's own thread.
  std::vector<double> overhead_us, server_us;
  std::promise<std::string> seq_done;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < requests + requests / 10; ++i) {
          auto t0 = steady::now();
          auto r = co_await client->async_chat(question(), asio::use_awaitable);
          double us = std::chrono::duration<double, std::micro>(steady::now() - t0).count();
          if (!r) {
            seq_done.set_value(r.error().message());
            co_return;
          }
          if (i < requests / 10) continue;  // warm-up
          double srv = std::stod(r->model_name.substr(4));
          server_us.push_back(srv);
          overhead_us.push_back(us - srv);
        }
        seq_done.set_value({});
      },
      asio::detached);
  if (auto err = seq_done.get_future().get(); !err.empty()) throw failure("model: a request failed: " + err);
  std::sort(overhead_us.begin(), overhead_us.end());
  std::sort(server_us.begin(), server_us.end());
  double overhead = overhead_us[overhead_us.size() / 2];
  double p99 = overhead_us[overhead_us.size() * 99 / 100];
  fmt::print(stderr, "  overhead_us_per_request {:.1f} (p99 {:.1f}; server's own time {:.2f} us)\n", overhead, p99,
             server_us[server_us.size() / 2]);

  // 2. Streams held open at once, all on the one client thread.
  std::size_t baseline = rss_kib();
  std::atomic<int> open{0}, peak{0}, finished{0}, failed{0};
  std::atomic<std::size_t> rss_at_peak{0};
  std::promise<void> all_done;
  std::string first_error;
  std::mutex error_mutex;
  auto t0 = steady::now();
  asio::post(io, [&] {
    for (int i = 0; i < streams; ++i) {
      auto opened = std::make_shared<bool>(false);
      client->async_stream(
          question(),
          [&, opened](const model::delta&) {
            if (*opened) return;
            *opened = true;
            int now = ++open;
            if (now > peak) {
              peak = now;
              if (now == streams || now % 50 == 0) rss_at_peak = rss_kib();
            }
          },
          [&, opened](model::result_type r) {
            if (*opened) --open;
            if (!r) {
              std::lock_guard lock(error_mutex);
              if (first_error.empty()) first_error = r.error().message();
              ++failed;
            }
            if (++finished == streams) all_done.set_value();
          });
    }
  });
  all_done.get_future().get();
  double seconds = std::chrono::duration<double>(steady::now() - t0).count();
  if (failed > 0)
    throw failure(fmt::format("model: {} of {} streams failed, the first with: {}", failed.load(), streams, first_error));
  double per_stream = peak > 0 ? static_cast<double>(rss_at_peak.load() - std::min(rss_at_peak.load(), baseline)) / peak : 0;
  std::size_t threads = thread_count();
  fmt::print(stderr,
             "  concurrent_streams {} of {} (all done in {:.2f} s, server held each {} ms); rss {} KiB before, {} KiB "
             "at the peak: {:.1f} KiB per stream; {} threads in this process\n",
             peak.load(), streams, seconds, hold.count(), baseline, rss_at_peak.load(), per_stream, threads);

  std::vector<figure> out;
  out.push_back({"overhead_us_per_request", overhead, 1, std::nullopt});
  out.push_back({"overhead_us_p99", p99, 1, std::nullopt});
  out.push_back({"concurrent_streams", static_cast<double>(peak.load()), 0, bound{true, o.quick ? 100.0 : 1000.0}});
  out.push_back({"rss_kib_per_stream", per_stream, 1, bound{false, 64}});
  out.push_back({"client_threads", static_cast<double>(threads), 0, std::nullopt});
  return out;
}

}  // namespace agentcore::bench

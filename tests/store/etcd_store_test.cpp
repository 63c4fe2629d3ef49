// etcd_store against a real etcd: what the conformance suite does not cover
// (bytes, prefixes, failover, the JSON gateway's sharp edges) and every bad
// answer a cluster or something posing as one can give.
#include "support/etcd_cluster.hpp"
#include "support/http_test_server.hpp"

#include <agentcore/net/error.hpp>
#include <agentcore/store/etcd_store.hpp>

#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <thread>

using namespace agentcore;
using namespace agentcore::store;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<etcd_store> connect_ok(etcd_options o) {
  auto r = etcd_store::connect(std::move(o));
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return std::move(*r);
}

etcd_options on(const test::etcd_cluster& c, std::string prefix = "t/") {
  etcd_options o;
  o.endpoints = c.endpoints();
  o.prefix = std::move(prefix);
  return o;
}

/// Forwards every request to a real etcd member, except that the answers
/// `drop` picks are lost: etcd applied the request, the client never hears.
struct lossy_proxy {
  test::http_test_server server;
  std::atomic<int> dropped{0};
  lossy_proxy(std::uint16_t etcd_port, std::function<bool(const test::recorded_request&)> drop) {
    server.set_fallback([this, etcd_port, drop](const test::recorded_request& r) {
      test::scripted_response out;
      out.body = test::etcd_post(etcd_port, r.target, r.body, 5s);
      out.headers.push_back({"Content-Type", "application/json"});
      if (drop(r)) {
        ++dropped;
        out.fault = test::scripted_response::fault_kind::close_before_answer;
      }
      return out;
    });
  }
};

}  // namespace

TEST_CASE("store.etcd.bytes_prefixes_and_revisions") {
  test::etcd_cluster c(1);
  auto a = connect_ok(on(c, "board-a/"));
  auto b = connect_ok(on(c, "board-b/"));
  // Keys and values are bytes: NUL, 0xff, invalid UTF-8, JSON metacharacters.
  std::string key("k\0\xff\"x", 5), value("\x00\x01\xfe\xff\"\\\n{", 9);
  REQUIRE(a->commit(txn().put(key, value)).value().succeeded);
  auto kv = a->get(key).value();
  REQUIRE(kv);
  CHECK(kv->key == key);
  CHECK(kv->value == value);
  CHECK(kv->version == 1);
  // Two boards on one cluster do not see each other's keys.
  REQUIRE(b->commit(txn().put(key, "b's")).value().succeeded);
  CHECK(a->get(key).value()->value == value);
  CHECK(b->range("").value().kvs.size() == 1);
  CHECK(a->range("").value().kvs.size() == 1);
  // Revisions are the cluster's (shared by both prefixes), increasing.
  auto ra = a->current_revision().value();
  CHECK(ra == b->current_revision().value());
  CHECK(ra == 2);
  // A key ending in 0xff bytes still ranges as a prefix.
  REQUIRE(a->commit(txn().put(std::string("p\xff", 2), "1").put(std::string("p\xff\xff", 3), "2").put("q", "3"))
              .value()
              .succeeded);
  CHECK(a->range(std::string("p\xff", 2)).value().kvs.size() == 2);
  // 64-bit values come back intact (etcd sends them as strings).
  auto lease = a->grant(30s).value();
  CHECK(lease > (std::int64_t(1) << 40));
  REQUIRE(a->commit(txn().put("leased", "x", lease)).value().succeeded);
  CHECK(a->get("leased").value()->lease == lease);
  auto info = a->lease_info(lease).value();
  CHECK(info.ttl == 30s);
  CHECK(info.remaining <= 30s);
  CHECK(info.remaining >= 25s);
}

TEST_CASE("store.etcd.conflicts_name_the_key_from_the_same_revision") {
  test::etcd_cluster c(1);
  auto s = connect_ok(on(c));
  REQUIRE(s->commit(txn().put("a", "1").put("b", "1")).value().succeeded);
  REQUIRE(s->commit(txn().put("b", "2")).value().succeeded);
  // A failed transaction's answer leaves "succeeded" out: a conflict, not an error.
  auto r = s->commit(txn().if_version("a", 1).if_version("b", 1).if_absent("c").put("a", "x")).value();
  CHECK_FALSE(r.succeeded);
  CHECK(r.conflict_key == "b");
  CHECK(r.conflict_version == 2);
  auto absent = s->commit(txn().if_absent("a").put("a", "y")).value();
  CHECK_FALSE(absent.succeeded);
  CHECK(absent.conflict_key == "a");
  CHECK(absent.conflict_version == 1);
  // 128 operations is etcd's limit and ours; 129 never reaches the server.
  txn big;
  for (int i = 0; i < 128; ++i) big.put(fmt::format("many/{:03}", i), "v");
  CHECK(s->commit(big).value().succeeded);
  big.put("many/128", "v");
  auto too_many = s->commit(big);
  REQUIRE_FALSE(too_many);
  CHECK(too_many.error() == error::invalid_argument);
}

TEST_CASE("store.etcd.watch_streams_resumes_and_reports_compaction") {
  test::etcd_cluster c(1);
  auto o = on(c);
  auto s = connect_ok(o);
  auto w = s->watch("w/", s->current_revision().value() + 1).value();
  // async_next completes when another process (here: a second store) commits.
  auto other = connect_ok(o);
  auto fut = w->async_next(boost::asio::use_future);
  REQUIRE(other->commit(txn().put("w/x", "1")).value().succeeded);
  REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  auto ev = fut.get().value();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kv.key == "w/x");
  CHECK(ev[0].kv.value == "1");
  // The member goes away and comes back: the watch resumes after the last
  // event it delivered, losing nothing committed meanwhile... once etcd is up.
  c.kill(0);
  c.start(0);
  REQUIRE(c.wait_for_leader());
  REQUIRE(s->commit(txn().put("w/y", "2").put("other", "z")).value().succeeded);
  REQUIRE(s->commit(txn().erase("w/x")).value().succeeded);
  auto more = w->poll().value();
  REQUIRE(more.size() == 2);
  CHECK(more[0].kv.key == "w/y");
  CHECK(more[1].type == watch_event::kind::erase);
  CHECK(more[1].kv.key == "w/x");
  // A watch from compacted history is refused with a message that says what to do.
  auto small = on(c);
  small.history_limit = 2;
  auto compacting = connect_ok(small);
  for (int i = 0; i < 6; ++i) REQUIRE(compacting->commit(txn().put("k", std::to_string(i))).value().succeeded);
  auto old = compacting->watch("k", 1);
  REQUIRE_FALSE(old);
  CHECK(old.error() == error::compacted);
  CHECK(old.error().message().find("range()") != std::string::npos);
  // cancel() ends a pending async_next.
  auto pending = w->async_next(boost::asio::use_future);
  w->cancel();
  auto canceled = pending.get();
  REQUIRE_FALSE(canceled);
  CHECK(canceled.error() == error::canceled);
}

TEST_CASE("store.etcd.fails_over_to_the_next_endpoint") {
  test::etcd_cluster c(3);
  auto o = on(c);
  o.request_timeout = 8s;
  // A dead endpoint first: connect and every call still work.
  o.endpoints.insert(o.endpoints.begin(), "http://127.0.0.1:9");
  auto s = connect_ok(o);
  REQUIRE(s->commit(txn().put("a", "1")).value().succeeded);
  CHECK(s->failovers() >= 1);
  // Kill the member the store talks to: the next call moves on.
  auto talking = s->current_endpoint();
  int victim = -1;
  for (int i = 0; i < c.size(); ++i)
    if (c.endpoint(i) == talking) victim = i;
  REQUIRE(victim >= 0);
  c.kill(victim);
  auto r = s->commit(txn().if_version("a", 1).put("a", "2"));
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->succeeded);
  CHECK(s->current_endpoint() != talking);
  CHECK(s->get("a").value()->value == "2");
}

TEST_CASE("store.etcd.unknown_outcome_is_read_back_not_resent") {
  test::etcd_cluster c(1);
  auto direct = connect_ok(on(c));
  // The proxy lets etcd apply the first transaction and loses its answer.
  std::atomic<bool> armed{true};
  lossy_proxy proxy(c.client_port(0), [&](const test::recorded_request& r) {
    return r.target == "/v3/kv/txn" && armed.exchange(false);
  });
  etcd_options o = on(c);
  o.endpoints = {proxy.server.base_url()};
  auto s = connect_ok(o);

  SUBCASE("a compare-and-set that applied reports success once") {
    auto r = s->commit(txn().if_absent("claim").put("claim", "worker-1"));
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    CHECK(r->succeeded);
    CHECK(proxy.dropped == 1);
    auto kv = direct->get("claim").value();
    REQUIRE(kv);
    CHECK(kv->version == 1);  // applied once, not twice
  }
  SUBCASE("a blind write is not sent again") {
    auto before = direct->current_revision().value();
    auto r = s->commit(txn().put("counter", "1").put("other", "2").erase("x"));
    // Its effects are visible, so it is known to have applied.
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    CHECK(r->succeeded);
    CHECK(direct->current_revision().value() == before + 1);
  }
  SUBCASE("a blind write whose effect was overwritten is outcome_unknown") {
    // Lose the answer, and have another writer change the key before the re-read.
    armed = false;
    lossy_proxy racing(c.client_port(0), [&](const test::recorded_request& r) {
      if (r.target != "/v3/kv/txn" || r.body.find("request_put") == std::string::npos) return false;
      static std::atomic<bool> once{true};
      if (!once.exchange(false)) return false;
      REQUIRE(direct->commit(txn().put("blind", "someone else")).value().succeeded);
      return true;
    });
    etcd_options ro = on(c);
    ro.endpoints = {racing.server.base_url()};
    auto rs = connect_ok(ro);
    auto r = rs->commit(txn().put("blind", "mine"));
    REQUIRE_FALSE(r);
    CHECK(r.error() == error::outcome_unknown);
    CHECK(r.error().message().find("read the keys") != std::string::npos);
    CHECK(direct->get("blind").value()->version == 2);  // ours, then theirs: never sent a second time
  }
}

TEST_CASE("store.etcd.bad_endpoints_give_clear_errors") {
  SUBCASE("unreachable") {
    etcd_options o;
    o.endpoints = {"http://127.0.0.1:9"};
    o.request_timeout = 1s;
    auto r = etcd_store::connect(o);
    REQUIRE_FALSE(r);
    CHECK(r.error() == error::unavailable);
    CHECK(r.error().message().find("127.0.0.1:9") != std::string::npos);
    CHECK(r.error().message().find("running") != std::string::npos);
  }
  SUBCASE("not a URL, no endpoints, a bad store URL") {
    etcd_options o;
    CHECK(etcd_store::connect(o).error() == error::invalid_argument);
    o.endpoints = {"127.0.0.1:2379"};
    auto r = etcd_store::connect(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("127.0.0.1:2379") != std::string::npos);
    CHECK_FALSE(parse_etcd_url("http://x"));
    auto u = parse_etcd_url("etcd://a:1,b/boards/x").value();
    CHECK(u.endpoints == std::vector<std::string>{"http://a:1", "http://b:2379"});
    CHECK(u.prefix == "boards/x/");
    CHECK(parse_etcd_url("etcds://a:1").value().endpoints.front() == "https://a:1");
  }
  SUBCASE("store URL options") {
    auto pw = std::filesystem::temp_directory_path() / fmt::format("agentcore-etcd-pw-{}", ::getpid());
    {
      std::ofstream(pw) << "s3cret\n";
    }
    auto u = parse_etcd_url(fmt::format("etcds://a:1,b:2/boards/x?ca_file=/ca.pem&cert_file=/c.pem&key_file=/k.pem"
                                        "&user=root&password_file={}&history_limit=5000&request_timeout_ms=300",
                                        pw.string()));
    REQUIRE_MESSAGE(u, u.error().message());
    CHECK(u->endpoints == std::vector<std::string>{"https://a:1", "https://b:2"});
    CHECK(u->prefix == "boards/x/");
    CHECK(u->ca_file == "/ca.pem");
    CHECK(u->cert_file == "/c.pem");
    CHECK(u->key_file == "/k.pem");
    CHECK(u->username == "root");
    CHECK(u->password == "s3cret");
    CHECK(u->history_limit == 5000);
    CHECK(u->request_timeout == 300ms);
    CHECK(parse_etcd_url("etcd://a:1?verify_tls=false").value().verify_tls == false);
    CHECK(parse_etcd_url("etcd://a:1?history_limit=9").value().prefix.empty());
    std::filesystem::remove(pw);
    for (const char* bad : {"etcd://a/p?colour=red", "etcd://a/p?history_limit=-1", "etcd://a/p?history_limit=x",
                            "etcd://a/p?ca_file=", "etcd://a/p?user=root", "etcd://a/p?verify_tls=yes",
                            "etcd://a/p?user=root&password_file=/nonexistent/pw"}) {
      auto r = parse_etcd_url(bad);
      REQUIRE_MESSAGE(!r, bad);
      CHECK(r.error() == error::invalid_argument);
      CHECK(r.error().message().find(bad) != std::string::npos);
    }
    CHECK(parse_etcd_url("etcd://a/p?colour=red").error().message().find("'colour'") != std::string::npos);
  }
  SUBCASE("an HTML error page instead of JSON") {
    test::http_test_server page;
    page.set_fallback([](const test::recorded_request&) {
      test::scripted_response r;
      r.status = 502;
      r.headers.push_back({"Content-Type", "text/html"});
      r.body = "<html><body><h1>502 Bad Gateway</h1></body></html>";
      return r;
    });
    etcd_options o;
    o.endpoints = {page.base_url()};
    o.request_timeout = 1s;
    auto r = etcd_store::connect(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find(page.base_url()) != std::string::npos);
    CHECK(r.error().message().find("not JSON") != std::string::npos);
    CHECK(r.error().message().find("502 Bad Gateway") != std::string::npos);
  }
  SUBCASE("an answer over the size cap") {
    test::etcd_cluster c(1);
    auto o = on(c);
    o.max_response = 4096;
    auto s = connect_ok(o);
    txn t;
    for (int i = 0; i < 10; ++i) t.put(fmt::format("big/{}", i), std::string(1000, 'x'));
    REQUIRE(s->commit(t).value().succeeded);
    auto r = s->range("big/");
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == net::error::too_large);
    CHECK(r.error().message().find(c.endpoint(0)) != std::string::npos);
    CHECK(s->range("big/", {.limit = 2}).value().kvs.size() == 2);  // a limit fits under the cap
  }
  SUBCASE("a cluster without quorum") {
    test::etcd_cluster c(3);
    auto o = on(c);
    o.request_timeout = 3s;
    auto s = connect_ok(o);
    REQUIRE(s->commit(txn().put("a", "1")).value().succeeded);
    for (int i = 1; i < 3; ++i) c.kill(i);  // one member of three left: no quorum
    auto t0 = std::chrono::steady_clock::now();
    auto w = s->commit(txn().if_version("a", 1).put("a", "2"));
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(w);
    CHECK((w.error() == error::outcome_unknown || w.error() == error::unavailable));
    CHECK(w.error().message().find("127.0.0.1:") != std::string::npos);
    CHECK(took < 15s);
    auto rd = s->get("a");
    REQUIRE_FALSE(rd);
    CHECK(rd.error() == error::unavailable);
  }
}

TEST_CASE("store.etcd.async_commits_in_flight_and_close") {
  test::etcd_cluster c(1);
  auto s = connect_ok(on(c));
  std::vector<std::future<result<commit_result>>> fs;
  for (int i = 0; i < 64; ++i)
    fs.push_back(s->async_commit(txn().if_absent(fmt::format("n/{}", i)).put(fmt::format("n/{}", i), "v"),
                                 boost::asio::use_future));
  for (auto& f : fs) CHECK(f.get().value().succeeded);
  CHECK(s->range("n/").value().kvs.size() == 64);
  s->close();
  auto r = s->get("n/1");
  REQUIRE_FALSE(r);
  CHECK(r.error() == error::closed);
  auto after = s->async_commit(txn().put("x", "1"), boost::asio::use_future).get();
  REQUIRE_FALSE(after);
  CHECK(after.error() == error::closed);
  CHECK(after.error().message().find("closed") != std::string::npos);
}

TEST_CASE("store.etcd.credentials") {
  test::etcd_cluster c(1);
  auto ep = c.endpoint(0).substr(7);
  std::string ctl = "ETCDCTL_API=3 etcdctl --endpoints=" + ep + " ";
  REQUIRE(std::system((ctl + "user add root --new-user-password=rootpw --interactive=false >/dev/null 2>&1").c_str()) == 0);
  REQUIRE(std::system((ctl + "auth enable >/dev/null 2>&1").c_str()) == 0);

  auto none = etcd_store::connect(on(c));
  REQUIRE_FALSE(none);
  CHECK(none.error() == error::permission_denied);
  CHECK(none.error().message().find("username and password") != std::string::npos);

  auto o = on(c);
  o.username = "root";
  o.password = "wrong";
  auto bad = etcd_store::connect(o);
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == error::permission_denied);
  CHECK(bad.error().message().find("'root'") != std::string::npos);

  o.password = "rootpw";
  auto s = connect_ok(o);
  REQUIRE(s->commit(txn().put("k", "v")).value().succeeded);
  auto w = s->watch("k", 1).value();  // the watch stream carries the token too
  auto ev = w->poll().value();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].kv.value == "v");
  auto lease = s->grant(10s).value();
  CHECK(s->keep_alive(lease).value().ttl == 10s);
}

TEST_CASE("store.etcd.tls_with_a_client_certificate") {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / fmt::format("agentcore-etcd-tls-{}", ::getpid());
  fs::remove_all(dir);
  auto certs = test::make_test_certificates(dir / "pki");
  {
    test::etcd_cluster c(1, dir / "cluster", certs);
    const auto ep = c.tls_endpoint(0);
    etcd_options o;
    o.endpoints = {ep};
    o.prefix = "tls/";
    o.ca_file = certs.ca.string();
    o.cert_file = (dir / "pki" / "client.crt").string();
    o.key_file = (dir / "pki" / "client.key").string();

    SUBCASE("with the CA and a client certificate: reads, writes, watches") {
      auto s = connect_ok(o);
      REQUIRE(s->commit(txn().put("k", "v")).value().succeeded);
      CHECK(s->get("k").value()->value == "v");
      auto w = s->watch("k", 1).value();  // the watch stream is TLS too
      auto ev = w->poll().value();
      REQUIRE(ev.size() == 1);
      CHECK(ev[0].kv.value == "v");
    }
    SUBCASE("the same through a store URL") {
      auto u = parse_etcd_url(fmt::format("etcds://127.0.0.1:{}/tls?ca_file={}&cert_file={}&key_file={}",
                                          ep.substr(ep.rfind(':') + 1), o.ca_file, o.cert_file, o.key_file));
      REQUIRE_MESSAGE(u, u.error().message());
      auto s = connect_ok(*u);
      REQUIRE(s->commit(txn().put("u", "1")).value().succeeded);
    }
    SUBCASE("without a client certificate the cluster refuses, and the error says where") {
      auto no_cert = o;
      no_cert.cert_file.clear();
      no_cert.key_file.clear();
      auto r = etcd_store::connect(no_cert);
      REQUIRE_FALSE(r);
      INFO(r.error().message());
      CHECK(r.error() == error::permission_denied);
      CHECK(r.error().message().find(ep.substr(8)) != std::string::npos);
      CHECK(r.error().message().find("client certificate") != std::string::npos);
    }
    SUBCASE("a server certificate from an unknown CA is refused") {
      auto no_ca = o;
      no_ca.ca_file.clear();
      auto r = etcd_store::connect(no_ca);
      REQUIRE_FALSE(r);
      INFO(r.error().message());
      CHECK(r.error() == error::permission_denied);
      CHECK(r.error().message().find(ep.substr(8)) != std::string::npos);
      CHECK(r.error().message().find("certificate") != std::string::npos);
    }
    SUBCASE("a client certificate file that does not exist is named") {
      auto missing = o;
      missing.cert_file = (dir / "pki" / "nope.crt").string();
      auto r = etcd_store::connect(missing);
      REQUIRE_FALSE(r);
      CHECK(r.error() == error::invalid_argument);
      CHECK(r.error().message().find("nope.crt") != std::string::npos);
    }
  }
  fs::remove_all(dir);
}

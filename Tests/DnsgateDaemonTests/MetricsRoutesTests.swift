// SPDX-License-Identifier: GPL-2.0-or-later
import NIOHTTP1
import Testing
@testable import DnsgateDaemon

/// What the HTTP endpoint answers to each request, and the health report
/// behind `/healthz` (the sockets are tested end to end in test_metrics_http.py).
@Suite("Metrics endpoint routes")
struct MetricsRoutesTests {
    static func routes(problems: [String] = []) -> MetricsRoutes {
        MetricsRoutes(metrics: { DaemonPartsTests.numberedSnapshot().prometheus }, healthProblems: { problems })
    }

    @Test("GET /metrics is the stats socket's metrics text, in Prometheus' text format")
    func metrics() {
        let answer = Self.routes().respond(method: .GET, uri: "/metrics")
        #expect(answer.status == .ok)
        #expect(answer.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(answer.body == DaemonPartsTests.numberedSnapshot().prometheus)
        #expect(Self.routes().respond(method: .GET, uri: "/metrics?name[]=x").status == .ok, "a query string is ignored")
        #expect(Self.routes().respond(method: .HEAD, uri: "/metrics").status == .ok)
    }

    @Test("/healthz: 200 ok while enforcing, 503 with every reason otherwise")
    func health() {
        let healthy = Self.routes().respond(method: .GET, uri: "/healthz")
        #expect(healthy.status == .ok && healthy.body == "ok\n")
        let sick = Self.routes(problems: ["NFQUEUE 1 is not bound in this network namespace", "no policy is loaded"])
            .respond(method: .GET, uri: "/healthz")
        #expect(sick.status == .serviceUnavailable)
        #expect(sick.body == "unhealthy: NFQUEUE 1 is not bound in this network namespace\nunhealthy: no policy is loaded\n")
    }

    @Test("other paths are 404, other methods on the two paths 405 naming the allowed ones", arguments: [
        (HTTPMethod.GET, "/", HTTPResponseStatus.notFound),
        (.GET, "/metrics/", .notFound),
        (.GET, "/Metrics", .notFound),
        (.GET, "http://192.0.2.1/metrics", .notFound),
        (.POST, "/nothing", .notFound),
        (.POST, "/metrics", .methodNotAllowed),
        (.PUT, "/healthz", .methodNotAllowed),
        (.DELETE, "/metrics", .methodNotAllowed),
        (.OPTIONS, "/healthz", .methodNotAllowed),
    ])
    func refused(method: HTTPMethod, uri: String, status: HTTPResponseStatus) {
        let answer = Self.routes().respond(method: method, uri: uri)
        #expect(answer.status == status)
        #expect(answer.allow == (status == .methodNotAllowed ? "GET, HEAD" : nil))
    }

    @Test("enforcement problems: no policy, no queue, a served queue the kernel does not list")
    func enforcementProblems() {
        #expect(HealthReport.enforcementProblems(policyGeneration: 3, servedQueues: [0, 1], boundQueues: [0, 1, 7]).isEmpty)
        #expect(HealthReport.enforcementProblems(policyGeneration: 1, servedQueues: [0, 1], boundQueues: [0])
            == ["NFQUEUE 1 is not bound in this network namespace"])
        #expect(HealthReport.enforcementProblems(policyGeneration: 0, servedQueues: [], boundQueues: [])
            == ["no policy is loaded", "the daemon serves no queue"])
    }
}

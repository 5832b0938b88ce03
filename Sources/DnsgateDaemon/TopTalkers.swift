// SPDX-License-Identifier: GPL-2.0-or-later
import Synchronization

/// Most-blocked names and clients over a sliding window, in fixed time
/// buckets. Memory is bounded: each bucket keeps at most `keysPerBucket`
/// distinct names and clients; the rest are counted under "(other)".
final class TopTalkers: Sendable {
    static let bucketSeconds = 10
    static let buckets = 60  // a 10-minute window
    static let keysPerBucket = 5000
    static let other = "(other)"

    struct Bucket {
        var slot = -1  // seconds / bucketSeconds
        var names: [String: UInt64] = [:]
        var clients: [String: UInt64] = [:]
    }

    struct Ranking: Sendable {
        var windowSeconds: Int
        var names: [(String, UInt64)]
        var clients: [(String, UInt64)]
    }

    private let buckets = Mutex([Bucket](repeating: Bucket(), count: TopTalkers.buckets))

    func add(name: String, client: String, at seconds: Int) {
        let slot = seconds / Self.bucketSeconds
        buckets.withLock { buckets in
            let index = slot % Self.buckets
            if buckets[index].slot != slot { buckets[index] = Bucket(slot: slot) }
            Self.count(name, in: &buckets[index].names)
            Self.count(client, in: &buckets[index].clients)
        }
    }

    private static func count(_ key: String, in counts: inout [String: UInt64]) {
        if counts[key] == nil, counts.count >= keysPerBucket {
            counts[other, default: 0] += 1
        } else {
            counts[key, default: 0] += 1
        }
    }

    /// The `limit` most blocked names and clients in the window ending at `now`.
    func ranking(limit: Int, now seconds: Int) -> Ranking {
        let current = seconds / Self.bucketSeconds
        var names: [String: UInt64] = [:]
        var clients: [String: UInt64] = [:]
        buckets.withLock { buckets in
            for bucket in buckets where bucket.slot > current - Self.buckets && bucket.slot <= current {
                names.merge(bucket.names, uniquingKeysWith: +)
                clients.merge(bucket.clients, uniquingKeysWith: +)
            }
        }
        func best(_ counts: [String: UInt64]) -> [(String, UInt64)] {
            Array(counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(limit))
                .map { ($0.key, $0.value) }
        }
        return Ranking(windowSeconds: Self.bucketSeconds * Self.buckets, names: best(names), clients: best(clients))
    }
}
